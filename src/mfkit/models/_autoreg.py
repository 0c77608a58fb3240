"""``regularization='auto'``: the L2 weight chosen from a small grid on an internal split.

The rule (the same for every model that offers it, SGD and ALS):

1. Hold out ``AUTO_VALIDATION_FRACTION`` of the training ratings, drawn uniformly with a
   generator spawned from the model's ``random_state`` (so the main fit's own draws, and
   therefore its factors, are those of a fit given the chosen value directly).
2. Walk the grid ``AUTO_GRID`` (times the model's scale, see ``_regularization_scale``) from
   the weakest value up. The first value is fitted from the model's usual random start for
   the model's ``epochs``; each next one starts from the previous fit's factors and biases
   (a warm start, as along a regularization path) and runs
   ``ceil(epochs * AUTO_WARM_FRACTION)`` epochs. Each is scored by its held-out RMSE after
   its last epoch. (Weak to strong, because a too strong weight shrinks the factors to
   about zero, a saddle point gradient steps leave only slowly: a path from strong to weak
   under-rates the weak values. With ``prior_regularization > 0`` every value is fitted
   from the ``init`` given to ``fit`` for the full ``epochs`` instead.)
3. Stop walking once the score has failed to improve on the best one for
   ``AUTO_PATIENCE`` consecutive values (the held-out error is close to unimodal in the
   weight), and take the value with the lowest score.

Then the model is fitted as usual on all the ratings with that value; it is reported in
``regularization_`` and the scores in ``regularization_scores_`` as ``[(value, rmse), ...]``
in the order tried. The cost is the main fit plus, on 90% of the data, one full fit and up
to ``len(AUTO_GRID) - 1`` warm fits of a quarter of the epochs (about 2.4 to 3 fits in all).

Why this grid and these constants: chosen on the synthetic shapes of
:func:`mfkit.datasets.synthetic` at several sizes, ranks and noise levels (see
``benchmarks/bench_autoreg.py``), never on the data the README reports results on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfkit.data import Ratings
from mfkit.exceptions import DivergenceError

#: per-rating L2 weights tried, weakest first (times the model's scale)
AUTO_GRID = (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4)
#: share of the training ratings held out to score the grid
AUTO_VALIDATION_FRACTION = 0.1
#: epochs of a warm-started grid fit, as a share of the model's ``epochs`` (rounded up)
AUTO_WARM_FRACTION = 0.25
#: grid values without improvement after which the walk stops
AUTO_PATIENCE = 2


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
    (the ``init`` given to ``fit``) starts the first grid fit. A grid fit that diverges
    scores infinity and ends the walk (weaker values would not do better)."""
    sel = selection_generator(rng)
    held = sel.random(X.nnz) < AUTO_VALIDATION_FRACTION
    if held.all() or not held.any():
        # too few ratings to hold any out: the middle of the grid
        return float(AUTO_GRID[len(AUTO_GRID) // 2] * scale), []
    train, val = X.subset(~held), X.subset(held)
    seed = int(sel.integers(2**63))
    epochs = int(model.epochs)
    warm_epochs = max(1, math.ceil(epochs * AUTO_WARM_FRACTION))
    base = model.get_params()
    base.update(patience=None, verbose=False, random_state=seed)
    cold = float(model.prior_regularization) > 0
    scores: list[tuple[float, float]] = []
    previous = None
    best = (math.inf, 0.0)
    wait = 0
    for value in AUTO_GRID:
        lam = float(value * scale)
        sub = type(model)(**base)
        warm = previous is not None and not cold
        sub.set_params(regularization=lam, epochs=warm_epochs if warm else epochs)
        try:
            sub.fit(train, validation=val, init=previous if warm else init)
        except DivergenceError:
            scores.append((lam, math.inf))
            break
        rmse = float(sub.history_["val_rmse"][-1]) if sub.history_["val_rmse"] else math.inf
        if not math.isfinite(rmse):
            rmse = math.inf
        scores.append((lam, rmse))
        if rmse < best[0]:
            best, wait = (rmse, lam), 0
        else:
            wait += 1
            if wait >= AUTO_PATIENCE:
                break
        previous = sub
    if not math.isfinite(best[0]):
        return float(AUTO_GRID[len(AUTO_GRID) // 2] * scale), scores
    return best[1], scores


__all__ = [
    "AUTO_GRID",
    "AUTO_PATIENCE",
    "AUTO_VALIDATION_FRACTION",
    "AUTO_WARM_FRACTION",
    "select_regularization",
    "selection_generator",
]
