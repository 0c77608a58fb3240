"""Cross-validation and grid search over any mfkit estimator (parameters in the scikit-learn
manner: ``get_params`` / ``set_params``)."""

from __future__ import annotations

import itertools
import numbers
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mfkit._core.frames import table_frame
from mfkit._core.validation import SeedLike
from mfkit.data import Ratings, as_ratings
from mfkit.metrics import evaluate, metric_key, parse_metric
from mfkit.model_selection._split import KFold


def clone(model: Any) -> Any:
    """A new unfitted estimator with the same parameters (scikit-learn's ``clone``
    contract: ``type(model)(**model.get_params(deep=False))``; parameters are passed on
    unchanged, so a Generator ``random_state`` is shared, an int seed repeats)."""
    return type(model)(**model.get_params(deep=False))


def _splits(cv: Any, X: Ratings, random_state: SeedLike) -> list[tuple[Ratings, Ratings]]:
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        return list(KFold(int(cv), random_state=random_state).split(X))
    if isinstance(cv, str | bytes) or not (hasattr(cv, "split") or hasattr(cv, "__iter__")):
        raise TypeError(
            "cv must be an int (folds), an object with split(data) such as "
            f"mfkit.model_selection.KFold, or an iterable of (train, test) pairs; got {cv!r}"
        )
    if hasattr(cv, "split"):
        return list(cv.split(X))
    try:
        pairs = list(cv)
    except TypeError:
        raise TypeError(
            "cv must be an int (folds), an object with split(data), or an iterable of "
            f"(train, test) pairs; got {type(cv).__name__}"
        ) from None
    out = []
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise TypeError("cv as an iterable must yield (train, test) pairs")
        out.append((as_ratings(pair[0]), as_ratings(pair[1])))
    return out


def cross_validate(
    model: Any,
    data: Any,
    cv: Any = 5,
    metrics: Sequence[str] = ("rmse", "mae"),
    *,
    threshold: float | None = None,
    exclude_seen: bool = True,
    random_state: SeedLike = None,
    return_models: bool = False,
    verbose: bool = False,
    as_frame: bool = False,
) -> Any:
    """Fit a fresh copy of ``model`` on each training part and score it on the test part.

    Parameters
    ----------
    model : an mfkit estimator (not modified; each fold fits ``clone(model)``)
    data : ratings
    cv : int, splitter, or iterable of (train, test), default 5
        An int means ``KFold(cv, shuffle=True, random_state=random_state)``; any object
        with a ``split(data)`` method yielding ``(train, test)`` pairs (like ``KFold``), or
        an iterable of such pairs (e.g. ``[per_user_split(data, n_test=1, random_state=s)
        for s in range(3)]``), is used as given.
    metrics : names, default ('rmse', 'mae')
        Any of ``rmse``, ``mae``, ``precision@k``, ``recall@k``, ``map@k``, ``ndcg@k``,
        ``hit_rate@k``, ``coverage@k`` (see :func:`mfkit.metrics.evaluate`).
    threshold : float, optional
        Relevance threshold of the ranking metrics.
    exclude_seen : bool, default True
        Ranking metrics leave out each user's training items.
    random_state : None, int or Generator
        Seed of the folds when ``cv`` is an int. With an int here and an int
        ``random_state`` in the model, the whole result is reproducible.
    return_models : bool, default False
        Also return the fitted models under ``'models'``.

    as_frame : bool, default False
        Return a pandas DataFrame instead: one row per fold, a ``fold`` column (from 0),
        then the same columns as the dict (``'model'`` holding the fitted models when
        asked).

    Returns
    -------
    dict with ``'test_<metric>'`` arrays (one value per fold), ``'fit_time'`` and
    ``'score_time'`` arrays (seconds), and ``'models'`` when asked.
    """
    if not isinstance(as_frame, bool | np.bool_):
        raise TypeError(f"as_frame must be True or False, got {as_frame!r}")
    X = as_ratings(data)
    names = list(metrics)
    keys = [metric_key(m) for m in names]
    folds = _splits(cv, X, random_state)
    if not folds:
        raise ValueError("cv produced no splits")
    result: dict[str, Any] = {"fit_time": [], "score_time": []}
    models = []
    for j, (train, test) in enumerate(folds):
        est = clone(model)
        t0 = time.perf_counter()
        est.fit(train)
        t1 = time.perf_counter()
        scores = evaluate(est, test, names, threshold=threshold, exclude_seen=exclude_seen)
        t2 = time.perf_counter()
        result["fit_time"].append(t1 - t0)
        result["score_time"].append(t2 - t1)
        for key in keys:
            result.setdefault(f"test_{key}", []).append(scores[key])
        if return_models:
            models.append(est)
        if verbose:
            shown = "  ".join(
                f"{key[5:]} {vals[-1]:.4f}"
                for key, vals in result.items()
                if key.startswith("test_")
            )
            print(f"fold {j + 1}/{len(folds)}  {shown}  fit {t1 - t0:.2f}s", file=sys.stderr)
    out: dict[str, Any] = {key: np.asarray(vals, dtype=np.float64) for key, vals in result.items()}
    if as_frame:
        rows = []
        for j in range(len(folds)):
            row: dict[str, Any] = {"fold": j}
            row.update({key: float(vals[j]) for key, vals in out.items()})
            if return_models:
                row["model"] = models[j]
            rows.append(row)
        return table_frame(rows)
    if return_models:
        out["models"] = models
    return out


_LOWER_IS_BETTER = ("rmse", "mae")


def grid_search(
    model: Any,
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]],
    data: Any,
    cv: Any = 3,
    metric: str = "rmse",
    *,
    threshold: float | None = None,
    random_state: SeedLike = None,
    refit: bool = True,
    verbose: bool = False,
) -> dict[str, Any]:
    """Exhaustive search over parameter combinations by cross-validation.

    Every combination of ``param_grid`` (a dict of lists, or a list of such dicts) is set on
    a clone of ``model`` and cross-validated on the same folds (``cv`` as in
    :func:`cross_validate`; an int gives ``KFold(cv, random_state=random_state)``, drawn once).
    ``metric`` picks the best: lowest for rmse/mae, highest for the ranking metrics.

    Returns a dict: ``params`` (list of dicts), ``mean_score``, ``std_score`` (arrays),
    ``best_index``, ``best_params``, ``best_score``, and ``best_model`` (refitted on all of
    ``data`` when ``refit``, else None).
    """
    base, _ = parse_metric(metric)
    key = metric_key(metric)
    grids = [param_grid] if isinstance(param_grid, Mapping) else list(param_grid)
    combos: list[dict[str, Any]] = []
    valid = set(model.get_params(deep=False))
    for grid in grids:
        if not isinstance(grid, Mapping) or not grid:
            raise TypeError("param_grid must be a non-empty dict of lists (or a list of them)")
        names = sorted(grid)
        for name in names:
            if name not in valid:
                raise ValueError(
                    f"{type(model).__name__} has no parameter {name!r}; valid: {sorted(valid)}"
                )
            if isinstance(grid[name], str) or not isinstance(grid[name], Sequence | np.ndarray):
                raise TypeError(f"param_grid[{name!r}] must be a list of values")
            if len(grid[name]) == 0:
                raise ValueError(f"param_grid[{name!r}] is empty")
        for values in itertools.product(*(grid[n] for n in names)):
            combos.append(dict(zip(names, values, strict=True)))
    X = as_ratings(data)
    folds = _splits(cv, X, random_state)
    means, stds = [], []
    for params in combos:
        est = clone(model).set_params(**params)
        res = cross_validate(est, X, folds, (metric,), threshold=threshold)
        vals = res[f"test_{key}"]
        means.append(float(vals.mean()))
        stds.append(float(vals.std()))
        if verbose:
            print(f"{params}  {key} {means[-1]:.4f} +- {stds[-1]:.4f}", file=sys.stderr)
    mean_arr = np.asarray(means)
    best = int(np.argmin(mean_arr) if base in _LOWER_IS_BETTER else np.argmax(mean_arr))
    best_model = clone(model).set_params(**combos[best]).fit(X) if refit else None
    return {
        "params": combos,
        "mean_score": mean_arr,
        "std_score": np.asarray(stds),
        "best_index": best,
        "best_params": combos[best],
        "best_score": means[best],
        "best_model": best_model,
    }
