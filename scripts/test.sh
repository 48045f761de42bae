#!/usr/bin/env bash
# Lint, type-check, then every test layer (unit, integration, system) in one
# pytest run. Benchmarks are not part of this.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff";  .venv/bin/ruff check flipedit_previewd tests bench
echo "== mypy (strict, package)"; .venv/bin/mypy
echo "== man pages and completions"; bash scripts/docs.sh build
echo "== pytest: unit, integration, system"
exec .venv/bin/pytest tests "$@"
