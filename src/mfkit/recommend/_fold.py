"""Fold-in: factors of users not seen in training, by a ridge solve against the fixed item
factors (the ``_foldin`` kernel), and the :class:`FoldedUsers` that carries them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mfkit._core.validation import check_choice
from mfkit.data import Ratings, as_ratings
from mfkit.data._csr import pairs_to_csr, sorted_unique
from mfkit.recommend import _foldin

if TYPE_CHECKING:
    from mfkit.models._base import FactorModel


class FoldedUsers:
    """Users folded into a fitted model without refitting (see ``FactorModel.fold_in``).

    Attributes
    ----------
    user_factors : ndarray (n, k), the model's dtype
    user_biases : ndarray (n,); zeros for a model without biases
    user_ids : ndarray (n,), the ids of these users in the fold-in data (row indices when
        it had none)
    seen_indptr, seen_indices : the folded ratings as CSR rows over the model's internal
        item indices; ``recommend`` excludes them with ``exclude_seen=True``
    """

    __slots__ = ("user_factors", "user_biases", "user_ids", "seen_indptr", "seen_indices")

    def __init__(
        self,
        user_factors: np.ndarray,
        user_biases: np.ndarray,
        user_ids: np.ndarray,
        seen_indptr: np.ndarray,
        seen_indices: np.ndarray,
    ) -> None:
        self.user_factors = user_factors
        self.user_biases = user_biases
        self.user_ids = user_ids
        self.seen_indptr = seen_indptr
        self.seen_indices = seen_indices

    def __len__(self) -> int:
        return int(self.user_factors.shape[0])

    def __repr__(self) -> str:
        return f"FoldedUsers({len(self)} users, k={self.user_factors.shape[1]})"


def fold_in(
    model: FactorModel,
    data: Any,
    *,
    weighted: bool | None = None,
    unknown_items: str = "error",
) -> FoldedUsers:
    """Factors (and biases) of new users by a ridge solve against the fixed item factors;
    see ``FactorModel.fold_in`` for the equations."""
    model._check_fitted()
    check_choice(unknown_items, "unknown_items", ("error", "ignore"))
    if weighted is None:
        w = getattr(model, "weighted", False)
        weighted = bool(w) if isinstance(w, bool | np.bool_) else False
    elif not isinstance(weighted, bool | np.bool_):
        raise TypeError(f"weighted must be None, True or False, got {weighted!r}")
    X, indptr, indices, vals = fold_in_rows(model, data, unknown_items)
    state = model._fitted.state
    Q = state.Q
    params = model._params
    lam = float(params["regularization"])
    lam_b = float(params["bias_regularization"])
    P_out = np.zeros((X.n_users, Q.shape[1]), dtype=Q.dtype)
    bu_out = np.zeros(X.n_users, dtype=Q.dtype)
    bad_row = _foldin.fold_in_users(
        Q,
        state.bi,
        float(model.global_mean),
        indptr,
        indices,
        vals,
        lam,
        lam_b,
        bool(getattr(model, "biases", True)),
        bool(weighted),
        P_out,
        bu_out,
        int(model.n_threads_),
    )
    if bad_row >= 0:
        uid = X.user_map.original(np.array([bad_row])).tolist()[0]
        raise ValueError(
            f"fold_in: the ridge system of user {uid!r} is singular; the model has "
            f"regularization={lam}; refit with regularization > 0 or give that user more "
            f"ratings"
        )
    user_ids = X.user_map.original(np.arange(X.n_users))
    return FoldedUsers(P_out, bu_out, np.asarray(user_ids), indptr, indices)


def fold_in_rows(
    model: FactorModel, data: Any, unknown_items: str = "error"
) -> tuple[Ratings, np.ndarray, np.ndarray, np.ndarray]:
    """The fold-in ratings as CSR rows over the model's item indices: ``(X, indptr,
    indices, values)`` with ``X`` the container read from ``data`` (its users are the
    rows), ``values`` float32. Items the model does not know raise ``ValueError`` or,
    with ``unknown_items='ignore'``, are dropped."""
    check_choice(unknown_items, "unknown_items", ("error", "ignore"))
    X = as_ratings(data)
    n_items = model._fitted.state.Q.shape[0]
    if X.item_ids is None:
        if X.n_items > n_items:
            raise ValueError(
                f"the fold-in data has {X.n_items} item columns but the model has {n_items} "
                f"items; columns are taken as the model's item indices (give item ids to map)"
            )
        col = np.arange(X.n_items, dtype=np.int64)
    else:
        col = model._fitted.item_map.lookup(X.item_ids, "items")
    items = col[X.indices]
    keep = items >= 0
    if not keep.all():
        if unknown_items == "error":
            bad = X.item_map.original(sorted_unique(X.indices[~keep])[:5])
            raise ValueError(
                f"the fold-in ratings name items the model does not know (e.g. {bad.tolist()}); "
                f"pass unknown_items='ignore' to drop those ratings"
            )
    rows = X.user_index().astype(np.int64)[keep]
    it = items[keep]
    order = np.lexsort((it, rows))
    vals = np.ascontiguousarray(np.asarray(X.values)[keep][order], dtype=np.float32)
    indptr, indices = pairs_to_csr(rows, it, X.n_users)
    return X, indptr, indices, vals
