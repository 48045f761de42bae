#!/usr/bin/env bash
# Debian's rpm cannot run Fedora's %pyproject_* macros (pyproject-rpm-macros is Fedora's), so here
# the spec is parsed with `rpmspec -P`, with Fedora's directory macros defined as Fedora defines them.
set -euo pipefail
cd "$(dirname "$0")/.."
dpkg-query -W -f='${Status}' rpm 2>/dev/null | grep -q "install ok installed" || \
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm >/dev/null
out=$(rpmspec -P packaging/rpm/flipedit-previewd.spec \
  -D '_userunitdir /usr/lib/systemd/user' -D '_unitdir /usr/lib/systemd/system' \
  -D '_journalcatalogdir /usr/lib/systemd/catalog' -D 'bash_completions_dir /usr/share/bash-completion/completions' \
  -D 'zsh_completions_dir /usr/share/zsh/site-functions' -D 'python3_sitelib /usr/lib/python3.12/site-packages' \
  -D 'python3 /usr/bin/python3' -D 'pyproject_files %{_builddir}/pyproject-files')
grep -q "^Name:           flipedit-previewd" <<<"$out"
grep -q "/usr/lib/systemd/user/flipedit-preview.socket" <<<"$out"
echo "check-rpm-spec: rpmspec -P parsed packaging/rpm/flipedit-previewd.spec"
