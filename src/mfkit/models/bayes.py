"""Bayesian matrix factorization sampled by Gibbs (BPMF with biases and a learned noise
precision). The sampler itself (its draws and one run) is in :mod:`mfkit.models._gibbs`;
its public functions are re-exported here."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from mfkit._core.exact import exact_sum_f32, exact_sum_sq_f32
from mfkit._core.frames import is_frame, pairs_from_frame
from mfkit._core.isa import get_isa
from mfkit._core.validation import (
    SeedLike,
    check_dtype,
    check_number,
    check_random_state,
    resolve_n_threads,
)
from mfkit.data import Ratings, as_ratings
from mfkit.exceptions import DivergenceError
from mfkit.models._base import HISTORY_KEYS, FactorModel
from mfkit.models._gibbs import (
    BETA0,
    INIT_STD,
    NOISE_RATE0,
    NOISE_SHAPE0,
    GibbsSampler,
    LocalRows,
    RowDraws,
    normal_wishart_posterior,
    refuse_init,
    sample_hyper,
    sample_noise_precision,
    sample_rows,
    sample_wishart,
)
from mfkit.models._registry import collection_fitter
from mfkit.models._state import Fitted
from mfkit.models._training import print_record

#: the per-sweep record of ``BayesianMF.history_``
BAYES_HISTORY_KEYS = (*HISTORY_KEYS, "noise_precision")
#: default number of kept samples (at most the sweeps after burn-in)
DEFAULT_KEEP = 75
#: pairs per block when ``predict(return_std=True)`` expands the samples
_STD_BLOCK = 4096


# --------------------------------------------------------------------------- the model
class BayesianMF(FactorModel):
    r"""Bayesian biased matrix factorization, sampled by Gibbs (BPMF), parallel over rows
    and bit-identical at any thread count. No learning rate and no regularization to tune.

    Model (Salakhutdinov and Mnih, "Bayesian Probabilistic Matrix Factorization using
    Markov Chain Monte Carlo", ICML 2008, with biases and a learned noise precision):

    .. math:: r_{ui} \sim N(\mu + b_u + b_i + p_u^\top q_i,\ \alpha^{-1}), \quad
              [p_u, b_u] \sim N(m_U, \Lambda_U^{-1}), \quad [q_i, b_i] \sim N(m_V, \Lambda_V^{-1})

    with Normal-Wishart hyperpriors :math:`m \sim N(0, (\beta_0\Lambda)^{-1})`,
    :math:`\Lambda \sim W(I, K)` (:math:`\beta_0 = 2`, K = k + 1) on each side and
    :math:`\alpha \sim \mathrm{Gamma}(1, 1)` (shape, rate); :math:`\mu` is the mean
    training rating, held fixed. The bias rides in the factor row as one more dimension, so
    its prior mean, precision and correlation with the factors are learned like theirs and
    a row's conditional is one (k + 1)-dimensional Gaussian: the augmented normal equations
    of the ALS row kernel. A full Wishart (rather than Rendle's per-dimension
    Normal-Gamma) is cheap here, a k x k draw per side and sweep, and lets the factors'
    prior covariance be learned whole.

    Each sweep draws :math:`(m_U, \Lambda_U)` given the user rows, every user row given the
    items (in parallel; see :func:`sample_rows`), then the same for the items, then
    :math:`\alpha \sim \mathrm{Gamma}(1 + N/2, 1 + \mathrm{SSE}/2)`. The first ``burn_in``
    sweeps are discarded; ``keep`` samples evenly spaced over the rest, ending with the last
    sweep, are kept, and predictions average over them.

    Parameters
    ----------
    factors : int, default 10
        Number of latent factors k. Sampling the posterior keeps a larger k from
        overfitting, but on MovieLens-100K k = 10 is as accurate as k = 32 at a third of
        the time (``benchmarks/bench_accuracy.py``).
    epochs : int, default 100
        Gibbs sweeps (a user half-sweep then an item half-sweep each).
    burn_in : int or None, default None
        Sweeps discarded before samples are kept, ``0 <= burn_in < epochs``; None means
        ``epochs // 4``.
    keep : int or None, default None
        Samples kept for prediction, ``1 <= keep <= epochs - burn_in``; None means
        ``min(75, epochs - burn_in)`` (every sweep after the default burn-in). The fitted
        model holds ``keep * (n_users + n_items) * (k + 1)`` numbers of ``dtype`` (plus one
        float64 per kept sample); a fit needs two more single-sample sets of factors (the
        current sample and the last good one) on top of the CSR and CSC ratings.
    biases : bool, default True
        Learn a global mean and sampled user and item biases.
    dtype : float32 or float64, default float32
        Factor precision (each row's system is formed and solved in this precision).
    random_state : None, int or numpy.random.Generator, default None
        Seed of the starting factors, the hyperparameter draws and the row draws. The same
        seed, data and parameters give bit-identical samples for every ``n_threads``.
    n_threads : int or None, default None
        Threads for the row draws, prediction and scoring (None: all usable cores).
    verbose : bool, default False
        Print one line per sweep on stderr.

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray (n_users, S k), (n_items, S k)
        The S = ``n_samples_`` kept samples side by side (sample s in columns
        ``s k .. (s + 1) k - 1``), the user side divided by S, so that
        ``user_factors_[u] @ item_factors_[i]`` is the average of :math:`p_u^\top q_i` over
        the samples: ``predict``, ``recommend`` and ``similar_items`` use them as they
        are (``similar_items`` is the cosine over all samples' factors at once).
    user_biases_, item_biases_ : ndarray; the average bias over the kept samples
    user_bias_samples_, item_bias_samples_ : ndarray (S, n_users), (S, n_items)
    noise_precision_samples_ : ndarray (S,), float64; the sampled :math:`\alpha`
    noise_precision_ : float, their mean
    n_samples_ : int, S
    burn_in_ : int, the resolved ``burn_in``
    fold_in_regularization_ : [lambda, lambda_b] used by :meth:`fold_in`: S times the mean
        over samples of :math:`\mathrm{tr}(\Lambda_U)_{1..k} / (k\alpha)`, and the mean of
        :math:`(\Lambda_U)_{k+1,k+1}/\alpha` (a ridge fold-in against the concatenated
        samples that matches each sample's prior strength)
    isa_ : the kernel path of the row draws (as for :class:`ALS`; each path bit-identical
        for any ``n_threads``)
    history_ : dict of lists per sweep: epoch, train_rmse (of the current sample),
        val_rmse and val_mae (of the running posterior mean over the samples kept so far,
        of the current sample before the first; NaN without validation data),
        noise_precision (the sampled :math:`\alpha`), seconds
    stop_reason_ : 'epochs', 'callback', 'interrupted' or 'diverged'

    Notes
    -----
    A user or item without training ratings keeps zero factors and bias, so it predicts
    the baseline. Ctrl-C keeps the samples kept so far (the current state if none) with a
    warning; a sweep that produces NaN or inf raises :class:`~mfkit.DivergenceError` and
    keeps the samples kept before it. While ``fit`` runs (as a ``callback`` sees it), the
    model holds the current sample as a one-sample model. ``fit`` of a Dask DataFrame
    samples on a cluster with the same bits (:func:`mfkit.distributed.fit`).
    """

    _extra_attributes = (
        "user_bias_samples",
        "item_bias_samples",
        "noise_precision_samples",
        "noise_precision",
        "n_samples",
        "burn_in",
        "fold_in_regularization",
        "isa",
    )

    user_bias_samples_: np.ndarray
    item_bias_samples_: np.ndarray
    noise_precision_samples_: np.ndarray
    noise_precision_: float
    n_samples_: int
    burn_in_: int
    fold_in_regularization_: list[float]

    def __init__(
        self,
        factors: int = 10,
        epochs: int = 100,
        burn_in: int | None = None,
        keep: int | None = None,
        biases: bool = True,
        dtype: Any = "float32",
        random_state: SeedLike = None,
        n_threads: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.burn_in = burn_in
        self.keep = keep
        self.biases = biases
        self.dtype = dtype
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    def _check_params(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            "factors": check_number(self.factors, "factors", low=1, integer=True),
            "epochs": check_number(self.epochs, "epochs", low=1, integer=True),
            "dtype": check_dtype(self.dtype),
            "n_threads": resolve_n_threads(self.n_threads),
        }
        E = p["epochs"]
        if self.burn_in is None:
            p["burn_in"] = E // 4
        else:
            p["burn_in"] = check_number(self.burn_in, "burn_in", low=0, integer=True)
            if p["burn_in"] >= E:
                raise ValueError(
                    f"burn_in must be < epochs so that samples are kept, got burn_in="
                    f"{self.burn_in} with epochs={E}; lower burn_in or raise epochs"
                )
        if self.keep is None:
            p["keep"] = min(DEFAULT_KEEP, E - p["burn_in"])
        else:
            p["keep"] = check_number(self.keep, "keep", low=1, integer=True)
            if p["keep"] > E - p["burn_in"]:
                raise ValueError(
                    f"keep must be between 1 and epochs - burn_in = {E - p['burn_in']}, got "
                    f"keep={self.keep}; lower keep or raise epochs"
                )
        for name in ("biases", "verbose"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_random_state(self.random_state)
        # fold_in reads these; a fitted model sets them from its samples
        p["regularization"] = p["bias_regularization"] = 0.0
        return p

    def _set_fitted(self, fitted: Fitted, params: dict[str, Any] | None = None) -> None:
        super()._set_fitted(fitted, params)
        lam = fitted.extras.get("fold_in_regularization")
        if lam is not None:
            self._params = dict(self._params)
            self._params["regularization"], self._params["bias_regularization"] = (
                float(lam[0]),
                float(lam[1]),
            )

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data: Any,
        validation: Any = None,
        *,
        init: Any = None,
        callback: Callable[[FactorModel, dict[str, float]], Any] | None = None,
    ) -> BayesianMF:
        """Sample the posterior given ``data`` (anything :func:`mfkit.as_ratings` accepts).

        ``validation``: held-out ratings in the same ids; the RMSE and MAE of the running
        posterior mean on them are recorded per sweep. ``callback(model, record)`` is called
        after every sweep (returning ``False`` stops). ``init`` is not supported (the chain
        starts from small random factors) and must be None.

        A ``dask.dataframe.DataFrame`` of ``user``, ``item``, ``rating`` columns (with
        ``mfkit[dask]`` installed) is sampled on the current Dask client's workers by
        :func:`mfkit.distributed.fit`: the client makes every draw but the rows', the
        workers draw the rows shard by shard, and the samples are byte-identical to this
        fit on one machine (``validation`` may then be a Dask or pandas DataFrame). Call
        :func:`mfkit.distributed.fit` directly for its options; ``keep_on_cluster=True``
        is not available for BayesianMF (its priors are drawn from all current rows).
        """
        fitter = collection_fitter(data)
        if fitter is not None:  # a cluster collection (Dask): its layer's fit
            return fitter(self, data, validation, init=init, callback=callback)
        params = self._check_params()
        refuse_init(init)
        X = as_ratings(data)
        if X.nnz == 0:
            raise ValueError("data has no ratings: cannot fit an empty rating matrix")
        rng = check_random_state(self.random_state)
        val = None if validation is None else self._validation_arrays(validation, X)
        history: dict[str, list[float]] = {key: [] for key in BAYES_HISTORY_KEYS}
        trainer = self._trainer(X, history, rng, params)
        return self._run_sampler(trainer, val, params, callback)

    def _run_sampler(
        self,
        trainer: GibbsSampler,
        val: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
        params: dict[str, Any],
        callback: Callable[[FactorModel, dict[str, float]], Any] | None,
    ) -> BayesianMF:
        """The sweep loop of every fit, on one machine or a cluster (whose ``trainer``
        draws the rows on the workers): validation scores of the running posterior mean,
        callbacks, divergence and Ctrl-C. ``val``: the validation (user index, item index,
        rating) arrays or None."""
        history = trainer.history
        # while sampling, the model (as a callback sees it) holds the current sample
        self._set_fitted(trainer.current(), params)
        stop = "epochs"
        val_sum = None if val is None else np.zeros(len(val[2]))
        last_good = trainer.state.copy()
        sweep = 0
        try:
            for sweep in range(1, params["epochs"] + 1):
                t0 = time.perf_counter()
                train_rmse, ok = trainer.run_epoch(sweep)
                seconds = time.perf_counter() - t0
                if (
                    not ok
                    or not math.isfinite(train_rmse)
                    or not trainer.state.finite(params["n_threads"])
                ):
                    self._set_fitted(trainer.fitted("diverged", last_good), params)
                    raise DivergenceError(trainer.divergence_message(sweep))
                trainer.keep_if_due(sweep)
                record = {
                    "epoch": float(sweep),
                    "train_rmse": train_rmse,
                    "noise_precision": trainer.alpha,
                    "seconds": seconds,
                    "val_rmse": math.nan,
                    "val_mae": math.nan,
                }
                if val is not None and val_sum is not None:
                    pred = trainer.predict_current(val[0], val[1])
                    if trainer.kept_now:
                        val_sum += pred
                    if trainer.n_kept:
                        pred = val_sum / trainer.n_kept
                    err = pred - val[2]
                    record["val_rmse"] = float(np.sqrt(np.mean(err * err)))
                    record["val_mae"] = float(np.mean(np.abs(err)))
                for key in BAYES_HISTORY_KEYS:
                    history[key].append(record[key])
                last_good = trainer.state.copy()
                if self.verbose:
                    print_record(record)
                if callback is not None and callback(self, record) is False:
                    stop = "callback"
                    break
        except KeyboardInterrupt:
            done = len(history["epoch"])
            for key in BAYES_HISTORY_KEYS:
                del history[key][done:]
            self._set_fitted(trainer.fitted("interrupted", last_good), params)
            warnings.warn(
                f"sampling interrupted during sweep {sweep}; the model averages over the "
                f"{max(trainer.n_kept, 1)} sample(s) kept so far",
                UserWarning,
                stacklevel=3,
            )
            return self
        self._set_fitted(trainer.fitted(stop, trainer.state), params)
        return self

    def _trainer(  # type: ignore[override]
        self,
        X: Ratings,
        history: dict[str, list[float]],
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> GibbsSampler:
        v = X.values
        return GibbsSampler(
            X,
            LocalRows(X, params, get_isa()),
            biases=bool(self.biases),
            nnz=X.nnz,
            sums=(exact_sum_f32(v), exact_sum_sq_f32(v)),
            rating_range=(float(v.min()), float(v.max())),
            seen=(X.indptr, X.indices),
            history=history,
            rng=rng,
            params=params,
        )

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        users: Any,
        items: Any = None,
        *,
        unknown: str = "error",
        clip: bool = False,
        return_std: bool = False,
    ) -> Any:
        r"""The posterior predictive mean of the ratings of ``(users[j], items[j])``: the
        average over the kept samples of :math:`\mu + b_u + b_i + p_u^\top q_i` (never a
        prediction from averaged factors). ``unknown`` and ``clip`` are as in
        :meth:`FactorModel.predict <mfkit.models.FactorModel.predict>`.

        With ``return_std=True`` returns ``(mean, std)``, ``std`` the standard deviation of
        the posterior predictive distribution of a new rating,
        :math:`\sqrt{\mathrm{Var}_s[\hat r^{(s)}_{ui}] + E_s[1/\alpha^{(s)}]}`: the spread of
        the per-sample predictions plus the learned noise variance (an unknown user or
        item contributes only its known parts' spread; NaN where the mean is NaN). ``clip``
        applies to the mean only.
        """
        if is_frame(users) and items is None:
            users, items = pairs_from_frame(users)
        mean = super().predict(users, items, unknown=unknown, clip=clip)
        if not isinstance(return_std, bool | np.bool_):
            raise TypeError(f"return_std must be True or False, got {return_std!r}")
        if not return_std:
            return mean
        u_arr = np.atleast_1d(np.asarray(users))
        i_arr = np.atleast_1d(np.asarray(items))
        u = self._fitted.user_map.lookup(u_arr, "users")
        i = self._fitted.item_map.lookup(i_arr, "items")
        std = self._predict_std(u, i)
        std[np.isnan(np.atleast_1d(mean))] = np.nan
        if np.ndim(users) == 0 and np.ndim(items) == 0:
            return mean, std[0]
        return mean, std

    def _predict_std(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        state = self._fitted.state
        S = int(self.n_samples_)
        k = state.P.shape[1] // S
        P = state.P.reshape(state.P.shape[0], S, k)
        Q = state.Q.reshape(state.Q.shape[0], S, k)
        noise = float(np.mean(1.0 / np.asarray(self.noise_precision_samples_)))
        out = np.empty(len(u), dtype=np.float64)
        bus = np.asarray(self.user_bias_samples_, dtype=np.float64)
        bis = np.asarray(self.item_bias_samples_, dtype=np.float64)
        for a in range(0, len(u), _STD_BLOCK):
            uu, ii = u[a : a + _STD_BLOCK], i[a : a + _STD_BLOCK]
            f = np.zeros((len(uu), S))
            both = (uu >= 0) & (ii >= 0)
            pu = P[uu[both]].astype(np.float64) * S  # undo the 1/S the user side carries
            f[both] = np.einsum("msk,msk->ms", pu, Q[ii[both]].astype(np.float64))
            if self.biases:
                f[uu >= 0] += bus[:, uu[uu >= 0]].T
                f[ii >= 0] += bis[:, ii[ii >= 0]].T
            out[a : a + _STD_BLOCK] = np.sqrt(f.var(axis=1) + noise)
        return out


__all__ = [
    "BAYES_HISTORY_KEYS",
    "BETA0",
    "DEFAULT_KEEP",
    "INIT_STD",
    "NOISE_RATE0",
    "NOISE_SHAPE0",
    "BayesianMF",
    "GibbsSampler",
    "LocalRows",
    "RowDraws",
    "normal_wishart_posterior",
    "refuse_init",
    "sample_hyper",
    "sample_noise_precision",
    "sample_rows",
    "sample_wishart",
]
