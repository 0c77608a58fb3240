"""The lowest layer: input checks and thread counts, atomic files, the version, and the
native helpers every kernel shares (``_common``: OpenMP, splitmix64, shuffles; ``_simd.h``:
runtime-dispatched dot products). Imports nothing of mfkit above it.

Importing this package loads the OpenMP runtime (through ``_common``). GNU OpenMP lets an idle
thread spin for about 300,000 iterations before it sleeps; mfkit's kernels wait at a barrier
after every SGD stratum and ALS half-step, and on a machine shared with other busy processes
that spinning takes the core a working thread needs. So, unless the user set
``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` (theirs then wins), the runtime is loaded with
``GOMP_SPINCOUNT=10000`` and the variable is removed again right after: libgomp reads it
once, when it loads, and the process environment (what child processes inherit) is left as
the user had it. If another library loaded libgomp first, its settings stay in force.
"""

import os as _os

_SHORT_SPIN = "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ
if _SHORT_SPIN:
    _os.environ["GOMP_SPINCOUNT"] = "10000"
try:
    from mfkit._core import _common  # noqa: F401  (loads the OpenMP runtime)
finally:
    if _SHORT_SPIN:
        _os.environ.pop("GOMP_SPINCOUNT", None)

__all__: list[str] = []
