#!/usr/bin/env bash
# Static checks configured in pyproject.toml. Run after mfkit is installed: stubtest compares
# the kernels' type stubs with the compiled modules.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check src tests benchmarks
ruff format --check src tests benchmarks
mypy
cython-lint src/mfkit
python -m mypy.stubtest --mypy-config-file pyproject.toml --allowlist ci/stubtest-allowlist.txt \
  mfkit._core._common mfkit.data._assemble mfkit.io._lines mfkit.io._tokenize \
  mfkit.recommend._recommend mfkit.recommend._foldin mfkit.metrics._metrics \
  mfkit.models._sgd mfkit.models._als
