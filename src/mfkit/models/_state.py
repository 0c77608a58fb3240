"""The learned state of a factor model: its arrays, and everything else ``fit`` learns.

Both ``fit`` (:mod:`mfkit.models._base`) and ``load`` (:mod:`mfkit.models._persistence`)
produce a :class:`Fitted`, and the model takes it through one method, ``_set_fitted``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mfkit._core import _common
from mfkit.data import IdMap


class FactorState:
    """The trainable arrays of a factor model (updated in place by the kernels)."""

    __slots__ = ("P", "Q", "bu", "bi")

    def __init__(self, P: np.ndarray, Q: np.ndarray, bu: np.ndarray, bi: np.ndarray) -> None:
        self.P, self.Q, self.bu, self.bi = P, Q, bu, bi

    def copy(self) -> FactorState:
        P, Q = aligned_copy(self.P), aligned_copy(self.Q)
        return FactorState(P, Q, self.bu.copy(), self.bi.copy())

    def copy_from(self, other: FactorState) -> None:
        """Overwrite these arrays with ``other``'s (same shapes): a snapshot without a new
        allocation."""
        for mine, theirs in zip(
            (self.P, self.Q, self.bu, self.bi), (other.P, other.Q, other.bu, other.bi), strict=True
        ):
            np.copyto(mine, theirs)

    def abs_max(self, n_threads: int = 1) -> tuple[float, float, float, float] | None:
        """The largest absolute entry of P, Q, bu and bi (0.0 for an empty array), or None
        when an entry of any of them is NaN or inf: one parallel pass over each array."""
        tops = []
        for a in (self.P, self.Q, self.bu, self.bi):
            finite, top = _common.scan_abs_max(a.reshape(len(a), -1), n_threads)
            if not finite:
                return None
            tops.append(top)
        return tops[0], tops[1], tops[2], tops[3]

    def finite(self, n_threads: int = 1) -> bool:
        return self.abs_max(n_threads) is not None


@dataclasses.dataclass
class Fitted:
    """Everything a fitted model has learned (what ``fit`` produces and ``load`` reads back).

    ``extras`` holds a model's own fitted attributes by name without the trailing
    underscore (SGD: ``blocks``, ``fit_nbytes``); they are set on the model as ``name_``."""

    state: FactorState
    user_map: IdMap
    item_map: IdMap
    seen: tuple[np.ndarray, np.ndarray] | None
    global_mean: float
    rating_range: tuple[float, float]
    history: dict[str, list[float]]
    best_epoch: int | None = None
    stop_reason: str = "epochs"
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


#: rows of float64 normal draws converted at a time (bounds the scratch of a float32 start)
DRAW_ROWS = 1 << 15


def aligned_rows(n: int, k: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous (n, k) array starting on a 64-byte boundary: the row
    kernels read factor rows in place, and a row of 16 floats then spans one cache line
    rather than two."""
    dtype = np.dtype(dtype)
    nbytes = n * k * dtype.itemsize
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off : off + nbytes].view(dtype).reshape(n, k)


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """A copy of the 2-d array ``a`` in an :func:`aligned_rows` array (a warm start's
    factors get the alignment of a fresh start's)."""
    out = aligned_rows(a.shape[0], a.shape[1], a.dtype)
    np.copyto(out, a)
    return out


def normal_rows(rng: np.random.Generator, n: int, k: int, dtype: np.dtype) -> np.ndarray:
    """An (n, k) standard normal array of ``dtype`` from float64 draws (drawn in blocks of
    rows, the same stream as one draw), so a float32 and a float64 fit with the same seed
    start from the same factors up to rounding."""
    out = aligned_rows(n, k, dtype)
    for a in range(0, n, DRAW_ROWS):
        b = min(n, a + DRAW_ROWS)
        out[a:b] = rng.standard_normal((b - a, k))
    return out
