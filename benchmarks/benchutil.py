"""Small helpers shared by the benchmark scripts: machine description and table printing."""

from __future__ import annotations

import os
import platform
import resource
import sys
from collections.abc import Sequence
from typing import Any


def machine_info() -> dict[str, Any]:
    """What every benchmark table records next to its figures."""
    import numpy as np

    import mfkit
    from mfkit._core.validation import usable_cores

    info: dict[str, Any] = {
        "mfkit": mfkit.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "usable_cores": usable_cores(),
        "openmp": mfkit.openmp_enabled(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = ", ".join(
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        )
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    return info


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def print_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> None:
    """Print dict rows as an aligned text table (columns from the first row)."""
    if title:
        print(f"\n{title}")
    if not rows:
        print("(no rows)")
        return
    cols = list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[j]) for row in cells)) for j, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


def print_machine() -> None:
    for key, value in machine_info().items():
        print(f"# {key}: {value}")
