#!/usr/bin/env bash
# Full check of a fresh checkout: install from scratch, test the installed package,
# build a wheel and install it elsewhere, lint, and run the README's main job briefly.
# Fails (non-zero) as soon as any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mfkit-ci.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PY=${PYTHON:-python3}
step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "fresh venv and pip install '.[test]'"
"$PY" -m venv "$WORK/venv"
# shellcheck disable=SC1091
source "$WORK/venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "$ROOT[test,lint]"
python - <<'PY'
import pathlib, mfkit
where = pathlib.Path(mfkit.__file__).resolve()
print("mfkit", mfkit.__version__, "from", where, "openmp:", mfkit.openmp_enabled())
assert "site-packages" in where.parts, "tests must run against the installed package"
PY

step "tests (the README's test command, against the installed package)"
bash ci/test.sh

step "lint: ruff, mypy, cython-lint"
bash ci/lint.sh

step "main job (README's first command, shortened)"
mfkit train --preset ml-100k --epochs 3 --out "$WORK/model.npz"
python -c "import mfkit, sys; m = mfkit.load(sys.argv[1]); print('reloaded', m)" "$WORK/model.npz"

step "wheel builds and installs into another fresh venv"
deactivate
bash ci/wheel.sh "$WORK"

step "all CI steps passed"
