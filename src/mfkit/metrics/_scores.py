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

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfkit._core.validation import check_number, resolve_n_threads
from mfkit.data import Ratings, as_ratings
from mfkit.data._csr import sorted_unique
from mfkit.metrics import _metrics

RANKING_METRICS = ("precision", "recall", "map", "ndcg", "hit_rate")
ALL_METRICS = ("rmse", "mae", *RANKING_METRICS, "coverage")
DEFAULT_METRICS = (
    "rmse",
    "mae",
    "precision@10",
    "recall@10",
    "map@10",
    "ndcg@10",
    "hit_rate@10",
    "coverage@10",
)


# ---------------------------------------------------------------------- rating metrics
def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-d and of the same length; got shapes {t.shape} "
            f"and {p.shape}"
        )
    if t.size == 0:
        raise ValueError("y_true is empty: no ratings to score")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError(
            "y_true or y_pred contains NaN or inf (predict with unknown='baseline' rather "
            "than 'nan' to score unknown ids)"
        )
    return t, p


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error of rating predictions."""
    t, p = _pair(y_true, y_pred)
    d = p - t
    return float(np.sqrt(np.mean(d * d)))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error of rating predictions."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - t)))


# ---------------------------------------------------------------------- ranking metrics
def _as_lists(recommended: Any, name: str = "recommended") -> np.ndarray:
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-d array (one row of item ids per user), got shape {rec.shape}"
        )
    if rec.dtype == object or rec.dtype.kind not in "iuU":
        raise TypeError(f"{name} must hold integer or string item ids, got dtype {rec.dtype}")
    return rec


def _relevant_rows(
    relevant: Any, n_rows: int, threshold: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, item ids) of the relevant items of each row."""
    if isinstance(relevant, Ratings) or sp.issparse(relevant):
        R = as_ratings(relevant)
        if R.n_users != n_rows:
            raise ValueError(
                f"relevant has {R.n_users} user rows but recommended has {n_rows}; row u of "
                f"both must be the same user"
            )
        keep = None if threshold is None else np.asarray(R.values) >= threshold
        items = R.item_map.original(R.indices)
        if keep is None:
            return np.asarray(R.indptr), np.asarray(items)
        counts = np.bincount(R.user_index()[keep], minlength=n_rows)
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, np.asarray(items)[keep]
    if threshold is not None:
        raise ValueError(
            "threshold needs ratings: pass relevant as mfkit.Ratings or a scipy sparse matrix"
        )
    if not isinstance(relevant, Sequence | np.ndarray) or len(relevant) != n_rows:
        raise ValueError(
            "relevant must be Ratings, a scipy sparse matrix, or a sequence with one "
            "collection of item ids per row of recommended"
        )
    rows = [np.atleast_1d(np.asarray(r)) for r in relevant]
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    filled = [r for r in rows if len(r)]  # an empty row is float64 and must not upcast
    items = np.concatenate(filled) if filled else np.empty(0, dtype=np.int64)
    if items.dtype == object:
        items = items.astype(str) if all(isinstance(x, str) for x in items) else items
    return indptr, items


def _codes(
    rec: np.ndarray, indptr: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer codes for relevant items (sorted and distinct within rows) and for the
    list entries (-1 where an entry is not any relevant item)."""
    n_rows = len(indptr) - 1
    if len(items) and (rec.dtype.kind == "U") != (items.dtype.kind == "U"):
        raise TypeError("recommended and relevant item ids must both be integers or strings")
    if rec.dtype.kind != "U" and items.dtype.kind not in "iu" and len(items):
        raise TypeError(f"relevant item ids must be integers or strings, got {items.dtype}")
    uniq = sorted_unique(items)
    rel_codes = np.searchsorted(uniq, items).astype(np.int64)
    row = np.repeat(np.arange(n_rows), np.diff(indptr))
    if len(rel_codes) > 1:
        same_row = row[1:] == row[:-1]
        step = np.diff(rel_codes)
        if np.any(same_row & (step <= 0)):
            order = np.lexsort((rel_codes, row))
            rel_codes, row = rel_codes[order], row[order]
            dup = (row[1:] == row[:-1]) & (rel_codes[1:] == rel_codes[:-1])
            if dup.any():
                keep = np.concatenate(([True], ~dup))
                rel_codes, row = rel_codes[keep], row[keep]
                indptr = np.zeros(n_rows + 1, dtype=np.int64)
                np.cumsum(np.bincount(row, minlength=n_rows), out=indptr[1:])
    flat = rec.ravel()
    if len(uniq):
        pos = np.searchsorted(uniq, flat)
        pos_c = np.minimum(pos, len(uniq) - 1)
        rec_codes = np.where(uniq[pos_c] == flat, pos_c, -1).astype(np.int64)
    else:
        rec_codes = np.full(flat.shape, -1, dtype=np.int64)
    return rec_codes.reshape(rec.shape), np.asarray(indptr, dtype=np.int64), rel_codes


def _check_no_repeats(rec_codes: np.ndarray, rec: np.ndarray) -> None:
    """A row repeating a relevant item would count its hit twice."""
    if rec_codes.shape[1] < 2:
        return
    s = np.sort(rec_codes, axis=1)
    rep = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    if rep.any():
        r = int(np.flatnonzero(rep.any(axis=1))[0])
        raise ValueError(f"row {r} of recommended repeats an item: {rec[r].tolist()}")


def _check_k(k: Any, width: int) -> int:
    k = int(check_number(k, "k", low=1, integer=True))
    if k > width:
        raise ValueError(f"k={k} is longer than the lists (they have {width} entries)")
    return k


def ranking_metrics(
    recommended: Any,
    relevant: Any,
    k: int = 10,
    *,
    threshold: float | None = None,
    n_items: int | None = None,
    n_threads: int | None = None,
) -> dict[str, float]:
    """Precision, recall, MAP, NDCG and hit rate at ``k`` (and coverage when ``n_items``
    is given) of top-N lists, in one pass.

    Parameters
    ----------
    recommended : 2-d array (n_users, n >= k)
        Item ids per user, best first (what ``model.recommend(users, n)`` returns).
    relevant : Ratings, scipy sparse matrix, or sequence of id collections
        Row ``u`` holds user ``u``'s held-out items; with ratings, ``threshold`` selects
        the relevant ones. Item ids are the container's ids (indices when it has none).
    k : int, default 10
    threshold : float, optional
        Held-out ratings ``>= threshold`` are relevant (default: all of them).
    n_items : int, optional
        Catalogue size for ``coverage``.
    n_threads : int or None
        Threads of the per-user kernel (None: all usable cores).

    Returns
    -------
    dict with keys ``precision@k``, ``recall@k``, ``map@k``, ``ndcg@k``, ``hit_rate@k``,
    ``users`` (how many users were scored) and ``coverage@k`` when ``n_items`` is given.
    """
    rec = _as_lists(recommended)
    k = _check_k(k, rec.shape[1])
    indptr, items = _relevant_rows(relevant, rec.shape[0], threshold)
    rec_codes, indptr, rel_codes = _codes(rec[:, :k], indptr, items)
    _check_no_repeats(rec_codes, rec)
    out = per_user_metrics(rec_codes, indptr, rel_codes, k, n_threads)
    res = average_metrics(out, np.diff(indptr) > 0, k)
    if n_items is not None:
        res[f"coverage@{k}"] = coverage(rec, n_items, k)
    return res


def per_user_metrics(
    rec_codes: np.ndarray, indptr: np.ndarray, rel_codes: np.ndarray, k: int, n_threads: Any
) -> np.ndarray:
    out = np.empty((rec_codes.shape[0], 5), dtype=np.float64)
    _metrics.ranking_per_user(
        np.ascontiguousarray(rec_codes, dtype=np.int64),
        k,
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(rel_codes, dtype=np.int64),
        out,
        resolve_n_threads(n_threads),
    )
    return out


def average_metrics(out: np.ndarray, scored: np.ndarray, k: int) -> dict[str, float]:
    n = int(scored.sum())
    if n == 0:
        raise ValueError(
            "no user has a relevant held-out item (check threshold=, or the test split)"
        )
    m = out[scored].mean(axis=0)
    return {
        f"precision@{k}": float(m[0]),
        f"recall@{k}": float(m[1]),
        f"map@{k}": float(m[2]),
        f"ndcg@{k}": float(m[3]),
        f"hit_rate@{k}": float(m[4]),
        "users": float(n),
    }


def _one(name: str, recommended: Any, relevant: Any, k: int, threshold: float | None) -> float:
    return ranking_metrics(recommended, relevant, k, threshold=threshold)[f"{name}@{k}"]


def precision_at_k(
    recommended: Any, relevant: Any, k: int = 10, *, threshold: float | None = None
) -> float:
    """Mean precision@k (see the module docstring)."""
    return _one("precision", recommended, relevant, k, threshold)


def recall_at_k(
    recommended: Any, relevant: Any, k: int = 10, *, threshold: float | None = None
) -> float:
    """Mean recall@k (see the module docstring)."""
    return _one("recall", recommended, relevant, k, threshold)


def map_at_k(
    recommended: Any, relevant: Any, k: int = 10, *, threshold: float | None = None
) -> float:
    """Mean average precision at k (see the module docstring)."""
    return _one("map", recommended, relevant, k, threshold)


def ndcg_at_k(
    recommended: Any, relevant: Any, k: int = 10, *, threshold: float | None = None
) -> float:
    """Mean NDCG@k with binary relevance (see the module docstring)."""
    return _one("ndcg", recommended, relevant, k, threshold)


def hit_rate(
    recommended: Any, relevant: Any, k: int = 10, *, threshold: float | None = None
) -> float:
    """Fraction of users with at least one relevant item in their first k entries."""
    return _one("hit_rate", recommended, relevant, k, threshold)


def coverage(recommended: Any, n_items: int, k: int | None = None) -> float:
    """Catalogue coverage: distinct items in the first ``k`` entries of all lists (all
    entries when k is None) divided by the catalogue size ``n_items``. Padding entries
    (-1 or '') are not items."""
    rec = _as_lists(recommended)
    n_items = int(check_number(n_items, "n_items", low=1, integer=True))
    if k is not None:
        rec = rec[:, : _check_k(k, rec.shape[1])]
    flat = rec.ravel()
    flat = flat[flat != ""] if flat.dtype.kind == "U" else flat[flat >= 0]
    return float(len(sorted_unique(flat)) / n_items)
