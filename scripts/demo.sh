#!/usr/bin/env bash
# Runs the daemon on the built-in demo project, socket-activated the way
# systemd does it (systemd-socket-activate), or with a plain listen otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8081}
# The one demo location, the same as a bare `flipedit-previewd --demo`: $XDG_DATA_HOME/flipedit-preview/demo.
export XDG_DATA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}
.venv/bin/python -c 'from flipedit_previewd.demo import ensure_demo_project as e; print("demo project:", e())'
echo
echo "  Preview URL:   http://127.0.0.1:$PORT/get_frame/0"
echo "  Try:           .venv/bin/previewctl --url http://127.0.0.1:$PORT health"
echo "                 curl http://127.0.0.1:$PORT/health"
echo "  Stop with Ctrl+C."
echo
if command -v systemd-socket-activate >/dev/null; then
  exec systemd-socket-activate -l "127.0.0.1:$PORT" --fdname=flipedit-preview \
    -E XDG_DATA_HOME .venv/bin/flipedit-previewd --demo
fi
exec .venv/bin/flipedit-previewd --demo --listen "127.0.0.1:$PORT"
