"""Input checks shared by every mfkit estimator: seeds, thread counts, dtypes, numbers."""

from __future__ import annotations

import math
import numbers
import os
import threading
import warnings
from typing import Any

import numpy as np

SeedLike = int | np.random.Generator | None


def check_random_state(random_state: SeedLike, name: str = "random_state") -> np.random.Generator:
    """Turn None, an int seed or a Generator into a ``numpy.random.Generator``."""
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if int(random_state) < 0:
            raise ValueError(f"{name} must be a non-negative integer seed, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise TypeError(
        f"{name} must be None, a non-negative int or a numpy.random.Generator, "
        f"got {type(random_state).__name__}"
    )


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup v2 (cpu.max) or v1 (cfs quota) limit, if any."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fh:
            quota_us = int(fh.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
            period_us = int(fh.read())
        if quota_us > 0 and period_us > 0:
            return max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        pass
    return None


def usable_cores() -> int:
    """Cores this process may use: CPU affinity, capped by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        n = min(n, limit)
    return max(1, n)


#: thread counts above this are refused as a mistake rather than capped
MAX_THREADS = 4096
_proven_threads = 1  # the most threads this process has been seen to start


def startable_threads(n: int) -> int:
    """How many of ``n`` threads this process can run at once (``n`` or fewer).

    OpenMP (libgomp) ends the whole process when it cannot create a thread (a small
    ``ulimit -v``, ``RLIMIT_NPROC``, a container's pids limit), so before a parallel kernel
    first runs with more threads than ever before, mfkit starts that many threads itself
    and, if some cannot be started, uses the number that could (with a warning)."""
    global _proven_threads
    if n <= _proven_threads:
        return n
    release = threading.Event()
    started: list[threading.Thread] = []
    try:
        for _ in range(n - 1):
            t = threading.Thread(target=release.wait, daemon=True)
            try:
                t.start()
            except (RuntimeError, MemoryError, OSError):
                break
            started.append(t)
    finally:
        release.set()
        for t in started:
            t.join()
    k = len(started) + 1
    if k < n:
        warnings.warn(
            f"could start only {k} of {n} threads (a memory, process or thread limit); "
            f"running with n_threads={k}",
            RuntimeWarning,
            stacklevel=3,
        )
        return k
    _proven_threads = n
    return n


def resolve_n_threads(n_threads: int | None) -> int:
    """The number of threads a kernel runs with.

    ``None`` means all usable cores (or ``OMP_NUM_THREADS`` when set); positive ints as is;
    negative ints count back from the usable cores (-1 = all). Zero, and counts beyond
    ``MAX_THREADS`` either way, are errors. The result is capped at the usable cores (CPU
    affinity and cgroup quota aware: more threads than cores only add overhead, and results
    do not depend on the count) and at the threads this process can start."""
    if n_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
        n = int(env) if env.isdigit() and 0 < int(env) <= MAX_THREADS else usable_cores()
    else:
        if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
            raise TypeError(f"n_threads must be None or an int, got {type(n_threads).__name__}")
        n = int(n_threads)
        if n == 0:
            raise ValueError("n_threads must not be 0: use None for all cores or a positive count")
        if abs(n) > MAX_THREADS:
            raise ValueError(
                f"n_threads={n} is not a usable thread count (at most {MAX_THREADS}, and mfkit "
                f"runs at most one thread per usable core); use None for all usable cores"
            )
        if n < 0:
            n = max(1, usable_cores() + 1 + n)
    return startable_threads(min(n, usable_cores()))


def check_dtype(dtype: Any) -> np.dtype:
    """Factor dtype: float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    integer: bool = False,
) -> Any:
    """Check a scalar hyper-parameter and its range; return it as int or float."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {what}, got {value!r}")
    v = int(value) if integer else float(value)  # type: ignore[call-overload]
    if not integer and not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (v < low or (v == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}, got {value!r}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
    return v


def check_choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value
