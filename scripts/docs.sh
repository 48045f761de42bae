#!/usr/bin/env bash
# Man pages and shell completions, generated from the same argparse definitions the programs use.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build}
mkdir -p "$out/man" "$out/completions"
.venv/bin/python scripts/manpage.py flipedit_previewd.ctl:build_parser previewctl 1 "$out/man/previewctl.1"
.venv/bin/python scripts/manpage.py flipedit_previewd.config.schema:build_parser flipedit-previewd 8 "$out/man/flipedit-previewd.8"
.venv/bin/shtab --shell=bash flipedit_previewd.ctl.build_parser --prog previewctl > "$out/completions/previewctl.bash"
.venv/bin/shtab --shell=zsh flipedit_previewd.ctl.build_parser --prog previewctl > "$out/completions/_previewctl"
.venv/bin/previewctl completion fish > "$out/completions/previewctl.fish"
.venv/bin/shtab --shell=bash flipedit_previewd.config.schema.build_parser --prog flipedit-previewd > "$out/completions/flipedit-previewd.bash"
.venv/bin/shtab --shell=zsh flipedit_previewd.config.schema.build_parser --prog flipedit-previewd > "$out/completions/_flipedit-previewd"
echo "docs: man pages and completions in $out/"
