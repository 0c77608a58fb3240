"""Which instruction-set path the kernels run: the best this CPU offers, or one forced.

Kernels with vector fast paths take the path as an argument; every fit asks
:func:`isa_level` once and records the name it used. The paths:

``"baseline"``
    The portable path (the build's baseline target, no fused multiply-add). It gives the
    same bits on every machine mfkit runs on, so results can be reproduced anywhere.
``"avx2"``
    x86-64-v3: AVX2 and FMA.
``"avx512"``
    x86-64-v4: AVX-512 (F, BW, DQ, VL).
``"neon"``
    aarch64: Advanced SIMD (NEON) with FMA. Every aarch64 CPU has it, so an aarch64 build
    offers ``baseline`` and ``neon``; an x86-64 build offers ``baseline`` and the x86 paths
    its CPU supports.

On one machine, every path gives bit-identical results for any thread count. Across paths
the bits may differ (FMA rounds once where the baseline rounds twice); each kernel's
docstring says which of its paths agree bit for bit (the fused SGD sweep: avx2, avx512 and
neon give the same bits, on any machine).

The choice: ``set_isa(name)`` (or ``with use_isa(name):``) in the process, else the
``MFKIT_ISA`` environment variable (``baseline``, ``avx2``, ``avx512``, ``neon`` or
``auto``), else the best available. Asking for a path this CPU or build does not have is a
``ValueError`` naming the ones it has. The setting is process-wide, not per thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from mfkit._core._common import cpu_isa

__all__ = ["ISAS", "available_isas", "get_isa", "isa_level", "set_isa", "use_isa"]

#: every path mfkit knows; a path's index is the integer its kernels take (_isa.h)
ISAS: tuple[str, ...] = ("baseline", "avx2", "avx512", "neon")
_NEON = ISAS.index("neon")
_CPU_LEVEL = int(cpu_isa())
_forced: str | None = None


def _paths_of(level: int) -> tuple[str, ...]:
    """The paths of a build whose best path is `level`: the x86-64 levels include the ones
    below them; neon (aarch64) comes with the baseline only."""
    if level == _NEON:
        return ("baseline", "neon")
    return ISAS[: level + 1]


def available_isas() -> tuple[str, ...]:
    """The paths this CPU and build can run, slowest first (always starts with baseline)."""
    return _paths_of(_CPU_LEVEL)


def _check(name: object, source: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{source} must be a string, one of {', '.join(ISAS)} or 'auto'")
    key = name.strip().lower()
    if key == "auto":
        return available_isas()[-1]
    if key not in ISAS:
        raise ValueError(
            f"{source}={name!r} is not a kernel path; use one of {', '.join(ISAS)} or 'auto'"
        )
    if key not in available_isas():
        raise ValueError(
            f"{source}={name!r}: this CPU (or build) offers only {', '.join(available_isas())};"
            " pick one of those, or 'auto'"
        )
    return key


def set_isa(name: str | None) -> None:
    """Force the kernel path for this process (``None`` goes back to MFKIT_ISA / the best)."""
    global _forced
    _forced = None if name is None else _check(name, "isa")


def get_isa() -> str:
    """The name of the path the next fit will use."""
    if _forced is not None:
        return _forced
    env = os.environ.get("MFKIT_ISA")
    if env is not None and env.strip():
        return _check(env, "MFKIT_ISA")
    return available_isas()[-1]


def isa_level(name: str | None = None) -> int:
    """The integer a kernel takes for `name` (default: :func:`get_isa`)."""
    return ISAS.index(get_isa() if name is None else _check(name, "isa"))


@contextmanager
def use_isa(name: str) -> Iterator[str]:
    """Run the block with the kernel path `name`; the previous choice comes back after."""
    global _forced
    before = _forced
    set_isa(name)
    try:
        yield _forced  # type: ignore[misc]
    finally:
        _forced = before
