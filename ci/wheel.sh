#!/usr/bin/env bash
# Build a wheel with build isolation and check it installs and works in a clean venv.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-$(mktemp -d)}
PY=${PYTHON:-python3}
"$PY" -m venv "$WORK/wheelbuild"
"$WORK/wheelbuild/bin/python" -m pip install --quiet --upgrade pip build
"$WORK/wheelbuild/bin/python" -m build --wheel --outdir "$WORK/dist" .
"$PY" -m venv "$WORK/wheeltest"
"$WORK/wheeltest/bin/python" -m pip install --quiet "$WORK"/dist/mfkit-*.whl
cd "$WORK"
"$WORK/wheeltest/bin/python" - <<'PY'
import numpy as np
import mfkit
data = mfkit.datasets.synthetic("toy", random_state=0)
m = mfkit.SGD(factors=4, epochs=3, random_state=0).fit(data)
assert np.all(np.isfinite(m.user_factors))
print("wheel OK:", mfkit.__file__, "openmp:", mfkit.openmp_enabled())
PY
