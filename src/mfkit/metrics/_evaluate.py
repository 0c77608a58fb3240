"""Evaluating a fitted model on held-out ratings: rating metrics from ``predict``, ranking
metrics from its top-N lists (metric names such as ``'ndcg@10'``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mfkit._core.frames import table_frame
from mfkit.data import as_ratings
from mfkit.data._csr import pairs_to_csr
from mfkit.metrics._scores import (
    ALL_METRICS,
    DEFAULT_METRICS,
    average_metrics,
    coverage,
    mae,
    per_user_metrics,
    rmse,
)
from mfkit.recommend import recommend_indices

if TYPE_CHECKING:
    from mfkit.models._base import FactorModel


def parse_metric(name: str) -> tuple[str, int | None]:
    """``'ndcg@5'`` -> ``('ndcg', 5)``; ``'rmse'`` -> ``('rmse', None)``; a ranking metric
    without ``@k`` gets k = 10."""
    if not isinstance(name, str):
        raise TypeError(f"a metric must be a name like 'rmse' or 'ndcg@10', got {name!r}")
    m = re.fullmatch(r"([a-z_]+)(?:@(\d+))?", name.strip().lower())
    if m is None or m.group(1) not in ALL_METRICS:
        raise ValueError(
            f"unknown metric {name!r}; use one of {', '.join(ALL_METRICS)} (ranking metrics "
            f"and coverage take @k, e.g. 'ndcg@10')"
        )
    base, k = m.group(1), m.group(2)
    if base in ("rmse", "mae"):
        if k is not None:
            raise ValueError(f"{base} takes no @k")
        return base, None
    kk = 10 if k is None else int(k)
    if kk < 1:
        raise ValueError(f"k must be at least 1 in {name!r}")
    return base, kk


def metric_key(name: str) -> str:
    """The key :func:`evaluate` reports ``name`` under: ``'NDCG'`` -> ``'ndcg@10'``,
    ``' RMSE'`` -> ``'rmse'``."""
    base, k = parse_metric(name)
    return base if k is None else f"{base}@{k}"


def evaluate(
    model: FactorModel,
    test: Any,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    threshold: float | None = None,
    exclude_seen: bool = True,
    as_frame: bool = False,
) -> Any:
    """Score a fitted model on held-out ratings.

    Rating metrics use ``model.predict(..., unknown='baseline')`` on every test rating.
    Ranking metrics recommend ``max k`` items to every test user known to the model that has
    a relevant test item (rating ``>= threshold``; all test ratings when None), excluding
    the items the user rated in training (``exclude_seen``), and compare the lists with the
    user's relevant test items (by id, so test items unknown to the model still count in
    recall's denominator). Coverage is over the model's items.

    Returns a dict keyed by the metric names (``'rmse'``, ``'ndcg@10'``, ...) plus
    ``'ranking_users'`` when ranking metrics were asked for; with ``as_frame=True`` a
    one-row pandas DataFrame with those columns (rows of several models concatenate).
    """
    if not isinstance(as_frame, bool | np.bool_):
        raise TypeError(f"as_frame must be True or False, got {as_frame!r}")
    res = _evaluate(model, test, metrics, threshold, exclude_seen)
    return table_frame([res]) if as_frame else res


def _evaluate(
    model: FactorModel,
    test: Any,
    metrics: Sequence[str],
    threshold: float | None,
    exclude_seen: bool,
) -> dict[str, float]:
    T = as_ratings(test)
    names = [parse_metric(m) for m in metrics]
    if not names:
        raise ValueError("metrics is empty: ask for at least one metric")
    res: dict[str, float] = {}
    users, items, ratings = T.to_triplets(original_ids=True)
    if any(b in ("rmse", "mae") for b, _ in names):
        pred = model.predict(users, items, unknown="baseline")
        for b, _ in names:
            if b == "rmse":
                res["rmse"] = rmse(ratings, pred)
            elif b == "mae":
                res["mae"] = mae(ratings, pred)
    ks = [k for b, k in names if k is not None]
    if ks:
        kmax = max(ks)
        keep = np.ones(len(ratings), dtype=bool)
        if threshold is not None:
            keep = np.asarray(ratings) >= threshold
        u_idx = model._fitted.user_map.lookup(users, "test users")
        keep &= u_idx >= 0
        rel_users = np.unique(u_idx[keep])
        if len(rel_users) == 0:
            raise ValueError(
                "no test user known to the model has a relevant test rating; check "
                "threshold= and that the test set shares the training ids"
            )
        # relevant items per scored user, in the model's item indices (-2 for items the
        # model does not know: relevant, but never recommendable)
        i_idx = model._fitted.item_map.lookup(items, "test items")
        i_idx = np.where(i_idx < 0, -2, i_idx)
        row = np.searchsorted(rel_users, u_idx[keep])
        indptr, rel32 = pairs_to_csr(row, i_idx[keep], len(rel_users))
        rel_items = rel32.astype(np.int64)
        rec, _scores, _ = recommend_indices(
            model, model._fitted.user_map.original(rel_users), kmax, exclude_seen
        )
        if rec.shape[1] < kmax:
            raise ValueError(f"the model has fewer than k={kmax} candidate items")
        for k in sorted(set(ks)):
            out = per_user_metrics(rec[:, :k].copy(), indptr, rel_items, k, model.n_threads_)
            avg = average_metrics(out, np.ones(len(rel_users), dtype=bool), k)
            for b, kk in names:
                if kk != k:
                    continue
                if b == "coverage":
                    res[f"coverage@{k}"] = coverage(rec, model.n_items, k)
                else:
                    res[f"{b}@{k}"] = avg[f"{b}@{k}"]
        res["ranking_users"] = float(len(rel_users))
    return res
