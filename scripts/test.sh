#!/usr/bin/env bash
# Lint, type-check, then every test layer (unit, integration, system) in one
# pytest run. Benchmarks are not part of this.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff";  .venv/bin/ruff check flipedit_previewd tests bench
echo "== mypy (strict, package)"; .venv/bin/mypy
echo "== man pages and completions"; bash scripts/docs.sh build
echo "== Debian package: build in a clean directory, lintian, Debian's dependencies, unpack"
bash packaging/prepare-install-test.sh
echo "== RPM spec parses"; bash packaging/check-rpm-spec.sh
echo "== pytest: unit, integration, system, booted (the booted layer uses the .deb built above)"
# Outside /tmp: the hardened unit gives the daemon a private /tmp (PrivateTmp=yes), and the
# system tests' projects must be visible to it.
exec .venv/bin/pytest tests --basetemp="$PWD/build/pytest-tmp" "$@"
