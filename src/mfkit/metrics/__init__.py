"""Rating metrics (RMSE, MAE), ranking metrics of top-N lists (precision, recall, MAP, NDCG,
hit rate, coverage at k) and ``evaluate`` for a fitted model; the definitions are in
:mod:`mfkit.metrics._scores`."""

from mfkit.metrics._evaluate import evaluate, metric_key, parse_metric
from mfkit.metrics._scores import (
    ALL_METRICS,
    DEFAULT_METRICS,
    RANKING_METRICS,
    coverage,
    hit_rate,
    mae,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
)

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "RANKING_METRICS",
    "coverage",
    "evaluate",
    "hit_rate",
    "mae",
    "map_at_k",
    "metric_key",
    "ndcg_at_k",
    "parse_metric",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
]
