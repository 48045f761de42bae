#!/usr/bin/env bash
# Sets up everything the daemon and its tests need on Debian 12: system packages
# (only when missing), then a project-local virtual environment in .venv.
# Safe to run again: it reuses what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# ffmpeg: the independent decoder and stock encoder of the media corpus (tests/support/media_corpus.py);
# python3-pytest: the corpus also runs under Debian's python3 with the .deb's PyAV 10 and Pillow 9.4;
# chromium, chromium-driver: the viewer page is tested in a real browser (tests/integration/test_viewer.py).
for pkg in libsystemd-dev pkg-config gcc python3-dev python3-venv systemd systemd-container util-linux procps curl tmux ffmpeg python3-pytest \
           chromium chromium-driver; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
stamp=".venv/.setup-$(sha256sum pyproject.toml | cut -c1-16)"
if [ -e .venv ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  echo "setup: .venv is incomplete (an interrupted earlier setup?): creating it again"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
if [ ! -e "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[test,profile]'
  rm -f .venv/.setup-*
  touch "$stamp"
fi
