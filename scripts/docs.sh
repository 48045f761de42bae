#!/usr/bin/env bash
# Man pages and shell completions, generated from the same argparse definitions the programs use.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build}
mkdir -p "$out/man" "$out/completions"
v=$(.venv/bin/python -c 'import flipedit_previewd as f; print(f.__version__)')
.venv/bin/argparse-manpage --module flipedit_previewd.ctl --function build_parser --prog previewctl \
  --project-name flipedit-previewd --version "$v" --manual-section 1 --manual-title "FlipEdit preview" \
  --description "inspect and troubleshoot the FlipEdit preview daemon" --output "$out/man/previewctl.1"
.venv/bin/argparse-manpage --module flipedit_previewd.config --function build_parser --prog flipedit-previewd \
  --project-name flipedit-previewd --version "$v" --manual-section 8 --manual-title "FlipEdit preview" \
  --description "the FlipEdit preview daemon" --output "$out/man/flipedit-previewd.8"
.venv/bin/shtab --shell=bash flipedit_previewd.ctl.build_parser --prog previewctl > "$out/completions/previewctl.bash"
.venv/bin/shtab --shell=zsh flipedit_previewd.ctl.build_parser --prog previewctl > "$out/completions/_previewctl"
.venv/bin/shtab --shell=bash flipedit_previewd.config.build_parser --prog flipedit-previewd > "$out/completions/flipedit-previewd.bash"
.venv/bin/shtab --shell=zsh flipedit_previewd.config.build_parser --prog flipedit-previewd > "$out/completions/_flipedit-previewd"
echo "docs: man pages and completions in $out/"
