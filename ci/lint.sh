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
# every compiled kernel of the installed package, so a new kernel is checked without a list
kernels=$(python - <<'PY'
import importlib.machinery, importlib.util, pkgutil, mfkit
names = [m.name for m in pkgutil.walk_packages(mfkit.__path__, "mfkit.")]
ext = tuple(importlib.machinery.EXTENSION_SUFFIXES)
print(" ".join(n for n in names if (importlib.util.find_spec(n).origin or "").endswith(ext)))
PY
)
echo "stubtest: $kernels"
python -m mypy.stubtest --mypy-config-file pyproject.toml --allowlist ci/stubtest-allowlist.txt \
  $kernels
# a file past 800 lines usually holds two concepts (ARCHITECTURE.md)
long=$(find src -name '*.py' -o -name '*.pyx' | xargs wc -l | awk '$2 != "total" && $1 > 800')
if [ -n "$long" ]; then
  echo "source files over 800 lines (split them by concept):"
  echo "$long"
  exit 1
fi
# no merge left half done
if git grep -n -I -E '^(<<<<<<<|>>>>>>>) ' -- . ; then
  echo "unresolved merge conflict markers (above)"
  exit 1
fi
