#!/usr/bin/env bash
# For the packaged-install system test: build the .deb (lintian included), install its
# dependencies from Debian (python3-av, python3-pil, ...), and unpack it into build/deb/root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/build-deb.sh build/deb
deb=$(ls build/deb/flipedit-previewd_*_all.deb)
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -e 's/(.*)//' -e 's/:any//' -e 's/ //g' | grep -v '^$')
need=()
for pkg in $deps; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "prepare-install-test: installing Debian's ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
rm -rf build/deb/root
dpkg-deb -x "$deb" build/deb/root
echo "prepare-install-test: unpacked into build/deb/root"
