"""What a fit is made of besides the estimator: the :class:`Trainer` a model supplies for
one fit, the shape of the ratings a fit needs to know (:class:`RatingShape`), and the checks
the epoch loop of :mod:`mfkit.models._base` runs after every epoch (divergence, blow-up)."""

from __future__ import annotations

import math
import sys
from typing import Any, Protocol

import numpy as np

from mfkit.data import IdMap
from mfkit.models._state import FactorState


class RatingShape(Protocol):
    """What a fit needs to know of its ratings before training: their shape, id maps and
    per-row counts (a :class:`Ratings` has them; so does a distributed fit's summary)."""

    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def user_map(self) -> IdMap: ...
    @property
    def item_map(self) -> IdMap: ...
    def user_counts(self) -> np.ndarray: ...
    def item_counts(self) -> np.ndarray: ...


class Trainer:
    """The scratch of one fit and the update of one epoch.

    A model's ``_trainer`` builds one from the training ratings, the starting state (updated
    in place) and the seeded generator; ``fit`` drives it epoch by epoch and drops it when it
    returns, so no per-fit array stays on the model."""

    #: the model's name in messages
    name = "model"

    def run_epoch(self, epoch: int) -> tuple[float, bool]:
        """One pass; returns (training RMSE, whether all residuals stayed finite)."""
        raise NotImplementedError

    def epoch_extras(self) -> dict[str, float]:
        """The model's own per-epoch values (keys: the model's ``_trainer_keys``)."""
        return {}

    def divergence_message(self, epoch: int) -> str:
        """What ``DivergenceError`` says when epoch ``epoch`` failed."""
        return (
            f"{self.name} diverged in epoch {epoch}: a residual or factor became NaN or inf; "
            f"raise regularization. The model keeps the factors of epoch {epoch - 1}."
        )

    def fitted_attributes(self) -> dict[str, Any]:
        """The model's own fitted attributes (see :attr:`Fitted.extras`)."""
        return {}


#: a training RMSE this many times the ratings' scale (their RMS, or the first epoch's
#: error if larger) is a blow-up, not training
BLOWUP_FACTOR = 10.0
#: predictions bounded by this stay finite in the kernels' dtype (a margin below the max)
SAFE_PREDICTION = {"f": 1e37, "d": 1e307}


def prediction_bound(
    state: FactorState, global_mean: float, tops: tuple[float, float, float, float] | None = None
) -> float:
    """An upper bound on |prediction| over all (user, item) pairs:
    ``k max|P| max|Q| + max|b_u| + max|b_i| + |mu|`` (no array is allocated); inf when an
    entry is not finite. ``tops``: the state's :meth:`~FactorState.abs_max`, if known."""
    if tops is None:
        tops = state.abs_max()
        if tops is None:
            return math.inf
    p, q, bu, bi = tops
    k = state.P.shape[1]
    return k * p * q + bu + bi + abs(global_mean)


def blowup_reason(
    rmse: float | None,
    scale: float,
    state: FactorState,
    global_mean: float,
    tops: tuple[float, float, float, float] | None = None,
) -> str:
    """Why the epoch that gave ``rmse`` (None: not an RMSE) and ``state`` is a blow-up ('' if
    it is not). ``tops``: the state's :meth:`~FactorState.abs_max`, if known."""
    if rmse is not None and rmse > BLOWUP_FACTOR * max(scale, 1e-12):
        return (
            f"the training RMSE grew to {rmse:.3g}, over {BLOWUP_FACTOR:g} times the "
            f"ratings' scale ({scale:.3g})"
        )
    if prediction_bound(state, global_mean, tops) >= SAFE_PREDICTION[state.P.dtype.char]:
        return f"the factors grew so large that predictions overflow {state.P.dtype}"
    return ""


def blowup_message(name: str, epoch: int, why: str, scale: float) -> str:
    hint = "lower learning_rate or raise regularization"
    if scale > 1e3:
        hint = (
            f"the ratings are large (RMS {scale:.3g}): rescale them (e.g. to 1..5, then scale "
            f"predictions back) or {hint}"
        )
    return (
        f"{name} diverged in epoch {epoch}: {why}; {hint}. The model keeps the factors of "
        f"epoch {epoch - 1}."
    )


def checked_init(a: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def print_record(record: dict[str, float], train_key: str = "train_rmse") -> None:
    if train_key == "train_rmse":
        line = f"epoch {int(record['epoch']):4d}  train_rmse {record['train_rmse']:.4f}"
        if not math.isnan(record["val_rmse"]):
            line += f"  val_rmse {record['val_rmse']:.4f}  val_mae {record['val_mae']:.4f}"
    else:
        line = f"epoch {int(record['epoch']):4d}  {train_key} {record[train_key]:.6g}"
        for key, value in record.items():
            if key not in ("epoch", train_key, "seconds") and not math.isnan(value):
                line += f"  {key} {value:.4f}"
    line += f"  {record['seconds']:.2f}s"
    print(line, file=sys.stderr, flush=True)
