#!/usr/bin/env bash
# Static checks configured in pyproject.toml. Run after mfkit is installed (not editable):
# import-linter reads the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check src tests benchmarks
ruff format --check src tests benchmarks
mypy
cython-lint src/mfkit
lint-imports
# a file past 800 lines usually holds two concepts (ARCHITECTURE.md)
long=$(find src -name '*.py' -o -name '*.pyx' | xargs wc -l | awk '$2 != "total" && $1 > 800')
if [ -n "$long" ]; then
  echo "source files over 800 lines (split them by concept):"
  echo "$long"
  exit 1
fi
