"""The estimator surface every mfkit factor model shares.

A model predicts ``r_ui ~ mu + b_u + b_i + p_u . q_i`` (or ``p_u . q_i`` with ``biases=False``).
Subclasses supply a :class:`Trainer` (``_trainer``: the per-fit scratch and the update of one
epoch); this base owns what is
the same for all of them: parameter handling in the scikit-learn manner, input conversion,
seeding, initial and prior factors, the epoch loop with validation metrics, early stopping,
divergence detection (keeping the last good epoch), Ctrl-C handling, prediction with id maps,
and persistence.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from mfkit._core import _common
from mfkit._core.exact import mean_f32
from mfkit._core.frames import is_frame, pairs_from_frame, recommendations_frame
from mfkit._core.validation import (
    check_choice,
    check_dtype,
    check_number,
    check_random_state,
    resolve_n_threads,
)
from mfkit.data import Ratings, as_ratings
from mfkit.exceptions import DivergenceError, NotFittedError
from mfkit.models._autoreg import check_regularization, resolve_auto, restore_choice
from mfkit.models._persistence import save_model
from mfkit.models._registry import collection_fitter, register
from mfkit.models._state import FactorState, Fitted, aligned_copy, normal_rows
from mfkit.models._training import (
    SAFE_PREDICTION,
    RatingShape,
    Trainer,
    blowup_message,
    blowup_reason,
    checked_init,
    prediction_bound,
    print_record,
)
from mfkit.recommend import FoldedUsers, fold_in, recommend, similar_items

UNKNOWN_CHOICES = ("error", "baseline", "nan")
#: the per-epoch record every model keeps in ``history_``
HISTORY_KEYS = ("epoch", "train_rmse", "val_rmse", "val_mae", "seconds")
#: what fit sets on the model before its first epoch (restored if Ctrl-C comes first)
_FIT_STATE = ("_fitted", "_params", "n_threads_")


def _learned(field: str, doc: str) -> property:
    """A read/write view of one field of the fitted state (NotFittedError before fit)."""

    def get(self: FactorModel) -> Any:
        self._check_fitted()
        return getattr(self._fitted, field)

    def put(self: FactorModel, value: Any) -> None:
        self._check_fitted()
        setattr(self._fitted, field, value)

    return property(get, put, doc=doc)


def _learned_array(which: str, doc: str) -> property:
    def get(self: FactorModel) -> np.ndarray:
        self._check_fitted()
        return getattr(self._fitted.state, which)

    return property(get, doc=doc)


class FactorModel:
    """Base class of mfkit's matrix-factorization estimators (not used directly)."""

    #: the model's own fitted attributes beyond the shared ones (see ``Fitted.extras``)
    _extra_attributes: ClassVar[tuple[str, ...]] = ()
    #: whether ``regularization='auto'`` is offered (see :mod:`mfkit.models._autoreg`); such a
    #: model lists ``regularization`` and ``regularization_scores`` in ``_extra_attributes``
    _auto_regularization: ClassVar[bool] = False
    #: the ``history_`` key of the value ``Trainer.run_epoch`` returns
    _train_key: ClassVar[str] = "train_rmse"
    #: further ``history_`` keys the trainer fills each epoch (``Trainer.epoch_extras``)
    _trainer_keys: ClassVar[tuple[str, ...]] = ()
    #: whether ``predict`` estimates ratings (False: scores such as implicit preferences,
    #: which rating metrics such as RMSE do not apply to)
    predicts_ratings: ClassVar[bool] = True

    # constructor parameters every model has (set by the subclasses' __init__)
    factors: int
    epochs: int
    regularization: float | str
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

    # learned state (scikit-learn's rule: fitted attributes end in "_"); the names without
    # the underscore are kept as aliases of mfkit 0.1
    user_factors_ = _learned_array("P", "User factors, shape (n_users, k).")
    item_factors_ = _learned_array("Q", "Item factors, shape (n_items, k).")
    user_biases_ = _learned_array("bu", "User biases, shape (n_users,); zeros without biases.")
    item_biases_ = _learned_array("bi", "Item biases, shape (n_items,); zeros without biases.")
    global_mean_ = _learned("global_mean", "Mean training rating (0.0 without biases).")
    rating_range_ = _learned("rating_range", "(min, max) training rating (for clip=True).")
    history_ = _learned("history", "Per-epoch record: " + ", ".join(HISTORY_KEYS) + ".")
    best_epoch_ = _learned("best_epoch", "Epoch kept by validation (patience), else None.")
    stop_reason_ = _learned(
        "stop_reason", "'epochs', 'early_stopping', 'callback', 'interrupted' or 'diverged'."
    )
    user_factors = user_factors_
    item_factors = item_factors_
    user_biases = user_biases_
    item_biases = item_biases_
    global_mean = global_mean_
    rating_range = rating_range_
    n_threads_: int

    @property
    def user_ids_(self) -> np.ndarray | None:
        """Original user id of each row (None when the training data had none)."""
        self._check_fitted()
        return self._fitted.user_map.ids

    @property
    def item_ids_(self) -> np.ndarray | None:
        """Original item id of each row (None when the training data had none)."""
        self._check_fitted()
        return self._fitted.item_map.ids

    user_ids = user_ids_
    item_ids = item_ids_

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register(cls)

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
            "regularization": check_regularization(self),
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

    def _regularization_scale(self, X: Ratings, params: dict[str, Any]) -> float:
        """What the ``'auto'`` grid is multiplied by (1: the grid is per rating)."""
        return 1.0

    def _check_params(self) -> dict[str, Any]:
        """Validated, normalised parameters (subclasses extend)."""
        return self._check_common_params()

    # ------------------------------------------------------------------ training hooks
    def _trainer(
        self,
        X: Ratings,
        fitted: Fitted,
        prior: tuple[np.ndarray, np.ndarray] | None,
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> Trainer:
        """The per-fit trainer (subclasses build theirs from the training ratings)."""
        raise NotImplementedError

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

        Notes
        -----
        With ``validation`` and ``patience``, the model ends holding the epoch with the best
        validation RMSE (``best_epoch_``), whether training stopped early, ran out of epochs
        or was stopped by the callback. Ctrl-C at any moment keeps the last completed epoch
        (``stop_reason_='interrupted'``, with a warning; before the first epoch completes,
        the ``KeyboardInterrupt`` propagates and the model is left as it was); a diverging
        epoch raises :class:`~mfkit.DivergenceError` and keeps the last good one.
        """
        fitter = collection_fitter(data)
        if fitter is not None:  # a cluster collection (Dask): its layer's fit
            return fitter(self, data, validation, init=init, callback=callback)
        params = self._check_params()
        X = as_ratings(data)
        if X.nnz == 0:
            raise ValueError("data has no ratings: cannot fit an empty rating matrix")
        rng = check_random_state(self.random_state)
        val = None if validation is None else self._validation_scorer(validation, X, params)
        before = self._fit_snapshot()
        try:
            # draws nothing from rng, so the fit below is the fit given the chosen value
            scores = resolve_auto(self, X, rng, params, init)
            fitted, prior = self._begin_fit(
                X,
                # the exactly rounded mean: the same bits when a cluster sums it by shards
                global_mean=mean_f32(X.values) if self.biases else 0.0,
                rating_range=(float(X.values.min()), float(X.values.max())),
                # what each user rated in training, for recommend(exclude_seen=True):
                # references to the (read-only) training arrays, not copies
                seen=(X.indptr, X.indices),
                init=init,
                rng=rng,
                params=params,
            )
            if self._auto_regularization:
                fitted.extras["regularization"] = params["regularization"]
                fitted.extras["regularization_scores"] = scores
            trainer = self._trainer(X, fitted, prior, rng, params)
        except KeyboardInterrupt:
            self._restore_snapshot(before)  # Ctrl-C before any epoch: the model as it was
            raise
        # the training error of a sane model stays near the ratings' own size (predicting
        # 0 everywhere has the RMS of the ratings as its error)
        # (summed in float64 without a float64 copy of the ratings)
        v = X.values
        scale = float(np.sqrt(np.einsum("i,i->", v, v, dtype=np.float64) / len(v)))
        return self._run_fit(fitted, trainer, val, params, callback, scale, before)

    def _fit_snapshot(self) -> dict[str, Any]:
        """The model's fitted state before a fit starts (what Ctrl-C before the first epoch
        puts back)."""
        return {k: self.__dict__[k] for k in _FIT_STATE if k in self.__dict__}

    def _restore_snapshot(self, before: dict[str, Any]) -> None:
        for key in _FIT_STATE:
            self.__dict__.pop(key, None)
        self.__dict__.update(before)

    def _begin_fit(
        self,
        X: RatingShape,
        *,
        global_mean: float,
        rating_range: tuple[float, float],
        seen: tuple[np.ndarray, np.ndarray] | None,
        init: Any,
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> tuple[Fitted, tuple[np.ndarray, np.ndarray] | None]:
        """The starting state of a fit (initial or given factors, the id maps, an empty
        history), already set on the model so that callbacks see it; and the prior factors.

        ``X`` gives the shape, id maps and rating counts: a :class:`Ratings`, or the summary
        a distributed fit computes without gathering the ratings."""
        state, prior = self._initial_state(X, init, rng, params)
        if prediction_bound(state, global_mean) >= SAFE_PREDICTION[state.P.dtype.char]:
            raise ValueError(
                "the starting factors are so large that predictions overflow "
                f"{state.P.dtype}: lower init_std (now {params['init_std']:g}) or pass "
                "smaller init= factors"
            )
        if params["prior_regularization"] > 0 and prior is None:
            raise ValueError(
                "prior_regularization > 0 needs prior factors: pass init=(P0, Q0) to fit"
            )
        history: dict[str, list[float]] = {key: [] for key in self._history_keys(params)}
        fitted = Fitted(
            state=state,
            user_map=X.user_map,
            item_map=X.item_map,
            seen=seen,
            global_mean=global_mean,
            rating_range=rating_range,
            history=history,
        )
        self._set_fitted(fitted, params)
        return fitted, prior

    def _history_keys(self, params: dict[str, Any]) -> tuple[str, ...]:
        """The keys of ``history_``: the epoch, the model's training loss and extras, its
        validation scores, the seconds."""
        keys = (self._train_key, *self._trainer_keys, *self._validation_keys(params))
        return ("epoch", *keys, "seconds")

    def _run_fit(
        self,
        fitted: Fitted,
        trainer: Trainer,
        val: Callable[[], dict[str, float]] | None,
        params: dict[str, Any],
        callback: Callable[[FactorModel, dict[str, float]], Any] | None,
        scale: float,
        before: dict[str, Any] | None = None,
    ) -> FactorModel:
        """The epoch loop of every fit, on one machine or a cluster: ``trainer`` updates
        ``fitted.state`` in place epoch by epoch; validation scores (``val``), early
        stopping, divergence and Ctrl-C are handled here. ``scale``: the root mean square of
        the training ratings, against which a blow-up of the training error is judged.
        ``before``: the model's state before the fit (:meth:`_fit_snapshot`), put back when
        Ctrl-C comes before the first epoch has finished."""
        before = {} if before is None else before
        state, history = fitted.state, fitted.history
        history_keys = tuple(history)
        val_keys = self._validation_keys(params)
        monitor, higher_is_better = self._monitor(params)
        global_mean = fitted.global_mean
        patience = params["patience"]
        n_threads = int(params.get("n_threads") or 1)
        best: tuple[float, int] | None = None  # (score, epoch) of the best epoch so far
        best_state: FactorState | None = None
        wait = 0
        epoch = 0
        # ``snapshot`` holds epoch ``kept`` (the last completed one), rewritten in place after
        # each epoch, so a fit holds the factors twice, not three times; ``kept`` is None
        # while it is being rewritten (the live state is then the completed epoch)
        snapshot: FactorState | None = None
        kept: int | None = -1
        try:
            fitted.extras = {**fitted.extras, **trainer.fitted_attributes()}
            self._set_fitted(fitted, params)
            snapshot = state.copy()
            kept = 0
            for epoch in range(1, params["epochs"] + 1):
                t0 = time.perf_counter()
                train_loss, ok = trainer.run_epoch(epoch)
                seconds = time.perf_counter() - t0
                # one parallel pass over the factors: finite, and their largest entries
                tops = state.abs_max(n_threads) if ok and math.isfinite(train_loss) else None
                if tops is None:
                    self._end(fitted, params, snapshot, "diverged")
                    raise DivergenceError(trainer.divergence_message(epoch))
                # the RMSE test applies to a training RMSE; a model reporting another loss
                # (ImplicitALS, BPR) gets the prediction-bound test only
                rmse = train_loss if self._train_key == "train_rmse" else None
                blowup = blowup_reason(rmse, scale, state, global_mean, tops)
                if blowup:
                    self._end(fitted, params, snapshot, "diverged")
                    raise DivergenceError(blowup_message(trainer.name, epoch, blowup, scale))
                if rmse is not None and epoch == 1:
                    scale = max(scale, rmse)
                record = {"epoch": float(epoch), self._train_key: train_loss, "seconds": seconds}
                record.update(trainer.epoch_extras())
                if val is not None:
                    record.update(val())
                else:
                    record.update({key: float("nan") for key in val_keys})
                for key in history_keys:
                    history[key].append(record[key])
                kept = None
                snapshot.copy_from(state)
                kept = epoch
                if self.verbose:
                    print_record(record, self._train_key)
                if val is not None and patience is not None:
                    # compared as "lower is better"
                    score = -record[monitor] if higher_is_better else record[monitor]
                    if best is None or score < best[0] - params["tol"]:
                        best = None  # best_state is being rewritten
                        if best_state is None:
                            best_state = state.copy()
                        else:
                            best_state.copy_from(state)
                        best = (score, epoch)
                        wait = 0
                    else:
                        wait += 1
                        if wait >= patience:
                            fitted.stop_reason = "early_stopping"
                            break
                if callback is not None and callback(self, record) is False:
                    fitted.stop_reason = "callback"
                    break
        except KeyboardInterrupt:
            if kept is None:  # during the snapshot: the live state is the completed epoch
                done, keep = epoch, state
            elif kept <= 0 or snapshot is None:
                # nothing completed: the model stays as it was (a random start is no model)
                self._restore_snapshot(before)
                raise
            else:
                done, keep = kept, snapshot
            for key in history_keys:
                del history[key][done:]
            self._end(fitted, params, keep, "interrupted")
            warnings.warn(
                f"training interrupted during epoch {epoch}; the model keeps the factors of "
                f"epoch {done}",
                UserWarning,
                stacklevel=3,
            )
            return self
        if best is not None and best_state is not None:
            fitted.best_epoch = best[1]
            self._end(fitted, params, best_state, fitted.stop_reason)
        else:
            self._end(fitted, params, state, fitted.stop_reason)
        return self

    def _validation_keys(self, params: dict[str, Any]) -> tuple[str, ...]:
        """The ``history_`` keys of the validation scores (NaN without validation)."""
        return ("val_rmse", "val_mae")

    def _monitor(self, params: dict[str, Any]) -> tuple[str, bool]:
        """The validation key early stopping watches, and whether higher is better."""
        return ("val_rmse", False)

    def _validation_scorer(
        self, validation: Any, X: RatingShape, params: dict[str, Any]
    ) -> Callable[[], dict[str, float]]:
        """A function scoring the current state on ``validation`` after an epoch."""
        arrays = self._validation_arrays(validation, X)

        def score() -> dict[str, float]:
            val_rmse, val_mae = self._score_arrays(*arrays)
            return {"val_rmse": val_rmse, "val_mae": val_mae}

        return score

    def _end(self, fitted: Fitted, params: dict[str, Any], state: FactorState, reason: str) -> None:
        fitted.state = state
        fitted.stop_reason = reason
        self._set_fitted(fitted, params)

    def _set_fitted(self, fitted: Fitted, params: dict[str, Any] | None = None) -> None:
        """Make ``fitted`` the model's learned state: the one place that sets it, used by
        ``fit`` (at its start, so callbacks see the model, and at its end) and by
        :func:`mfkit.load`. ``params``: the validated parameters (checked again if None)."""
        params = self._check_params() if params is None else params
        unknown = set(fitted.extras) - set(self._extra_attributes)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no fitted attributes {sorted(unknown)}; it has "
                f"{list(self._extra_attributes)}"
            )
        restore_choice(self, params, fitted.extras)  # a loaded 'auto' model: its choice
        self._params = params
        self._fitted = fitted
        self.n_threads_ = int(self._params["n_threads"])
        for name, value in fitted.extras.items():
            setattr(self, name + "_", value)

    def _initial_state(
        self, X: RatingShape, init: Any, rng: np.random.Generator, params: dict[str, Any]
    ) -> tuple[FactorState, tuple[np.ndarray, np.ndarray] | None]:
        n_users, n_items = X.shape
        k, dtype = params["factors"], params["dtype"]
        bu = np.zeros(n_users, dtype=dtype)
        bi = np.zeros(n_items, dtype=dtype)
        if init is None:
            std = params["init_std"]
            P = normal_rows(rng, n_users, k, dtype)
            P *= dtype.type(std)
            Q = normal_rows(rng, n_items, k, dtype)
            Q *= dtype.type(std)
            # A user or item without training ratings gets zero factors, so its predictions
            # are the baseline rather than noise from the random start.
            P[X.user_counts() == 0] = 0
            Q[X.item_counts() == 0] = 0
            return FactorState(P, Q, bu, bi), None
        if isinstance(init, FactorModel):
            init._check_fitted()
            for side, mine, theirs in (
                ("user", X.user_map, init._fitted.user_map),
                ("item", X.item_map, init._fitted.item_map),
            ):
                if mine.n == theirs.n and not mine.same_as(theirs):
                    raise ValueError(
                        f"init model was fitted on other {side} ids than data (same count, "
                        f"different ids or order), so its rows would go to the wrong "
                        f"{side}s; fit on data with the same ids, or pass init=(P0, Q0) "
                        f"arrays aligned with data's {side}_ids"
                    )
            P0, Q0 = init.user_factors_, init.item_factors_
            if self.biases and init.biases:
                bu[:] = checked_init(init.user_biases_, (n_users,), "init model user_biases")
                bi[:] = checked_init(init.item_biases_, (n_items,), "init model item_biases")
        elif isinstance(init, tuple | list) and len(init) == 2:
            P0, Q0 = init
        else:
            raise TypeError("init must be a (P0, Q0) pair of arrays or a fitted mfkit model")
        P0 = checked_init(P0, (n_users, k), "init P0 (user factors)")
        Q0 = checked_init(Q0, (n_items, k), "init Q0 (item factors)")
        P0 = np.ascontiguousarray(P0, dtype=dtype)
        Q0 = np.ascontiguousarray(Q0, dtype=dtype)
        return FactorState(aligned_copy(P0), aligned_copy(Q0), bu, bi), (P0, Q0)

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self) -> None:
        if "_fitted" not in self.__dict__:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(data) first"
            )

    @staticmethod
    def _validation_arrays(
        validation: Any, X: RatingShape
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validation ratings as (user index, item index, rating) in the training maps."""
        user_map, item_map = X.user_map, X.item_map
        V = as_ratings(validation)
        users, items, ratings = V.to_triplets(original_ids=True)
        same_users = V.user_map.same_as(user_map)
        same_items = V.item_map.same_as(item_map)
        u = (
            V.user_index().astype(np.int64)
            if same_users
            else user_map.lookup(users, "validation user ids")
        )
        i = (
            V.indices.astype(np.int64)
            if same_items
            else item_map.lookup(items, "validation item ids")
        )
        return u, i, np.asarray(ratings, dtype=np.float64)

    def _predict_indices(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        state = self._fitted.state
        out = np.empty(len(u), dtype=np.float64)
        empty = state.bu[:0]
        _common.predict_pairs(
            state.P,
            state.Q,
            state.bu if self.biases else empty,
            state.bi if self.biases else empty,
            self._fitted.global_mean,
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
        self, users: Any, items: Any = None, *, unknown: str = "error", clip: bool = False
    ) -> np.ndarray:
        """Predicted ratings for the pairs ``(users[j], items[j])`` (float64 array).

        Ids are the original ids of the training data (indices when it had none). A pandas
        DataFrame with ``user`` and ``item`` columns may be passed as ``users`` (``items``
        left out): the result has one prediction per row, in row order.

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
        if is_frame(users):
            if items is not None:
                raise TypeError(
                    "pass either a DataFrame of (user, item) pairs or users and items, not both"
                )
            users, items = pairs_from_frame(users)
        elif items is None:
            raise TypeError("predict needs items (or a DataFrame with user and item columns)")
        scalar = np.ndim(users) == 0 and np.ndim(items) == 0
        u_arr = np.atleast_1d(np.asarray(users))
        i_arr = np.atleast_1d(np.asarray(items))
        if u_arr.shape != i_arr.shape or u_arr.ndim != 1:
            raise ValueError(
                f"users and items must be 1-d and of the same length; got shapes "
                f"{u_arr.shape} and {i_arr.shape}"
            )
        u = self._fitted.user_map.lookup(u_arr, "users")
        i = self._fitted.item_map.lookup(i_arr, "items")
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
            np.clip(out, *self._fitted.rating_range, out=out)
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
        as_frame: bool = False,
    ) -> Any:
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
        as_frame : bool, default False
            Return a pandas DataFrame instead (needs pandas): columns ``user``, ``rank``
            (1 = best), ``item``, ``score``, one row per recommended item, in the original
            ids (the folded users' ids for :class:`FoldedUsers`), so it joins to an item
            table such as ``mfkit.datasets.movielens(...).items.to_frame()``; empty places
            are left out.

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
        if not isinstance(as_frame, bool | np.bool_):
            raise TypeError(f"as_frame must be True or False, got {as_frame!r}")
        ids, scores = recommend(self, users, n, exclude_seen, items, seen=seen)
        if not as_frame:
            return ids, scores
        who = users.user_ids if isinstance(users, FoldedUsers) else users
        return recommendations_frame(who, ids, scores)

    def similar_items(self, items: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to each of ``items`` by the cosine of their factors
        ``q_i . q_j / (|q_i| |q_j|)`` (an item with zero factors has similarity 0 to all),
        the item itself excluded. Returns ``(item_ids, similarities)`` like
        :meth:`recommend`, with the same tie rule."""
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
        return fold_in(self, data, weighted=weighted, unknown_items=unknown_items)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any, *, seen: bool = True) -> None:
        """Write the fitted model to ``path`` as a portable ``.npz`` (no pickle); atomic.

        ``seen=True`` also stores which items each user rated in training (what
        ``recommend(exclude_seen=True)`` needs; 4 bytes per rating); ``seen=False`` leaves
        them out for a smaller file."""
        save_model(self, path, seen=seen)

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return int(self._fitted.state.P.shape[0])

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return int(self._fitted.state.Q.shape[0])
