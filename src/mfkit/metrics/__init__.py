r"""Rating and ranking metrics.

Rating metrics compare predicted with true ratings:
:math:`\mathrm{RMSE} = \sqrt{\frac1N \sum (\hat r - r)^2}`,
:math:`\mathrm{MAE} = \frac1N \sum |\hat r - r|`.

Ranking metrics compare top-N lists with each user's held-out *relevant* items (binary
relevance: every held-out rating, or those ``>= threshold``). For one user with list
:math:`L` (the first ``k`` entries), relevant set :math:`R` and hits
:math:`h_j = [L_j \in R]`:

* precision@k :math:`= \sum_{j<k} h_j / k` (a list shorter than k counts as missing hits);
* recall@k :math:`= \sum_{j<k} h_j / |R|`;
* AP@k :math:`= \frac{1}{\min(k, |R|)} \sum_{j<k} h_j \cdot \mathrm{precision@}(j+1)`,
  MAP@k its mean;
* NDCG@k :math:`= \mathrm{DCG}/\mathrm{IDCG}` with :math:`\mathrm{DCG} = \sum_{j<k}
  h_j / \log_2(j + 2)` and IDCG the DCG of :math:`\min(k, |R|)` hits in front
  (Jarvelin and Kekalainen 2002);
* hit rate@k: the fraction of users with at least one hit.

Each is averaged over the users that have at least one relevant item; users without any are
left out (they cannot be scored). Catalogue coverage@k is the fraction of the catalogue's
``n_items`` that appears in at least one list's first ``k`` entries.

Lists are 2-d arrays (one row per user, best first) of item ids or indices; the padding
that :meth:`~mfkit._base.FactorModel.recommend` writes (-1 or ``''`` with a NaN score) and
any id that is not relevant never count as hits. A row must not repeat an item.
"""

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
