"""Top-N recommendation, similar items and fold-in of new users for fitted factor models.

These functions back the :class:`~mfkit._base.FactorModel` methods ``recommend``,
``similar_items`` and ``fold_in``; they work on every mfkit model.

Ranking and ties
----------------
``recommend`` ranks the candidate items of a user by the predicted rating
``mu + b_u + b_i + p_u . q_i``, computed in the same order and precision as
:meth:`~mfkit._base.FactorModel.predict`, so a returned score equals ``predict`` for that
pair bit for bit. Higher scores come first; equal scores are ordered by increasing internal
item index (the position of the item in the model's sorted item ids), so the result never
depends on the thread count. ``similar_items`` ranks by the cosine of item factors with the
same tie rule.

Seen items
----------
``fit`` keeps a reference to the training matrix's ``indptr`` / ``indices`` (no copy), and
``save`` stores them (pass ``seen=False`` to ``save`` for a smaller file), so
``exclude_seen=True`` works on fitted and loaded models. A ``seen=`` rating container given to
``recommend`` replaces that record (for example the full history of a user at serving time).

Padding
-------
When fewer than ``n`` candidates are left for a user (after exclusions), the missing places
have score NaN and item id -1 (integer ids or indices) or ``''`` (string ids).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mfkit._core.isa import isa_level
from mfkit._core.validation import check_number
from mfkit.data import IdMap, as_ratings
from mfkit.data._csr import check_csr_structure, pairs_to_csr, sorted_unique
from mfkit.recommend import _recommend
from mfkit.recommend._fold import FoldedUsers

if TYPE_CHECKING:
    from mfkit.models._base import FactorModel

_PANEL = int(_recommend.panel_width())


def pack_items(Q: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """The rows ``Q[cand]`` packed 16 items per panel, factor-major within a panel
    (``panels[p, f * 16 + w]`` = factor f of candidate ``16 p + w``), zero padded."""
    n_c, k = len(cand), Q.shape[1]
    n_p = max(1, -(-n_c // _PANEL))
    buf = np.zeros((n_p * _PANEL, k), dtype=Q.dtype)
    buf[:n_c] = Q[cand]
    return np.ascontiguousarray(buf.reshape(n_p, _PANEL, k).transpose(0, 2, 1)).reshape(
        n_p, _PANEL * k
    )


def _check_n(n: Any) -> int:
    return int(check_number(n, "n", low=1, integer=True))


def _ids_out(model: FactorModel, idx: np.ndarray) -> np.ndarray:
    """Internal item indices (-1: padding) to original item ids."""
    ids = model.item_ids
    if ids is None:
        return idx
    out = ids[np.maximum(idx, 0)]
    pad = idx < 0
    if pad.any():
        out = out.copy()
        out[pad] = "" if ids.dtype.kind == "U" else -1
    return out


def _lookup_known(imap: Any, values: Any, name: str, hint: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be an id or a 1-d sequence of ids, got shape {arr.shape}")
    idx = imap.lookup(arr, name)
    if (idx < 0).any():
        bad = arr[idx < 0][:5]
        raise ValueError(f"{name} contain ids not seen in training (e.g. {bad.tolist()}){hint}")
    return idx


def _seen_from_ratings(model: FactorModel, seen: Any) -> tuple[np.ndarray, np.ndarray]:
    """A rating container in the model's ids as CSR rows over the model's user and item
    indices (ratings of unknown users or items are dropped: they cannot be recommended)."""
    S = as_ratings(seen)
    if S.user_map.same_as(model._fitted.user_map) and S.item_map.same_as(model._fitted.item_map):
        return np.asarray(S.indptr), np.asarray(S.indices)
    users, items, _ = S.to_triplets(original_ids=True)
    u = model._fitted.user_map.lookup(users, "seen users")
    i = model._fitted.item_map.lookup(items, "seen items")
    keep = (u >= 0) & (i >= 0)
    return pairs_to_csr(u[keep], i[keep], model.n_users)


def _bound_order(
    P: np.ndarray, rows: np.ndarray, Q: np.ndarray, cand: np.ndarray, add: np.ndarray
) -> np.ndarray:
    """The order in which the kernel visits the candidates: decreasing b_i + r |q_i|, the
    Cauchy-Schwarz bound of their scores for a row of norm r, the median norm of the query
    rows (of at most 4096 of them, evenly spaced). High bounds first fill each list with
    high scores early, and neighbours with similar bounds share a panel, so the kernel can
    skip whole panels whose bound is below a row's n-th best (the order changes the work,
    never the result)."""
    sample = P[rows[:: max(1, len(rows) // 4096)]]
    pn = np.sqrt(np.einsum("ij,ij->i", sample, sample, dtype=np.float64))
    pn = pn[np.isfinite(pn)]
    r = float(np.median(pn)) if len(pn) else 0.0
    qn = np.sqrt(np.einsum("ij,ij->i", Q[cand], Q[cand], dtype=np.float64))
    key = add + r * qn
    key[~np.isfinite(key)] = np.inf  # unbounded: first (the kernel never skips them)
    return np.argsort(-key, kind="stable")


def _topn(
    P: np.ndarray,
    rows: np.ndarray,
    Q: np.ndarray,
    cand: np.ndarray,
    n: int,
    row_add: np.ndarray,
    item_add: np.ndarray,
    seen: tuple[np.ndarray, np.ndarray] | None,
    seen_row: np.ndarray | None,
    n_threads: int,
    prune: bool = True,
    screen: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The top-n kernel call. ``prune=False`` (for benchmarks) visits the candidates in
    index order and scores every panel: the same lists, without the bound skipping.
    ``screen=False`` (for benchmarks) keeps the avx512 path's float32 filter where it would
    use the int8 screen: the same lists."""
    n_eff = min(n, len(cand))
    out_items = np.empty((len(rows), n_eff), dtype=np.int64)
    out_scores = np.empty((len(rows), n_eff), dtype=np.float64)
    if len(rows) == 0:
        return out_items, out_scores
    empty_i64 = np.empty(0, dtype=np.int64)
    if seen is None or seen_row is None:
        indptr, indices, srow = empty_i64, np.empty(0, dtype=np.int32), empty_i64
    else:
        indptr = np.ascontiguousarray(seen[0], dtype=np.int64)
        indices = np.ascontiguousarray(seen[1], dtype=np.int32)
        srow = np.ascontiguousarray(seen_row, dtype=np.int64)
    add_c = np.asarray(item_add, dtype=np.float64) if len(item_add) else np.zeros(len(cand))
    if prune:
        order = _bound_order(P, rows, Q, cand, add_c)
        cand, add_c = cand[order], add_c[order]
    panels = pack_items(Q, cand)
    # per-slot additive term: b_i (or 0), and -inf on the padding slots of the last panel
    add = np.full(panels.shape[0] * _PANEL, -np.inf)
    add[: len(cand)] = add_c
    base = row_add if len(row_add) else np.zeros(len(rows))
    _recommend.topn(
        np.ascontiguousarray(P),
        np.ascontiguousarray(rows, dtype=np.int64),
        panels,
        np.ascontiguousarray(cand, dtype=np.int64),
        add,
        np.ascontiguousarray(base, dtype=np.float64),
        indptr,
        indices,
        srow,
        out_items,
        out_scores,
        int(n_threads),
        True,
        isa_level(),
        prune,
        screen,
    )
    pad = out_items < 0
    if pad.any():
        out_scores[pad] = np.nan
    return out_items, out_scores


def recommend_indices(
    model: FactorModel,
    users: Any,
    n: int = 10,
    exclude_seen: bool = True,
    items: Any = None,
    *,
    seen: Any = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Like :func:`recommend` but returns internal item indices (-1 for padding) and
    whether a single user was asked for."""
    model._check_fitted()
    n = _check_n(n)
    if not isinstance(exclude_seen, bool | np.bool_):
        raise TypeError(f"exclude_seen must be True or False, got {exclude_seen!r}")
    state = model._fitted.state
    Q = state.Q
    if items is None:
        cand = np.arange(Q.shape[0], dtype=np.int64)
    else:
        cand = sorted_unique(_lookup_known(model._fitted.item_map, items, "items", ""))
        if len(cand) == 0:
            raise ValueError("items is empty: give at least one candidate item")
    single = False
    seen_csr: tuple[np.ndarray, np.ndarray] | None = None
    seen_row: np.ndarray | None = None
    if isinstance(users, FoldedUsers):
        P = users.user_factors
        if P.dtype != Q.dtype or P.ndim != 2 or P.shape[1] != Q.shape[1]:
            raise ValueError(
                "these folded users do not match the model (factor count or dtype differ); "
                "fold them in with this model"
            )
        rows = np.arange(len(users), dtype=np.int64)
        bu = users.user_biases
        if exclude_seen:
            seen_csr = (users.seen_indptr, users.seen_indices)
            why = check_csr_structure(
                np.asarray(seen_csr[0]), np.asarray(seen_csr[1]), None, model.n_items
            )
            if why is not None or len(seen_csr[0]) != len(users) + 1:
                raise ValueError(
                    f"the folded users' seen_indptr / seen_indices are not CSR rows of "
                    f"sorted distinct item indices of this model ({why or 'wrong length'}); "
                    f"build FoldedUsers with model.fold_in"
                )
            seen_row = rows
        if seen is not None:
            seen_csr = _seen_for_rows(model, seen, users.user_ids)
            seen_row = rows if exclude_seen else None
    else:
        single = np.ndim(users) == 0
        rows = _lookup_known(
            model._fitted.user_map,
            users,
            "users",
            "; fold new users in with model.fold_in(their_ratings) and pass the result",
        )
        P, bu = state.P, state.bu
        if exclude_seen:
            if seen is not None:
                seen_csr = _seen_from_ratings(model, seen)
            else:
                seen_csr = model._fitted.seen
                if seen_csr is None:
                    raise ValueError(
                        "this model has no record of its training ratings (it was saved with "
                        "seen=False); pass seen=<ratings to exclude> or exclude_seen=False"
                    )
            seen_row = rows
    if getattr(model, "biases", True):
        row_add = model.global_mean + bu[rows].astype(np.float64)
        item_add = state.bi[cand].astype(np.float64)
    else:
        row_add = item_add = np.empty(0, dtype=np.float64)
    idx, scores = _topn(
        P, rows, Q, cand, n, row_add, item_add, seen_csr, seen_row, model.n_threads_
    )
    return idx, scores, single


def _seen_for_rows(
    model: FactorModel, seen: Any, user_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """CSR rows of ``seen`` (in model item indices) for the given user ids, in that order."""
    S = as_ratings(seen)
    users, items, _ = S.to_triplets(original_ids=True)
    r = IdMap(np.asarray(user_ids), len(user_ids)).lookup(users, "seen users")
    i = model._fitted.item_map.lookup(items, "seen items")
    keep = (r >= 0) & (i >= 0)
    return pairs_to_csr(r[keep], i[keep], len(user_ids))


def recommend(
    model: FactorModel,
    users: Any,
    n: int = 10,
    exclude_seen: bool = True,
    items: Any = None,
    *,
    seen: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` items for one user or a batch (see ``FactorModel.recommend``)."""
    idx, scores, single = recommend_indices(model, users, n, exclude_seen, items, seen=seen)
    ids = _ids_out(model, idx)
    if single:
        return ids[0], scores[0]
    return ids, scores


def similar_items(model: FactorModel, items: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` items most similar to each given item by the cosine of item factors
    (the item itself excluded); see ``FactorModel.similar_items``."""
    model._check_fitted()
    n = _check_n(n)
    single = np.ndim(items) == 0
    rows = _lookup_known(model._fitted.item_map, items, "items", "")
    Q = model._fitted.state.Q
    if Q.shape[0] < 2:
        raise ValueError("similar_items needs a model with at least two items")
    norms = np.sqrt(np.einsum("ij,ij->i", Q, Q, dtype=np.float64))
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    Qn = (Q * inv[:, None]).astype(Q.dtype)
    cand = np.arange(Q.shape[0], dtype=np.int64)
    self_csr = (np.arange(len(rows) + 1, dtype=np.int64), rows.astype(np.int32))
    empty = np.empty(0, dtype=np.float64)
    idx, scores = _topn(
        Qn,
        rows,
        Qn,
        cand,
        n,
        empty,
        empty,
        self_csr,
        np.arange(len(rows), dtype=np.int64),
        model.n_threads_,
    )
    ids = _ids_out(model, idx)
    if single:
        return ids[0], scores[0]
    return ids, scores
