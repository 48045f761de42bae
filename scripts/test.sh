#!/usr/bin/env bash
# Lint, type-check, then every test layer (unit, integration, system, booted) in three
# pytest sessions (below). Benchmarks are not part of this.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff (lint, and the format kept: 120 columns)"; .venv/bin/ruff check flipedit_previewd tests bench scripts; .venv/bin/ruff format --check -q flipedit_previewd tests bench scripts
echo "== mypy (strict, package)"; .venv/bin/mypy
echo "== man pages and completions"; bash scripts/docs.sh build
echo "== Debian package: build in a clean directory, lintian, Debian's dependencies, unpack"
bash packaging/prepare-install-test.sh
echo "== RPM spec parses"; bash packaging/check-rpm-spec.sh
echo "== media corpus (and proxies) under Debian's python3 (the .deb's PyAV 10 / FFmpeg 5.1 / Pillow 9.4, installed by the step above)"
PYTHONPATH="$PWD" /usr/bin/python3 -m pytest -q -p no:cacheprovider -o addopts= -k "not daemon" --basetemp="$PWD/build/pytest-tmp-debian" \
  tests/integration/test_media_exact.py tests/unit/worker/test_display_sniff.py tests/unit/worker/test_compositor.py tests/unit/proxy
# Outside /tmp: the hardened unit gives the daemon a private /tmp (PrivateTmp=yes), and the
# system tests' projects must be visible to it.
# Three sessions. First everything but the "solo" tests as two pytest sessions at once: the system and booted
# layers (one after another: they take the machine's systemd) beside the unit and integration layers; most
# of these tests wait (idle connections, restarts, timeouts). Then the "solo" tests alone: each asserts a
# latency or a rate measured while it runs. Each session checks what it could have left behind (conftest.py).
run() {  # pytest's exit status 5 (nothing selected, e.g. by a -k) is a failure only if no session selected anything
  local rc=0
  .venv/bin/pytest "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then echo >> build/pytest-selected-nothing; rc=0; fi
  return "$rc"
}
mkdir -p build
rm -f build/pytest-selected-nothing
# Job control: each session in a process group of its own, with Ctrl-C (SIGINT) not ignored as it is for a
# script's background jobs, so that an interrupt or a SIGTERM reaches both sessions (pytest then stops its
# sandboxes and containers) and neither outlives this script.
set -m
pids=()
stop() {
  trap - INT TERM
  for pid in "${pids[@]}"; do kill -INT -- "-$pid" 2>/dev/null || true; done
  wait || true
  echo "== interrupted; unit + integration so far:"; cat build/pytest-daemons.log
  exit 130
}
trap stop INT TERM
echo "== pytest 1/3 and 2/3 at once: unit + integration (output below when done) beside system + booted (the booted layer uses the .deb built above)"
run tests/unit tests/integration -m "not solo" --basetemp="$PWD/build/pytest-tmp-daemons" "$@" > build/pytest-daemons.log 2>&1 &
pids+=($!)
run tests/system tests/booted -m "not solo" --basetemp="$PWD/build/pytest-tmp" "$@" &
pids+=($!)
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
trap - INT TERM
echo "== pytest 1/3: unit + integration"
cat build/pytest-daemons.log
[ "$status" -eq 2 ] && { echo "== a session was interrupted or misused (exit 2): the solo tests are not run"; exit 2; }
echo "== pytest 3/3: the solo tests, alone"
run tests -m solo --basetemp="$PWD/build/pytest-tmp-solo" "$@" || status=$?
if [ "$status" -eq 0 ] && [ -f build/pytest-selected-nothing ] && [ "$(wc -l < build/pytest-selected-nothing)" -eq 3 ]; then
  echo "== no session selected any test"; exit 5
fi
exit "$status"
