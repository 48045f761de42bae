#!/usr/bin/env bash
# Build the Debian package in a clean directory and run lintian on it.
#   bash packaging/build-deb.sh [OUTDIR]     (default: build/deb)
# Installs the build dependencies from Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-build/deb}")
deps=(build-essential debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
      python3-argparse-manpage python3-shtab python3-h11 python3-systemd python3-requests
      python3-requests-unixsocket python3-rich bash-completion lintian fakeroot)
need=()
for pkg in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "build-deb: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
src="$out/flipedit-previewd-$version"
rm -rf "$out"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$src/"   # no venv, no build output
cp -r packaging/debian "$src/debian"
# Debian's own Python, not a virtual environment that happens to be first on PATH.
(cd "$src" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1) || { tail -40 "$out/build.log"; exit 1; }
deb=$(ls "$out"/flipedit-previewd_*_all.deb)
echo "build-deb: built $deb"
PATH=/usr/sbin:/usr/bin:/sbin:/bin lintian --tag-display-limit 0 --info "$deb" | tee "$out/lintian.txt" || true
if grep -q "^E:" "$out/lintian.txt"; then echo "build-deb: lintian errors"; exit 1; fi
