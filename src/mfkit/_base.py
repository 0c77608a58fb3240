"""The estimator surface every mfkit factor model shares.

A model predicts ``r_ui ~ mu + b_u + b_i + p_u . q_i`` (or ``p_u . q_i`` with ``biases=False``).
Subclasses supply the per-epoch update (``_begin_fit``, ``_run_epoch``); this base owns what is
the same for all of them: parameter handling in the scikit-learn manner, input conversion,
seeding, initial and prior factors, the epoch loop with validation metrics, early stopping,
divergence detection (keeping the last good epoch), Ctrl-C handling, prediction with id maps,
and persistence.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from mfkit import _common
from mfkit._validation import (
    check_choice,
    check_dtype,
    check_number,
    check_random_state,
    resolve_n_threads,
)
from mfkit.exceptions import DivergenceError, NotFittedError
from mfkit.ratings import IdMap, Ratings, as_ratings

_MODEL_CLASSES: dict[str, type[FactorModel]] = {}
UNKNOWN_CHOICES = ("error", "baseline", "nan")


class FactorState:
    """The trainable arrays of a factor model (updated in place by the kernels)."""

    __slots__ = ("P", "Q", "bu", "bi")

    def __init__(self, P: np.ndarray, Q: np.ndarray, bu: np.ndarray, bi: np.ndarray) -> None:
        self.P, self.Q, self.bu, self.bi = P, Q, bu, bi

    def copy(self) -> FactorState:
        return FactorState(self.P.copy(), self.Q.copy(), self.bu.copy(), self.bi.copy())

    def finite(self) -> bool:
        return bool(
            _common.all_finite(self.P)
            and _common.all_finite(self.Q)
            and np.isfinite(self.bu).all()
            and np.isfinite(self.bi).all()
        )


class FactorModel:
    """Base class of mfkit's matrix-factorization estimators (not used directly)."""

    #: name of the step-size parameter the divergence message tells users to lower
    _step_param: ClassVar[str | None] = None

    # constructor parameters every model has (set by the subclasses' __init__)
    factors: int
    epochs: int
    regularization: float
    bias_regularization: float | None
    prior_regularization: float
    init_std: float
    biases: bool
    tol: float
    patience: int | None
    dtype: Any
    random_state: Any
    n_threads: int | None
    verbose: bool

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _MODEL_CLASSES[cls.__name__] = cls

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> FactorModel:
        """Set constructor parameters; unknown names raise ``ValueError``."""
        valid = set(self._get_param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {key!r}; valid: {sorted(valid)}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        changed = []
        for name, value in self.get_params().items():
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = bool(value == default)
            except Exception:
                same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def _check_common_params(self) -> dict[str, Any]:
        p = {
            "factors": check_number(self.factors, "factors", low=1, integer=True),
            "epochs": check_number(self.epochs, "epochs", low=0, integer=True),
            "regularization": check_number(self.regularization, "regularization", low=0),
            "prior_regularization": check_number(
                self.prior_regularization, "prior_regularization", low=0
            ),
            "init_std": check_number(self.init_std, "init_std", low=0),
            "tol": check_number(self.tol, "tol", low=0),
            "dtype": check_dtype(self.dtype),
            "n_threads": resolve_n_threads(self.n_threads),
        }
        br = self.bias_regularization
        p["bias_regularization"] = (
            p["regularization"] if br is None else check_number(br, "bias_regularization", low=0)
        )
        if self.patience is not None:
            p["patience"] = check_number(self.patience, "patience", low=1, integer=True)
        else:
            p["patience"] = None
        if not isinstance(self.biases, bool | np.bool_):
            raise TypeError(f"biases must be True or False, got {self.biases!r}")
        check_random_state(self.random_state)  # type check only; fit draws from it later
        return p

    def _check_params(self) -> dict[str, Any]:
        """Validated, normalised parameters (subclasses extend)."""
        return self._check_common_params()

    # ------------------------------------------------------------------ hooks
    def _begin_fit(self, X: Ratings, state: FactorState, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _run_epoch(self, epoch: int) -> tuple[float, bool]:
        """One pass; returns (training RMSE, whether all residuals stayed finite)."""
        raise NotImplementedError

    def _end_fit(self) -> None:
        """Drop per-fit scratch."""

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data: Any,
        validation: Any = None,
        *,
        init: Any = None,
        callback: Callable[[FactorModel, dict[str, float]], Any] | None = None,
    ) -> FactorModel:
        """Fit the model to ``data`` (anything :func:`mfkit.as_ratings` accepts).

        Parameters
        ----------
        data : Ratings, scipy sparse, dense array, (users, items, ratings) tuple or DataFrame
            Training ratings.
        validation : same kinds, optional
            Held-out ratings in the same ids as ``data``; RMSE and MAE on them are recorded in
            ``history_`` after each epoch and drive early stopping (``patience``). Users or items
            unknown to ``data`` are predicted by the baseline (global mean plus known biases).
        init : (P0, Q0) arrays, or a fitted model of the same shape, optional
            Starting factors (a fitted model also gives its biases). With
            ``prior_regularization > 0`` the factors are pulled toward these values.
        callback : callable(model, record), optional
            Called after every epoch with the epoch's record (epoch, train_rmse, val_rmse,
            val_mae, seconds); returning ``False`` stops training.

        Returns
        -------
        self
        """
        params = self._check_params()
        X = as_ratings(data)
        if X.nnz == 0:
            raise ValueError("data has no ratings: cannot fit an empty rating matrix")
        rng = check_random_state(self.random_state)
        dtype = params["dtype"]
        k = params["factors"]
        self._params = params
        self.n_threads_ = params["n_threads"]
        self._user_map = X.user_map
        self._item_map = X.item_map
        # what each user rated in training, for recommend(exclude_seen=True): references to
        # the (read-only) training arrays, not copies
        self._seen: tuple[np.ndarray, np.ndarray] | None = (X.indptr, X.indices)
        self.user_ids = X.user_ids
        self.item_ids = X.item_ids
        self.rating_range = (float(X.values.min()), float(X.values.max()))
        biases = bool(self.biases)
        self.global_mean = float(np.mean(X.values, dtype=np.float64)) if biases else 0.0

        val = None if validation is None else self._validation_arrays(validation)
        state, prior = self._initial_state(X, init, rng, k, dtype)
        if params["prior_regularization"] > 0 and prior is None:
            raise ValueError(
                "prior_regularization > 0 needs prior factors: pass init=(P0, Q0) to fit"
            )
        self._prior = prior
        self._state = state
        self._publish(state)
        self.history_: dict[str, list[float]] = {
            "epoch": [],
            "train_rmse": [],
            "val_rmse": [],
            "val_mae": [],
            "seconds": [],
        }
        self.best_epoch_: int | None = None
        self.stop_reason_ = "epochs"
        patience = params["patience"]
        best: tuple[float, FactorState] | None = None
        wait = 0
        self._begin_fit(X, state, rng)
        try:
            for epoch in range(1, params["epochs"] + 1):
                good = state.copy()
                t0 = time.perf_counter()
                try:
                    train_rmse, ok = self._run_epoch(epoch)
                except KeyboardInterrupt:
                    self._restore(good)
                    self.stop_reason_ = "interrupted"
                    warnings.warn(
                        f"training interrupted during epoch {epoch}; the model keeps the "
                        f"factors of epoch {epoch - 1}",
                        UserWarning,
                        stacklevel=2,
                    )
                    break
                seconds = time.perf_counter() - t0
                if not ok or not math.isfinite(train_rmse) or not state.finite():
                    self._restore(good)
                    self.stop_reason_ = "diverged"
                    raise DivergenceError(self._divergence_message(epoch))
                record = {"epoch": float(epoch), "train_rmse": train_rmse, "seconds": seconds}
                if val is not None:
                    rmse, mae = self._score_arrays(*val)
                    record["val_rmse"], record["val_mae"] = rmse, mae
                else:
                    record["val_rmse"] = record["val_mae"] = float("nan")
                for key in self.history_:
                    self.history_[key].append(record[key])
                if self.verbose:
                    _print_record(record)
                stop = False
                if val is not None and patience is not None:
                    if best is None or record["val_rmse"] < best[0] - params["tol"]:
                        best = (record["val_rmse"], state.copy())
                        self.best_epoch_ = epoch
                        wait = 0
                    else:
                        wait += 1
                        if wait >= patience:
                            self._restore(best[1])
                            self.stop_reason_ = "early_stopping"
                            stop = True
                if callback is not None and callback(self, record) is False:
                    self.stop_reason_ = "callback"
                    stop = True
                if stop:
                    break
        finally:
            self._end_fit()
        self._publish(self._state)
        return self

    def _initial_state(
        self, X: Ratings, init: Any, rng: np.random.Generator, k: int, dtype: np.dtype
    ) -> tuple[FactorState, tuple[np.ndarray, np.ndarray] | None]:
        n_users, n_items = X.shape
        bu = np.zeros(n_users, dtype=dtype)
        bi = np.zeros(n_items, dtype=dtype)
        if init is None:
            std = self._params["init_std"]
            P = rng.standard_normal((n_users, k), dtype=dtype)
            P *= dtype.type(std)
            Q = rng.standard_normal((n_items, k), dtype=dtype)
            Q *= dtype.type(std)
            # A user or item without training ratings gets zero factors, so its predictions
            # are the baseline rather than noise from the random start.
            P[X.user_counts() == 0] = 0
            Q[X.item_counts() == 0] = 0
            return FactorState(P, Q, bu, bi), None
        if isinstance(init, FactorModel):
            init._check_fitted()
            for side, mine, theirs in (
                ("user", X.user_map, init._user_map),
                ("item", X.item_map, init._item_map),
            ):
                if mine.n == theirs.n and not mine.same_as(theirs):
                    raise ValueError(
                        f"init model was fitted on other {side} ids than data (same count, "
                        f"different ids or order), so its rows would go to the wrong "
                        f"{side}s; fit on data with the same ids, or pass init=(P0, Q0) "
                        f"arrays aligned with data's {side}_ids"
                    )
            P0, Q0 = init.user_factors, init.item_factors
            if self.biases and init.biases:
                bu[:] = _checked_init(init.user_biases, (n_users,), "init model user_biases")
                bi[:] = _checked_init(init.item_biases, (n_items,), "init model item_biases")
        elif isinstance(init, tuple | list) and len(init) == 2:
            P0, Q0 = init
        else:
            raise TypeError("init must be a (P0, Q0) pair of arrays or a fitted mfkit model")
        P0 = _checked_init(P0, (n_users, k), "init P0 (user factors)")
        Q0 = _checked_init(Q0, (n_items, k), "init Q0 (item factors)")
        P0 = np.ascontiguousarray(P0, dtype=dtype)
        Q0 = np.ascontiguousarray(Q0, dtype=dtype)
        return FactorState(P0.copy(), Q0.copy(), bu, bi), (P0, Q0)

    def _restore(self, snapshot: FactorState) -> None:
        self._state = snapshot
        self._publish(snapshot)

    def _publish(self, state: FactorState) -> None:
        self.user_factors = state.P
        self.item_factors = state.Q
        self.user_biases = state.bu
        self.item_biases = state.bi

    def _divergence_message(self, epoch: int) -> str:
        hint = ""
        if self._step_param is not None:
            value = getattr(self, self._step_param)
            hint = f"; lower {self._step_param} (now {value!r}, try {value / 4:g})"
        return (
            f"{type(self).__name__} diverged in epoch {epoch}: a residual or factor became NaN or "
            f"inf{hint}, or raise regularization. The model keeps the factors of epoch "
            f"{epoch - 1}."
        )

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "_state"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(data) first"
            )

    def _validation_arrays(self, validation: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        V = as_ratings(validation)
        users, items, ratings = V.to_triplets(original_ids=True)
        same_users = V.user_map.same_as(self._user_map)
        same_items = V.item_map.same_as(self._item_map)
        u = (
            V.user_index().astype(np.int64)
            if same_users
            else self._user_map.lookup(users, "validation user ids")
        )
        i = (
            V.indices.astype(np.int64)
            if same_items
            else self._item_map.lookup(items, "validation item ids")
        )
        return u, i, np.asarray(ratings, dtype=np.float64)

    def _predict_indices(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        state = self._state
        out = np.empty(len(u), dtype=np.float64)
        empty = state.bu[:0]
        _common.predict_pairs(
            state.P,
            state.Q,
            state.bu if self.biases else empty,
            state.bi if self.biases else empty,
            self.global_mean,
            np.ascontiguousarray(u, dtype=np.int64),
            np.ascontiguousarray(i, dtype=np.int64),
            out,
            self.n_threads_,
        )
        return out

    def _score_arrays(self, u: np.ndarray, i: np.ndarray, r: np.ndarray) -> tuple[float, float]:
        err = self._predict_indices(u, i) - r
        return float(np.sqrt(np.mean(err * err))), float(np.mean(np.abs(err)))

    def predict(
        self, users: Any, items: Any, *, unknown: str = "error", clip: bool = False
    ) -> np.ndarray:
        """Predicted ratings for the pairs ``(users[j], items[j])`` (float64 array).

        Ids are the original ids of the training data (indices when it had none).

        ``unknown`` says what to do with an id not seen in training:

        * ``'error'`` (default): raise ``ValueError`` naming the ids;
        * ``'baseline'``: predict the global mean plus whatever bias is known, i.e.
          ``mu + b_i`` for an unknown user and a known item, ``mu + b_u`` for a known user
          and an unknown item, ``mu`` when both are unknown (0 with ``biases=False``); the
          factor term is left out;
        * ``'nan'``: return NaN for those pairs.

        A user or item that is in the id map but had no training ratings has zero factors
        and biases, so it always gets the baseline. ``clip=True`` clips to the training
        rating range. New users can be folded in with :meth:`fold_in` instead.
        """
        self._check_fitted()
        check_choice(unknown, "unknown", UNKNOWN_CHOICES)
        scalar = np.ndim(users) == 0 and np.ndim(items) == 0
        u_arr = np.atleast_1d(np.asarray(users))
        i_arr = np.atleast_1d(np.asarray(items))
        if u_arr.shape != i_arr.shape or u_arr.ndim != 1:
            raise ValueError(
                f"users and items must be 1-d and of the same length; got shapes "
                f"{u_arr.shape} and {i_arr.shape}"
            )
        u = self._user_map.lookup(u_arr, "users")
        i = self._item_map.lookup(i_arr, "items")
        bad_u, bad_i = u < 0, i < 0
        if unknown == "error" and (bad_u.any() or bad_i.any()):
            which = "users" if bad_u.any() else "items"
            bad = (u_arr[bad_u] if bad_u.any() else i_arr[bad_i])[:5]
            raise ValueError(
                f"{which} contain ids not seen in training (e.g. {bad.tolist()}); pass "
                f"unknown='baseline' or unknown='nan' to predict them anyway"
            )
        out = self._predict_indices(u, i)
        if unknown == "nan":
            out[bad_u | bad_i] = np.nan
        if clip:
            np.clip(out, *self.rating_range, out=out)
        return out[0] if scalar else out

    # ------------------------------------------------------------------ recommendation
    def recommend(
        self,
        users: Any,
        n: int = 10,
        exclude_seen: bool = True,
        items: Any = None,
        *,
        seen: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` highest-scoring items for one user or a batch of users.

        Parameters
        ----------
        users : id, sequence of ids, or FoldedUsers
            Original user ids of the training data (indices when it had none), or the
            result of :meth:`fold_in` for users not seen in training.
        n : int, default 10
            Length of each list (at most the number of candidate items).
        exclude_seen : bool, default True
            Leave out the items each user rated in training (the model keeps a reference
            to the training matrix; for folded users, their folded ratings).
        items : sequence of item ids, optional
            Restrict the candidates to these items (default: all items).
        seen : ratings, optional
            Items to exclude instead of the training ratings (same ids as the model).

        Returns
        -------
        (item_ids, scores)
            For one user: two 1-d arrays of length n; for a batch: two ``(len(users), n)``
            arrays. Scores are the predicted ratings, equal bit for bit to
            :meth:`predict`; best first; ties go to the lower internal item index. Places
            left empty (fewer than n candidates) have score NaN and id -1 (``''`` for
            string ids).

        Scoring runs in a parallel kernel (``n_threads``) over blocks of users, with a
        partial selection: memory use is O(len(users) * n), not users x items.
        """
        from mfkit.recommend import recommend

        return recommend(self, users, n, exclude_seen, items, seen=seen)

    def similar_items(self, items: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to each of ``items`` by the cosine of their factors
        ``q_i . q_j / (|q_i| |q_j|)`` (an item with zero factors has similarity 0 to all),
        the item itself excluded. Returns ``(item_ids, similarities)`` like
        :meth:`recommend`, with the same tie rule."""
        from mfkit.recommend import similar_items

        return similar_items(self, items, n)

    def fold_in(
        self, data: Any, *, weighted: bool | None = None, unknown_items: str = "error"
    ) -> Any:
        r"""Factors and biases for users not seen in training, without refitting.

        Each new user's row is the exact minimiser of the model's regularised squared
        error with the item factors and biases held fixed (the ALS user half-step). With
        biases, :math:`x = [p_u, b_u]`, :math:`a_i = [q_i, 1]`:

        .. math:: \Big(\sum_{i \in I_u} a_i a_i^\top + \mathrm{diag}(\lambda, \ldots,
                  \lambda, \lambda_b)\Big) x = \sum_{i \in I_u} (r_{ui} - \mu - b_i)\, a_i

        without biases :math:`(Q_u^\top Q_u + \lambda I) p_u = Q_u^\top r_u`. :math:`\lambda`
        is ``regularization`` and :math:`\lambda_b` ``bias_regularization``; with
        ``weighted=True`` both are multiplied by the user's rating count :math:`|I_u|`
        (ALS-WR, Zhou et al. 2008). Solved in float64 by Cholesky, in parallel over users.

        Parameters
        ----------
        data : ratings (anything :func:`mfkit.as_ratings` accepts)
            The new users' ratings. Item ids are mapped to the model's items; a container
            without item ids is read as the model's item indices.
        weighted : bool or None, default None
            Scale the regularization by each user's rating count. None: the model's own
            ``weighted`` parameter when it has one (ALS), else False. (SGD's per-rating
            regularization corresponds to ``weighted=True``.)
        unknown_items : 'error' (default) or 'ignore'
            Ratings of items the model does not know raise ``ValueError`` or are dropped.

        Returns
        -------
        FoldedUsers
            ``user_factors``, ``user_biases``, ``user_ids``; pass it to :meth:`recommend`.
            A user without (known) ratings gets zero factors and bias.
        """
        from mfkit.recommend import fold_in

        return fold_in(self, data, weighted=weighted, unknown_items=unknown_items)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any, *, seen: bool = True) -> None:
        """Write the fitted model to ``path`` as a portable ``.npz`` (no pickle); atomic.

        ``seen=True`` also stores which items each user rated in training (what
        ``recommend(exclude_seen=True)`` needs; 4 bytes per rating); ``seen=False`` leaves
        them out for a smaller file."""
        from mfkit.persistence import save_model

        save_model(self, path, seen=seen)

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return int(self._state.P.shape[0])

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return int(self._state.Q.shape[0])


def _checked_init(a: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _print_record(record: dict[str, float]) -> None:
    line = f"epoch {int(record['epoch']):4d}  train_rmse {record['train_rmse']:.4f}"
    if not math.isnan(record["val_rmse"]):
        line += f"  val_rmse {record['val_rmse']:.4f}  val_mae {record['val_mae']:.4f}"
    line += f"  {record['seconds']:.2f}s"
    print(line, file=sys.stderr, flush=True)


def model_class(name: str) -> type[FactorModel]:
    try:
        return _MODEL_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown mfkit model class {name!r}") from None


__all__ = ["FactorModel", "FactorState", "IdMap", "model_class"]
