"""``regularization='auto'``: the L2 weight chosen from a small grid on an internal split.

The rule (the same for every model that offers it, SGD and ALS):

1. Hold out ``AUTO_VALIDATION_FRACTION`` of the training ratings, drawn uniformly with a
   generator spawned from the model's ``random_state`` (so the main fit's own draws, and
   therefore its factors, are those of a fit given the chosen value directly).
2. Fit the model on the rest at ``AUTO_START`` (the old fixed default) and at the next
   stronger grid value, each from a fresh random start for the model's full ``epochs``, and
   score each by its held-out RMSE after the last epoch. Then walk the grid ``AUTO_GRID``
   (times the model's scale, see ``_regularization_scale``) in the direction that improved,
   one value at a time, while the score keeps improving. (The held-out error is close to
   unimodal in the weight, so this finds the best grid value in 3 or 4 fits in the usual
   case instead of 7.) With ``prior_regularization > 0`` every fit starts from the ``init``
   given to ``fit``.
3. Take the value with the lowest score; a fit that diverges scores infinity. Ctrl-C during
   these fits raises ``KeyboardInterrupt`` out of ``fit`` (the model stays as it was).

The grid fits run in float32 whatever the model's ``dtype`` (with their own seed drawn from
the spawned generator), so the choice depends on the data, the parameters and the seed, not
on the dtype or the thread count. Then the model is fitted as usual on all the ratings with
that value; it is reported in ``regularization_`` and the scores in
``regularization_scores_`` as ``[(value, rmse), ...]`` in the order tried. The cost is the
main fit plus usually 3 or 4 fits on 90% of the ratings.

Why this rule: chosen on the synthetic shapes of :func:`mfkit.datasets.synthetic` and on
synthetic low-rank sets at several sizes, ranks and noise levels
(``benchmarks/bench_autoreg.py`` prints the comparison with the best grid value in
hindsight), never on the data the README reports results on. Warm starts along the grid
(each value started from the previous value's factors, with a quarter of the epochs) were
tried first and dropped: from weak to strong, SGD's restarted AdaGrad steps left the
over-fitted start too slowly and ranked the weights in the wrong order on noisy data; from
strong to weak, the factors of the strong values had collapsed to about zero, a saddle point
gradient steps leave slowly, and the weak values were under-rated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from mfkit._core.validation import check_choice, check_number
from mfkit.data import Ratings
from mfkit.exceptions import DivergenceError

#: per-rating L2 weights that can be chosen (times the model's scale)
AUTO_GRID = (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
#: where the walk starts (the fixed default of mfkit 0.1)
AUTO_START = 0.05
#: share of the training ratings held out to score the grid
AUTO_VALIDATION_FRACTION = 0.1


def check_regularization(model: Any) -> float | str:
    """A model's ``regularization`` validated: a number >= 0, or ``'auto'`` where offered."""
    reg = model.regularization
    if isinstance(reg, str):
        if not model._auto_regularization:
            raise TypeError(
                f"{type(model).__name__} regularization must be a number >= 0, got {reg!r}"
            )
        return check_choice(reg, "regularization", ("auto",))
    return float(check_number(reg, "regularization", low=0))


def set_choice(model: Any, params: dict[str, Any], lam: float) -> None:
    """Put a chosen value into ``params`` (and into ``bias_regularization`` when that
    follows ``regularization``)."""
    params["regularization"] = lam
    if model.bias_regularization is None:
        params["bias_regularization"] = lam


def resolve_auto(
    model: Any, X: Ratings, rng: np.random.Generator, params: dict[str, Any], init: Any
) -> list[tuple[float, float]] | None:
    """For ``regularization='auto'``, run the rule and put the choice into ``params``;
    returns the scores (None for a fixed value). Draws nothing from ``rng``."""
    if params["regularization"] != "auto":
        return None
    lam, scores = select_regularization(model, X, rng, model._regularization_scale(X, params), init)
    set_choice(model, params, lam)
    return scores


def restore_choice(model: Any, params: dict[str, Any], extras: dict[str, Any]) -> None:
    """A loaded ``'auto'`` model: put the value its fit chose (in ``extras``) into
    ``params``; ``ValueError`` if the file does not record it."""
    if params["regularization"] != "auto":
        return
    if "regularization" not in extras:
        raise ValueError(
            "its parameters say regularization='auto' but it does not record the value "
            "that fit chose (regularization_)"
        )
    set_choice(model, params, float(extras["regularization"]))


def selection_generator(rng: np.random.Generator) -> np.random.Generator:
    """A generator for the selection that leaves ``rng``'s own stream untouched."""
    try:
        return rng.spawn(1)[0]
    except (TypeError, ValueError):  # a bit generator without a seed sequence
        return np.random.default_rng(int(rng.integers(2**63)))


def select_regularization(
    model: Any, X: Ratings, rng: np.random.Generator, scale: float, init: Any = None
) -> tuple[float, list[tuple[float, float]]]:
    """Run the rule of the module docstring for ``model`` (a FactorModel whose
    ``regularization`` is ``'auto'``) on the ratings ``X``; returns (value, scores). ``init``
    (the ``init`` given to ``fit``) starts every grid fit."""
    sel = selection_generator(rng)
    held = sel.random(X.nnz) < AUTO_VALIDATION_FRACTION
    if held.all() or not held.any():
        # too few ratings to hold any out: the starting value
        return float(AUTO_START * scale), []
    train, val = X.subset(~held), X.subset(held)
    seed = int(sel.integers(2**63))

    def fit_scored(sub: Any) -> list[float]:
        sub.fit(train, validation=val, init=init)
        check_interrupted(sub.stop_reason_)
        return list(sub.history_["val_rmse"])

    return walk_grid(model, scale, seed, fit_scored)


def check_interrupted(stop_reason: str) -> None:
    """``KeyboardInterrupt`` for a grid fit that Ctrl-C stopped (it keeps its last epoch
    and returns): nothing is fitted on all the ratings yet, so the choice stops there."""
    if stop_reason == "interrupted":
        raise KeyboardInterrupt


def walk_grid(
    model: Any, scale: float, seed: int, fit_scored: Callable[[Any], list[float]]
) -> tuple[float, list[tuple[float, float]]]:
    """Steps 2 and 3 of the rule: walk the grid from ``AUTO_START``, fitting each value
    with ``fit_scored(sub)``, which fits ``sub`` (a copy of ``model`` with the grid's
    settings, seed ``seed`` and one grid value) on the training part and returns its
    held-out RMSE per epoch (one machine and a cluster plug in their own fit); returns
    (value, scores). ``DivergenceError`` from ``fit_scored`` scores infinity; a grid fit
    stopped by Ctrl-C raises ``KeyboardInterrupt`` from it (:func:`check_interrupted`)."""
    # float32 (the faster precision) whatever the model's dtype, so the choice does not depend on it
    params = model.get_params()
    params.update(patience=None, verbose=False, random_state=seed, dtype="float32")
    scores: dict[int, float] = {}
    order: list[int] = []

    def score(j: int) -> float:
        if j not in scores:
            lam = float(AUTO_GRID[j] * scale)
            sub = type(model)(**params).set_params(regularization=lam)
            try:
                hist = fit_scored(sub)
                rmse = float(hist[-1]) if hist else math.inf
            except DivergenceError:
                rmse = math.inf
            scores[j] = rmse if math.isfinite(rmse) else math.inf
            order.append(j)
        return scores[j]

    j = AUTO_GRID.index(AUTO_START)
    start = score(j)
    step = 1 if score(j + 1) < start else -1
    if step == 1:
        j += 1
    while 0 <= j + step < len(AUTO_GRID) and score(j + step) < score(j):
        j += step
    tried = [(float(AUTO_GRID[t] * scale), scores[t]) for t in order]
    if not math.isfinite(scores[j]):
        return float(AUTO_START * scale), tried
    return float(AUTO_GRID[j] * scale), tried


__all__ = [
    "AUTO_GRID",
    "check_interrupted",
    "check_regularization",
    "resolve_auto",
    "restore_choice",
    "AUTO_START",
    "AUTO_VALIDATION_FRACTION",
    "select_regularization",
    "selection_generator",
    "set_choice",
    "walk_grid",
]
