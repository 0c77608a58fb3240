"""The Gibbs sampler of :class:`mfkit.BayesianMF`: the conditional draws (the
Normal-Wishart hyperparameters, the noise precision, every row of one side) and one run
(:class:`GibbsSampler`), whose row draws are made on one machine (:class:`LocalRows`) or on a
cluster's shards, with the same bits."""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from mfkit._core.exact import exact_mean, exact_residual_sq
from mfkit._core.isa import isa_level
from mfkit.data import Ratings
from mfkit.models import _als, _bayes
from mfkit.models._als import RowScratch
from mfkit.models._state import FactorState, Fitted
from mfkit.models._training import RatingShape

#: hyperprior constants (Salakhutdinov and Mnih 2008): mu0 = 0, beta0, W0 = I, nu0 = K
BETA0 = 2.0
#: Gamma(shape, rate) prior on the noise precision
NOISE_SHAPE0 = 1.0
NOISE_RATE0 = 1.0
#: standard deviation of the random starting factors
INIT_STD = 0.1


# --------------------------------------------------------------------------- hyperparameters
def sample_wishart(W: np.ndarray, nu: float, rng: np.random.Generator) -> np.ndarray:
    """One draw of a Wishart(W, nu) matrix (mean ``nu W``) by Bartlett's decomposition:
    ``L A A^T L^T`` with ``W = L L^T``, ``A`` lower triangular, ``A_ii^2 ~ chi^2(nu - i)``
    and ``A_ij ~ N(0, 1)`` below the diagonal (float64)."""
    W = np.asarray(W, dtype=np.float64)
    K = W.shape[0]
    if W.shape != (K, K):
        raise ValueError(f"W must be a square matrix, got shape {W.shape}")
    if not nu > K - 1:
        raise ValueError(f"nu must be > K - 1 = {K - 1}, got {nu}")
    L = np.linalg.cholesky(W)
    A = np.zeros((K, K))
    A[np.diag_indices(K)] = np.sqrt(rng.chisquare(nu - np.arange(K)))
    rows, cols = np.tril_indices(K, -1)
    A[rows, cols] = rng.standard_normal(len(rows))
    LA = L @ A
    return LA @ LA.T


def normal_wishart_posterior(
    X: np.ndarray, beta0: float = BETA0
) -> tuple[np.ndarray, float, np.ndarray, float]:
    """Posterior ``(mu*, beta*, W*, nu*)`` of a Normal-Wishart prior (mu0 = 0, ``beta0``,
    W0 = I, nu0 = K) given the rows of ``X`` (n x K) as draws of N(mu, Lam^-1):

    ``beta* = beta0 + n``, ``nu* = K + n``, ``mu* = n xbar / (beta0 + n)``,
    ``W*^-1 = I + n S + beta0 n / (beta0 + n) xbar xbar^T`` with ``S`` the (biased) sample
    covariance."""
    X = np.asarray(X, dtype=np.float64)
    n, K = X.shape
    xbar = X.mean(axis=0) if n else np.zeros(K)
    D = X - xbar
    # einsum rather than D.T @ D: a tall-thin product that threaded BLAS runs slowly beside
    # the sampler's own threads, and whose bits would depend on the BLAS thread count
    Winv = (
        np.eye(K) + np.einsum("ij,ik->jk", D, D) + (beta0 * n / (beta0 + n)) * np.outer(xbar, xbar)
    )
    W = np.linalg.inv(Winv)
    W = (W + W.T) / 2
    return n * xbar / (beta0 + n), beta0 + n, W, float(K + n)


def sample_hyper(
    X: np.ndarray, rng: np.random.Generator, beta0: float = BETA0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``(mu, Lam)`` from the Normal-Wishart posterior given rows ``X``:
    ``Lam ~ Wishart(W*, nu*)``, then ``mu ~ N(mu*, (beta* Lam)^-1)`` (float64)."""
    mu_s, beta_s, W, nu = normal_wishart_posterior(X, beta0)
    Lam = sample_wishart(W, nu, rng)
    U = np.linalg.cholesky(beta_s * Lam)  # (beta Lam) = U U^T; U^-T z has covariance (beta Lam)^-1
    z = rng.standard_normal(len(mu_s))
    mu = mu_s + np.linalg.solve(U.T, z)
    return mu, Lam


def sample_noise_precision(
    sse: float,
    n: int,
    rng: np.random.Generator,
    shape0: float = NOISE_SHAPE0,
    rate0: float = NOISE_RATE0,
) -> float:
    """Draw the noise precision from its Gamma conditional
    ``Gamma(shape0 + n / 2, rate0 + sse / 2)`` (shape, rate)."""
    return float(rng.gamma(shape0 + n / 2.0, 1.0 / (rate0 + sse / 2.0)))


# --------------------------------------------------------------------------- rows
def sample_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    Y: np.ndarray,
    X: np.ndarray,
    *,
    ybias: np.ndarray | None = None,
    xbias: np.ndarray | None = None,
    mu: float = 0.0,
    prior_mean: np.ndarray,
    prior_precision: np.ndarray,
    noise_precision: float,
    seed: int,
    sweep: int,
    side: int,
    row_sse: np.ndarray | None = None,
    n_threads: int = 1,
    isa: str | None = None,
    scratch: RowScratch | None = None,
    row_offset: int = 0,
) -> None:
    r"""Draw every row of ``X`` (and ``xbias``) from its Gaussian conditional given ``Y``.

    Row u (the augmented row :math:`x_u = [p_u, b_u]` against :math:`a_j = [y_j, 1]` with
    biases, :math:`x_u = p_u` against :math:`a_j = y_j` without) with ratings
    :math:`r_{uj}` in CSR form (as for :func:`mfkit.models.als.half_step`) gets

    .. math:: x_u = A^{-1} b + U^{-1} z, \quad A = \alpha \sum_j a_j a_j^\top + \Lambda
              = U^\top U, \quad b = \alpha \sum_j a_j t_{uj} + \Lambda m

    with :math:`t_{uj} = r_{uj} - \mu - b_j` (``r_uj`` without biases), :math:`\alpha`
    ``noise_precision``, :math:`m, \Lambda` the prior mean and precision (K = k + 1 with
    biases, the bias last) and :math:`z` the standard normals
    ``mfkit.models._bayes.normal_draws(seed, sweep, side, u, K)``. A row without ratings is
    set to zero. ``row_sse`` (float64, one per row) receives each row's sum of squared
    residuals under the new draw. ``isa``: the kernel path (None: :func:`mfkit.get_isa`;
    paths as for :func:`mfkit.models.als.half_step`); ``scratch``: a reusable
    :class:`~mfkit.models.als.RowScratch`. ``row_offset``: when the rows are a shard, the
    global index of its first row (the rows ``u`` draw the normals of ``row_offset + u``, so
    a shard's rows equal the same rows of a whole-side call; errors name the global row).
    """
    for name, arr, want in (
        ("indptr", indptr, np.int64),
        ("indices", indices, np.int32),
        ("values", values, np.float32),
    ):
        if not isinstance(arr, np.ndarray) or arr.dtype != want or arr.ndim != 1:
            raise TypeError(
                f"{name} must be a 1-d {np.dtype(want)} array like mfkit.Ratings.{name}; pass "
                f"numpy.ascontiguousarray({name}, dtype=numpy.{np.dtype(want)})"
            )
    dtype = X.dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"X must be float32 or float64, got dtype {dtype}")
    for name, a in (("Y", Y), ("ybias", ybias), ("xbias", xbias)):
        if a is not None and a.dtype != dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but X has {dtype}: use one dtype")
    if (ybias is None) != (xbias is None):
        raise ValueError("pass both ybias and xbias (with biases) or neither (without)")
    K = X.shape[1] + (0 if ybias is None else 1)
    Lam = np.ascontiguousarray(prior_precision, dtype=np.float64)
    m = np.ascontiguousarray(prior_mean, dtype=np.float64)
    if Lam.shape != (K, K) or m.shape != (K,):
        raise ValueError(f"prior_precision must be {K} x {K} and prior_mean of length {K}")
    empty = np.empty(0, dtype=dtype)
    first, code = _bayes.sample_half(
        indptr,
        indices,
        values,
        Y,
        empty if ybias is None else ybias,
        X,
        empty if xbias is None else xbias,
        Lam.astype(dtype),
        (Lam @ m).astype(dtype),
        float(noise_precision),
        float(mu),
        int(seed),
        int(sweep),
        int(side),
        np.empty(0, dtype=np.float64) if row_sse is None else row_sse,
        int(n_threads),
        isa_level(isa),
        scratch,
        int(row_offset),
    )
    if first >= 0:
        raise np.linalg.LinAlgError(
            f"the conditional precision of row {first + int(row_offset)} is not positive "
            f"definite in {dtype}; use dtype='float64'"
        )


def refuse_init(init: Any) -> None:
    """``init`` must be None: the sampler starts from small random factors."""
    if init is not None:
        raise ValueError(
            "BayesianMF does not take init: the sampler starts from small random "
            "factors and forgets its start during burn_in"
        )


class RowDraws(Protocol):
    """Where a Gibbs run draws one side's rows given the other (:func:`sample_rows` on
    the whole side's ratings, or shard by shard on a cluster, with the same bits)."""

    isa: str

    def sample(
        self,
        side: int,
        Y: np.ndarray,
        X: np.ndarray,
        ybias: np.ndarray | None,
        xbias: np.ndarray | None,
        draw: dict[str, Any],
        row_sse: np.ndarray | None,
    ) -> None:
        """Draw every row of ``X`` (``xbias``) of ``side`` (0 users, 1 items) in place;
        ``draw``: the keyword arguments ``mu``, ``prior_mean``, ``prior_precision``,
        ``noise_precision``, ``seed``, ``sweep`` of :func:`sample_rows`. Raises
        ``numpy.linalg.LinAlgError`` naming the first row whose precision is not positive
        definite."""
        ...


class LocalRows:
    """The row draws of a fit on one machine: the ratings by user (CSR) and by item (CSC)
    and the kernel's scratch, reused every half-sweep."""

    def __init__(self, X: Ratings, params: dict[str, Any], isa: str) -> None:
        indptr_c, users_c, values_c = X.csc_arrays()
        self.sides = ((X.indptr, X.indices, X.values), (indptr_c, users_c, values_c))
        self.n_threads = int(params["n_threads"])
        self.isa = isa
        rows = max(_als.max_row_length(X.indptr), _als.max_row_length(indptr_c))
        itemsize = params["dtype"].itemsize
        self.scratch = RowScratch(params["factors"], rows, itemsize, self.n_threads)

    def sample(
        self,
        side: int,
        Y: np.ndarray,
        X: np.ndarray,
        ybias: np.ndarray | None,
        xbias: np.ndarray | None,
        draw: dict[str, Any],
        row_sse: np.ndarray | None,
    ) -> None:
        sample_rows(
            *self.sides[side],
            Y,
            X,
            ybias=ybias,
            xbias=xbias,
            side=side,
            row_sse=row_sse,
            n_threads=self.n_threads,
            isa=self.isa,
            scratch=self.scratch,
            **draw,
        )


class GibbsSampler:
    """One Gibbs run: the current sample (``state``), the kept samples (written into the
    arrays the fitted model will hold) and every random draw but the rows', which
    ``rows`` makes (on this machine or on a cluster's workers)."""

    def __init__(
        self,
        X: RatingShape,
        rows: RowDraws,
        *,
        biases: bool,
        nnz: int,
        sums: tuple[int, int],
        rating_range: tuple[float, float],
        seen: tuple[np.ndarray, np.ndarray] | None,
        history: dict[str, list[float]],
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> None:
        """``X``: the shape, id maps and per-row counts of the ratings; ``sums``: their
        exact sum and sum of squares (:func:`mfkit._core.exact.exact_sum_f32`,
        :func:`~mfkit._core.exact.exact_sum_sq_f32`), from which the global mean and the
        starting noise precision are rounded once, so a cluster that sums them by shard
        starts from the same bits."""
        self.history = history
        self.params = params
        self.rng = rng
        self.rows = rows
        self.biases = biases
        k, dtype = params["factors"], params["dtype"]
        self.k, self.dtype = k, dtype
        n_users, n_items = X.shape
        self.nnz = nnz
        self.global_mean = exact_mean(sums[0], nnz) if self.biases else 0.0
        self.rating_range = rating_range
        self.user_map, self.item_map = X.user_map, X.item_map
        self.seen = seen
        self.rated_users = X.user_counts() > 0
        self.rated_items = X.item_counts() > 0
        P = rng.standard_normal((n_users, k), dtype=dtype) * dtype.type(INIT_STD)
        Q = rng.standard_normal((n_items, k), dtype=dtype) * dtype.type(INIT_STD)
        P[~self.rated_users] = 0
        Q[~self.rated_items] = 0
        self.state = FactorState(
            P, Q, np.zeros(n_users, dtype=dtype), np.zeros(n_items, dtype=dtype)
        )
        self.seed = int(rng.integers(0, 2**63))
        # start the noise precision at 1 / (mean squared residual of the baseline mu)
        sq = exact_residual_sq(sums[0], sums[1], nnz, self.global_mean)
        self.alpha = 1.0 / max(sq / nnz, 1e-12)
        self.item_sse = np.zeros(n_items, dtype=np.float64)
        self.isa = rows.isa
        E, B, S = params["epochs"], params["burn_in"], params["keep"]
        self.kept_sweeps = {E - (j * (E - B)) // S for j in range(S)}
        self.S = S
        self.Pc = np.zeros((n_users, S * k), dtype=dtype)
        self.Qc = np.zeros((n_items, S * k), dtype=dtype)
        self.bu_s = np.zeros((S, n_users), dtype=dtype)
        self.bi_s = np.zeros((S, n_items), dtype=dtype)
        self.alpha_s = np.zeros(S, dtype=np.float64)
        self.lam_s = np.zeros((S, 2), dtype=np.float64)
        self.n_kept = 0
        self.kept_now = False
        self.lam_u = np.eye(k + 1)
        self.failure: str | None = None

    def _rows(self, users: bool) -> np.ndarray:
        st = self.state
        if users:
            X, b, rated = st.P, st.bu, self.rated_users
        else:
            X, b, rated = st.Q, st.bi, self.rated_items
        R = X[rated].astype(np.float64)
        if self.biases:
            R = np.column_stack([R, b[rated].astype(np.float64)])
        return R

    def _half(self, users: bool, sweep: int) -> tuple[np.ndarray, bool]:
        m, Lam = sample_hyper(self._rows(users), self.rng)
        st = self.state
        if users:
            Y, X, ybias, xbias = st.Q, st.P, st.bi, st.bu
        else:
            Y, X, ybias, xbias = st.P, st.Q, st.bu, st.bi
        draw = {
            "mu": self.global_mean,
            "prior_mean": m,
            "prior_precision": Lam,
            "noise_precision": self.alpha,
            "seed": self.seed,
            "sweep": sweep,
        }
        try:
            self.rows.sample(
                0 if users else 1,
                Y,
                X,
                ybias if self.biases else None,
                xbias if self.biases else None,
                draw,
                None if users else self.item_sse,
            )
        except np.linalg.LinAlgError as exc:
            self.failure = f"{'user' if users else 'item'} half-sweep: {exc}"
            return Lam, False
        return Lam, True

    def run_epoch(self, sweep: int) -> tuple[float, bool]:
        """One sweep; returns (RMSE of the new sample on the training ratings, success)."""
        self.kept_now = False
        self.lam_u, ok = self._half(True, sweep)
        if not ok or not self._half(False, sweep)[1]:
            return math.nan, False
        sse = float(np.sum(self.item_sse))  # fixed-order sum: the same bits for any n_threads
        if not math.isfinite(sse):
            self.failure = "a residual became NaN or inf"
            return math.nan, False
        self.alpha = sample_noise_precision(sse, self.nnz, self.rng)
        return math.sqrt(sse / self.nnz), True

    def keep_if_due(self, sweep: int) -> None:
        if sweep in self.kept_sweeps:
            self._keep(self.state, self.lam_u)

    def _keep(self, state: FactorState, lam_u: np.ndarray) -> None:
        j, k = self.n_kept, self.k
        self.Pc[:, j * k : (j + 1) * k] = state.P
        self.Qc[:, j * k : (j + 1) * k] = state.Q
        self.bu_s[j] = state.bu
        self.bi_s[j] = state.bi
        self.alpha_s[j] = self.alpha
        lam_b = lam_u[k, k] / self.alpha if self.biases else 0.0
        self.lam_s[j] = (np.trace(lam_u[:k, :k]) / (k * self.alpha), lam_b)
        self.n_kept += 1
        self.kept_now = True

    def predict_current(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Predictions of the current sample for index pairs (unknown: -1, baseline)."""
        out = np.full(len(u), self.global_mean)
        ku, ki = u >= 0, i >= 0
        st = self.state
        if self.biases:
            out[ku] += st.bu[u[ku]]
            out[ki] += st.bi[i[ki]]
        both = ku & ki
        out[both] += np.einsum(
            "mk,mk->m", st.P[u[both]].astype(np.float64), st.Q[i[both]].astype(np.float64)
        )
        return out

    def divergence_message(self, sweep: int) -> str:
        return (
            f"BayesianMF diverged in epoch {sweep} (Gibbs sweep {sweep}): "
            f"{self.failure or 'a factor or residual became NaN or inf'}. The model keeps "
            f"the samples kept before it (or the state of sweep {sweep - 1} if none was)."
        )

    def _fitted(self, state: FactorState, extras: dict[str, Any], reason: str) -> Fitted:
        return Fitted(
            state=state,
            user_map=self.user_map,
            item_map=self.item_map,
            seen=self.seen,
            global_mean=self.global_mean,
            rating_range=self.rating_range,
            history=self.history,
            stop_reason=reason,
            extras=extras,
        )

    def current(self) -> Fitted:
        """The current sample as a one-sample model (views, no copies)."""
        st = self.state
        return self._fitted(
            st,
            {
                "user_bias_samples": st.bu[None, :],
                "item_bias_samples": st.bi[None, :],
                "noise_precision_samples": np.array([self.alpha]),
                "noise_precision": self.alpha,
                "n_samples": 1,
                "burn_in": int(self.params["burn_in"]),
                "fold_in_regularization": [0.0, 0.0],
                "isa": self.isa,
            },
            "epochs",
        )

    def fitted(self, reason: str, fallback: FactorState) -> Fitted:
        """The fitted state from the samples kept so far (``fallback`` if none was)."""
        if self.n_kept == 0:
            self._keep(fallback, np.eye(self.k + 1) * self.alpha)
        n, k, dtype = self.n_kept, self.k, self.dtype
        if n < self.S:
            Pc, Qc = self.Pc[:, : n * k].copy(), self.Qc[:, : n * k].copy()
        else:
            Pc, Qc = self.Pc, self.Qc
        if n > 1:
            Pc *= dtype.type(1.0 / n)
        bu_s, bi_s, alpha_s = self.bu_s[:n].copy(), self.bi_s[:n].copy(), self.alpha_s[:n]
        bu = np.mean(bu_s, axis=0, dtype=np.float64).astype(dtype)
        bi = np.mean(bi_s, axis=0, dtype=np.float64).astype(dtype)
        lam = self.lam_s[:n].mean(axis=0)
        extras = {
            "user_bias_samples": bu_s,
            "item_bias_samples": bi_s,
            "noise_precision_samples": alpha_s.copy(),
            "noise_precision": float(np.mean(alpha_s)),
            "n_samples": n,
            "burn_in": int(self.params["burn_in"]),
            "fold_in_regularization": [float(n * lam[0]), float(lam[1])],
            "isa": self.isa,
        }
        return self._fitted(FactorState(Pc, Qc, bu, bi), extras, reason)


__all__ = [
    "BETA0",
    "INIT_STD",
    "NOISE_RATE0",
    "NOISE_SHAPE0",
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
