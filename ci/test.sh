#!/usr/bin/env bash
# Run the test suite against the installed mfkit (from the repo root, sources not importable).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q --durations=10
