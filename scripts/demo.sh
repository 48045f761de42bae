#!/usr/bin/env bash
# Runs the daemon on the built-in demo project, socket-activated the way
# systemd does it (systemd-socket-activate), or with a plain listen otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8081}
# The one demo location, the same as a bare `flipedit-previewd --demo`: $XDG_DATA_HOME/flipedit-preview/demo.
export XDG_DATA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$HOME/.cache}  # proxy media: the daemon below gets no HOME
.venv/bin/python -c 'from flipedit_previewd.demo.project import demo_project as e; print("demo project:", e())'
# The user's runtime directory (a desktop session has one; a root console may not): the unix socket and the
# token live there, where previewctl looks (it falls back to /run/user/UID too).
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/run/user/$(id -u)}
mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
SOCK="$XDG_RUNTIME_DIR/flipedit-preview.sock"
rm -f "$SOCK"
URL_FLAG=""
[ "$PORT" = 8081 ] || URL_FLAG=" --url http://127.0.0.1:$PORT"
echo
echo "  Preview URL:   http://127.0.0.1:$PORT/get_frame/0"
echo "  Viewer:        http://127.0.0.1:$PORT/ (open it in a browser)"
echo "  Unix socket:   $SOCK"
echo "  Try:           .venv/bin/previewctl$URL_FLAG health"
echo "  Stop with Ctrl+C."
echo
# The socket file and the token go with the demo: a stale one would be found by the next previewctl.
trap 'rm -f "$SOCK" "$XDG_RUNTIME_DIR/flipedit-preview/token"; rmdir "$XDG_RUNTIME_DIR/flipedit-preview" 2>/dev/null || true' EXIT
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 130' INT TERM
if command -v systemd-socket-activate >/dev/null; then
  systemd-socket-activate -l "127.0.0.1:$PORT" -l "$SOCK" --fdname=flipedit-preview:flipedit-preview \
    -E XDG_DATA_HOME -E XDG_RUNTIME_DIR -E XDG_CACHE_HOME .venv/bin/flipedit-previewd --demo &
else
  .venv/bin/flipedit-previewd --demo --listen "127.0.0.1:$PORT" --listen "unix:$SOCK" &
fi
child=$!
wait "$child"
