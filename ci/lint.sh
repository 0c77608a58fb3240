#!/usr/bin/env bash
# Static checks configured in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check src tests benchmarks
ruff format --check src tests benchmarks
mypy
cython-lint src/mfkit
