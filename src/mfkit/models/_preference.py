"""What the implicit-feedback models share: preference scores rather than ratings, positive
interaction values, and validation by ranking metrics with early stopping on one of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from mfkit.metrics import RANKING_METRICS, evaluate, parse_metric
from mfkit.models._base import FactorModel, RatingShape

#: what ``validation=`` records by default
DEFAULT_VALIDATION_METRICS = ("precision@10", "recall@10", "map@10", "ndcg@10")


def check_confidences(values: np.ndarray, name: str = "data") -> None:
    """Refuse interaction values that are not positive, naming the first one."""
    bad = ~(np.asarray(values) > 0)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} holds {int(bad.sum())} value(s) that are not positive (the first is "
            f"{float(values[j])!r} at entry {j}): implicit feedback values are interaction "
            f"strengths (counts, plays, or 1 per interaction), so each must be > 0. Drop the "
            f"others, or build the data with mfkit.to_implicit(ratings, threshold=...)"
        )


class PreferenceModel(FactorModel):
    """Base of the implicit-feedback models: ``predict`` gives the preference score
    ``p_u . q_i`` (no biases), and ``fit(validation=...)`` records the ranking metrics
    ``validation_metrics`` per epoch as ``history_['val_<metric>']``, early stopping
    watching ``monitor`` (higher is better)."""

    _train_key: ClassVar[str] = "train_loss"
    predicts_ratings: ClassVar[bool] = False
    # parameters of the shared base that these models do not have
    biases = False
    bias_regularization = None
    prior_regularization = 0.0

    validation_metrics: Sequence[str]
    monitor: str

    def _check_ranking_params(self, p: dict[str, Any]) -> dict[str, Any]:
        metrics = self.validation_metrics
        if isinstance(metrics, str) or not isinstance(metrics, Sequence) or not metrics:
            raise TypeError(
                "validation_metrics must be a non-empty sequence of metric names such as "
                f"('precision@10', 'ndcg@10'), got {metrics!r}"
            )
        names = []
        for m in metrics:
            base, k = parse_metric(m) if isinstance(m, str) else (None, None)
            if base not in RANKING_METRICS or k is None:
                raise ValueError(
                    f"validation_metrics takes ranking metrics with a cut-off "
                    f"({', '.join(b + '@10' for b in RANKING_METRICS)}), got {m!r}"
                )
            names.append(f"{base}@{k}")
        p["validation_metrics"] = tuple(names)
        monitor = parse_metric(self.monitor) if isinstance(self.monitor, str) else None
        if monitor is None or f"{monitor[0]}@{monitor[1]}" not in names:
            raise ValueError(
                f"monitor must be one of validation_metrics {names}, got {self.monitor!r}"
            )
        p["monitor"] = f"{monitor[0]}@{monitor[1]}"
        return p

    def _validation_keys(self, params: dict[str, Any]) -> tuple[str, ...]:
        return tuple("val_" + m for m in params["validation_metrics"])

    def _monitor(self, params: dict[str, Any]) -> tuple[str, bool]:
        return ("val_" + params["monitor"], True)

    def _validation_scorer(
        self, validation: Any, X: RatingShape, params: dict[str, Any]
    ) -> Callable[[], dict[str, float]]:
        metrics = params["validation_metrics"]

        def score() -> dict[str, float]:
            res = evaluate(self, validation, metrics)
            return {"val_" + m: res[m] for m in metrics}

        return score


__all__ = ["DEFAULT_VALIDATION_METRICS", "PreferenceModel", "check_confidences"]
