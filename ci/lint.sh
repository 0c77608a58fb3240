#!/usr/bin/env bash
# Static checks configured in pyproject.toml. Run after mfkit is installed (not editable):
# import-linter reads the installed package, and stubtest compares the kernels' type stubs
# with the compiled modules.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check src tests benchmarks
ruff format --check src tests benchmarks
mypy
cython-lint src/mfkit
lint-imports
python -m mypy.stubtest --mypy-config-file pyproject.toml --allowlist ci/stubtest-allowlist.txt \
  mfkit._core._common mfkit.data._assemble mfkit.io._lines mfkit.io._tokenize \
  mfkit.recommend._recommend mfkit.recommend._foldin mfkit.metrics._metrics \
  mfkit.models._sgd mfkit.models._als
# a file past 800 lines usually holds two concepts (ARCHITECTURE.md)
long=$(find src -name '*.py' -o -name '*.pyx' | xargs wc -l | awk '$2 != "total" && $1 > 800')
if [ -n "$long" ]; then
  echo "source files over 800 lines (split them by concept):"
  echo "$long"
  exit 1
fi
