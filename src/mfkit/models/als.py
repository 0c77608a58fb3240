"""Biased matrix factorization trained by alternating least squares (ALS)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfkit._core.isa import get_isa, isa_level
from mfkit._core.validation import SeedLike, check_choice, check_number
from mfkit.data import Ratings
from mfkit.models import _als
from mfkit.models._als import RowScratch
from mfkit.models._base import FactorModel, Trainer
from mfkit.models._state import Fitted

SOLVERS = ("cholesky", "cg")


def half_step(
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    Y: np.ndarray,
    X: np.ndarray,
    *,
    ybias: np.ndarray | None = None,
    xbias: np.ndarray | None = None,
    mu: float = 0.0,
    regularization: float,
    bias_regularization: float | None = None,
    weighted: bool = True,
    solver: str = "cholesky",
    cg_steps: int = 3,
    prior: np.ndarray | None = None,
    prior_regularization: float = 0.0,
    row_sse: np.ndarray | None = None,
    n_threads: int = 1,
    isa: str | None = None,
    scratch: RowScratch | None = None,
) -> None:
    r"""Solve the rows of ``X`` (and ``xbias``) with the opposite side ``Y`` held fixed.

    This is one ALS half-step on a block of rows given in CSR form: row ``u`` rates the rows
    ``indices[indptr[u]:indptr[u + 1]]`` of ``Y`` with ``values`` (float32). ``indptr`` may be
    a slice of a larger matrix's row pointer (its entries index ``indices`` directly), so a
    shard of rows is solved by passing ``indptr[a:b + 1]``, ``X[a:b]`` and ``xbias[a:b]``:
    each row's result depends only on its own ratings, ``Y``, ``ybias`` and the parameters.

    Row ``u`` gets the minimiser of

    .. math:: \sum_j (r_{uj} - \mu - b_j - y_j^\top x_u - b_u)^2
              + c_u (\lambda \|x_u\|^2 + \lambda_b b_u^2 + \lambda_0 \|x_u - x^0_u\|^2)

    with :math:`c_u = n_u` (``weighted``) or 1; without biases (``ybias``/``xbias`` None)
    the bias terms and ``mu`` are dropped. ``solver='cholesky'`` solves the normal equations
    exactly; ``'cg'`` takes ``cg_steps`` conjugate-gradient steps from the current row. A row
    without ratings becomes :math:`\lambda_0 / (\lambda + \lambda_0)\, x^0_u` (zero without a
    prior) with bias 0. ``row_sse``, if given (float64, one per row), receives each row's sum
    of squared residuals after the update. Updates ``X`` and ``xbias`` in place.

    ``isa`` names the kernel path (``'baseline'``, ``'avx2'``, ``'avx512'``, ``'neon'``;
    None: the current choice of :func:`mfkit.get_isa`). Every path gives the same bits for
    any ``n_threads``; ``'avx2'`` and ``'avx512'`` (fused multiply-adds) agree with each
    other and differ from ``'baseline'`` in the last bits; ``'neon'`` (aarch64) runs the
    baseline row kernels and gives the baseline's bits. ``scratch``, a
    ``RowScratch(k, rows, itemsize, n_threads)`` covering the longest row, is reused instead
    of allocating the per-thread work space (a fit passes one to all its half-steps).

    Raises
    ------
    numpy.linalg.LinAlgError
        when a row's system is not positive definite in the factor precision (rows after it
        may have been updated).
    """
    check_choice(solver, "solver", SOLVERS)
    cg_steps = check_number(cg_steps, "cg_steps", low=1, integer=True)
    for name, arr, want in (
        ("indptr", indptr, np.dtype(np.int64)),
        ("indices", indices, np.dtype(np.int32)),
        ("values", values, np.dtype(np.float32)),
    ):
        if not isinstance(arr, np.ndarray) or arr.dtype != want or arr.ndim != 1:
            got = (
                f"dtype {arr.dtype}, shape {arr.shape}"
                if isinstance(arr, np.ndarray)
                else type(arr).__name__
            )
            raise TypeError(
                f"{name} must be a 1-d {want} array like mfkit.Ratings.{name}, got {got}; pass "
                f"numpy.ascontiguousarray({name}, dtype=numpy.{want})"
            )
        if not arr.flags.c_contiguous:
            raise ValueError(f"{name} must be contiguous: pass numpy.ascontiguousarray({name})")
    if (ybias is None) != (xbias is None):
        raise ValueError("pass both ybias and xbias (with biases) or neither (without)")
    for name, a in (("Y", Y), ("X", X), ("ybias", ybias), ("xbias", xbias), ("prior", prior)):
        if a is not None and not isinstance(a, np.ndarray):
            raise TypeError(
                f"{name} must be a numpy array (float32 or float64), got {type(a).__name__}; "
                f"pass numpy.ascontiguousarray({name}, dtype=numpy.float32)"
            )
    # shapes, index ranges and the row pointer are checked by the kernel; finiteness here
    # (a NaN rating would silently give NaN rows)
    if not np.isfinite(values).all():
        raise ValueError("values contain NaN or inf; drop those ratings first")
    dtype = X.dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"X must be float32 or float64, got dtype {dtype}")
    named = {"Y": Y, "ybias": ybias, "xbias": xbias, "prior": prior}
    for name, a in named.items():
        if a is not None and a.dtype != dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but X has {dtype}: use one dtype")
    for name, a in {"X": X, **named}.items():
        if a is not None and not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous: pass numpy.ascontiguousarray({name})")
    empty_b = np.empty(0, dtype=dtype)
    reg = float(regularization)
    reg_b = reg if bias_regularization is None else float(bias_regularization)
    X0 = prior if prior is not None else np.empty((0, X.shape[1]), dtype=dtype)
    sse = row_sse if row_sse is not None else np.empty(0, dtype=np.float64)
    args = (
        indptr,
        indices,
        values,
        Y,
        empty_b if ybias is None else ybias,
        X,
        empty_b if xbias is None else xbias,
        X0,
        float(mu),
        reg,
        reg_b,
        float(prior_regularization) if prior is not None else 0.0,
        bool(weighted),
    )
    level = isa_level(isa)
    if scratch is not None and not isinstance(scratch, RowScratch):
        raise TypeError(f"scratch must be a RowScratch or None, got {type(scratch).__name__}")
    if solver == "cholesky":
        first, code = _als.cholesky_half_step(*args, sse, int(n_threads), level, scratch)
    else:
        first, code = _als.cg_half_step(*args, int(cg_steps), sse, int(n_threads), level, scratch)
    if first >= 0:
        raise np.linalg.LinAlgError(
            f"the normal equations of row {first} are not positive definite in {dtype}; "
            f"raise regularization (now {reg:g}) or use float64"
        )


class ALS(FactorModel):
    r"""Matrix factorization by alternating least squares, with an exact (Cholesky) or
    conjugate-gradient row solver, parallel over rows and deterministic at any thread count.

    Model: :math:`\hat r_{ui} = \mu + b_u + b_i + p_u^\top q_i` (or :math:`p_u^\top q_i`
    with ``biases=False``), fitted by minimising over the observed ratings

    .. math:: \sum_{(u,i)} (r_{ui} - \hat r_{ui})^2
              + \sum_u c_u (\lambda \|p_u\|^2 + \lambda_b b_u^2 + \lambda_0 \|p_u - p^0_u\|^2)
              + \sum_i c_i (\lambda \|q_i\|^2 + \lambda_b b_i^2 + \lambda_0 \|q_i - q^0_i\|^2)

    where :math:`c_u` is the number of ratings of user u with ``weighted=True`` (the
    weighted-lambda regularisation of ALS-WR, Zhou, Wilkinson, Schreiber and Pan,
    "Large-scale parallel collaborative filtering for the Netflix Prize", AAIM 2008, also
    used by Spark MLlib) and 1 with ``weighted=False``; :math:`\mu` is the mean training
    rating, held fixed. Each epoch solves every user's row :math:`(p_u, b_u)` with the items
    fixed, then every item's row :math:`(q_i, b_i)` with the users fixed. The bias is solved
    jointly with the factors (one augmented least-squares system per row), so with the exact
    solver every half-step minimises the objective over its side and the objective never
    increases. The conjugate-gradient solver (Takacs, Pilaszy and Tikk, RecSys 2011) takes
    ``cg_steps`` steps per row from the current row instead, at a cost linear in k.

    Parameters
    ----------
    factors : int, default 64
        Number of latent factors k (multiples of 16 use the kernels' vector width fully).
    epochs : int, default 15
        Full iterations (a user half-step then an item half-step).
    regularization : float or 'auto', default 'auto'
        L2 weight :math:`\lambda` on the factors (per rating with ``weighted=True``).
        ``regularization + prior_regularization`` must be positive. ``'auto'`` chooses it
        as for :class:`SGD` (with ``weighted=False`` the grid is multiplied by the mean
        number of ratings per row); the value is in ``regularization_``. A number fixes it
        (mfkit 0.1's default was 0.05).
    bias_regularization : float or None, default None
        L2 weight :math:`\lambda_b` on the biases; None means ``regularization``.
    prior_regularization : float, default 0.0
        Weight :math:`\lambda_0` pulling the factors toward the ``init=(P0, Q0)`` given to
        ``fit``, in closed form: :math:`(Y^\top Y + c(\lambda + \lambda_0) I) x =
        Y^\top t + c \lambda_0 x^0`. Needs ``init``.
    weighted : bool, default True
        Scale each row's penalties by its rating count (ALS-WR) instead of a plain lambda.
    solver : {'cholesky', 'cg'}, default 'cholesky'
        Exact per-row normal equations, or warm-started conjugate gradient.
    cg_steps : int, default 3
        Conjugate-gradient steps per row and half-step (``solver='cg'``).
    init_std : float, default 0.1
        Standard deviation of the normal initial factors.
    biases : bool, default True
        Learn a global mean and user and item biases.
    tol : float, default 1e-4
        Minimum improvement of validation RMSE that resets the ``patience`` counter.
    patience : int or None, default None
        Stop after this many epochs without improvement of validation RMSE and restore the
        best epoch's factors; None disables early stopping.
    dtype : float32 or float64, default float32
        Factor precision (the row systems are formed and solved in this precision).
    random_state : None, int or numpy.random.Generator, default None
        Seed of the initial factors. The same seed, data and parameters give bit-identical
        factors for every ``n_threads``.
    n_threads : int or None, default None
        Threads for the row solves, prediction and scoring (None: all usable cores).
    verbose : bool, default False
        Print one line per epoch on stderr.

    Attributes
    ----------
    user_factors, item_factors : ndarray (n_users, k), (n_items, k)
    user_biases, item_biases : ndarray (n_users,), (n_items,); zeros with ``biases=False``
    global_mean : float; 0.0 with ``biases=False``
    user_ids, item_ids : original ids of the rows (None when the data had none)
    history_ : dict of lists: epoch, train_rmse (root mean squared training residual
        :math:`r_{ui} - \hat r_{ui}` with the factors at the end of the epoch, no penalty
        terms), val_rmse, val_mae (NaN without validation data), seconds
    best_epoch_ : epoch restored by early stopping (None without it)
    stop_reason_ : 'epochs', 'early_stopping', 'callback', 'interrupted' or 'diverged'
    regularization_ : the L2 weight the fit used (the choice of ``'auto'``)
    regularization_scores_ : ``[(value, held-out rmse), ...]`` tried by ``'auto'`` (None
        for a fixed value)
    isa_ : the kernel path the fit ran (``'baseline'``, ``'avx2'`` or ``'avx512'``; chosen
        by :func:`mfkit.set_isa` / ``MFKIT_ISA``, default the best the CPU offers). Factors
        are bit-identical for any ``n_threads`` on each path; ``'avx2'`` and ``'avx512'``
        agree with each other, ``'baseline'`` (no fused multiply-add) differs from them in
        the last bits and is the same on every machine; ``'neon'`` (aarch64) runs the
        baseline row kernels, so it gives the baseline's bits.

    Notes
    -----
    A user or item without training ratings gets :math:`\lambda_0/(\lambda+\lambda_0)`
    times its prior row (zero without a prior) and bias 0, so it predicts the baseline.
    """

    _extra_attributes = ("regularization", "regularization_scores", "isa")
    _auto_regularization = True

    def __init__(
        self,
        factors: int = 64,
        epochs: int = 15,
        regularization: float | str = "auto",
        bias_regularization: float | None = None,
        prior_regularization: float = 0.0,
        weighted: bool = True,
        solver: str = "cholesky",
        cg_steps: int = 3,
        init_std: float = 0.1,
        biases: bool = True,
        tol: float = 1e-4,
        patience: int | None = None,
        dtype: Any = "float32",
        random_state: SeedLike = None,
        n_threads: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.prior_regularization = prior_regularization
        self.weighted = weighted
        self.solver = solver
        self.cg_steps = cg_steps
        self.init_std = init_std
        self.biases = biases
        self.tol = tol
        self.patience = patience
        self.dtype = dtype
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    def _check_params(self) -> dict[str, Any]:
        p = self._check_common_params()
        if not isinstance(self.weighted, bool | np.bool_):
            raise TypeError(f"weighted must be True or False, got {self.weighted!r}")
        if not isinstance(self.solver, str):
            raise TypeError(f"solver must be 'cholesky' or 'cg', got {self.solver!r}")
        p["solver"] = check_choice(self.solver, "solver", SOLVERS)
        p["cg_steps"] = check_number(self.cg_steps, "cg_steps", low=1, integer=True)
        if p["regularization"] != "auto" and p["regularization"] + p["prior_regularization"] <= 0:
            raise ValueError(
                "ALS needs regularization > 0 (or prior_regularization > 0): the normal "
                "equations of a user or item with fewer ratings than factors are singular "
                "without it; try regularization=0.05"
            )
        return p

    def _regularization_scale(self, X: Ratings, params: dict[str, Any]) -> float:
        """1 with ``weighted=True`` (the penalty is per rating, as the grid); without it
        the mean number of ratings of a row, 2 nnz / (n_users + n_items)."""
        if self.weighted:
            return 1.0
        return 2.0 * X.nnz / (X.n_users + X.n_items)

    def _trainer(
        self,
        X: Ratings,
        fitted: Fitted,
        prior: tuple[np.ndarray, np.ndarray] | None,
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> ALSTrainer:
        return ALSTrainer(self, X, fitted, prior, params)


class ALSTrainer(Trainer):
    """One ALS fit: the ratings by user (CSR) and by item (CSC), the kernel path, the
    per-thread scratch every half-step reuses, the per-item squared error of the last
    half-step, and why a half-step failed."""

    name = "ALS"

    def __init__(
        self,
        model: ALS,
        X: Ratings,
        fitted: Fitted,
        prior: tuple[np.ndarray, np.ndarray] | None,
        params: dict[str, Any],
    ) -> None:
        self.params, self.state = params, fitted.state
        self.biases, self.weighted = bool(model.biases), bool(model.weighted)
        self.global_mean = fitted.global_mean
        self.prior = prior if params["prior_regularization"] > 0 else None
        indptr_c, users_c, values_c = X.csc_arrays()
        self.csr = (X.indptr, X.indices, X.values)
        self.csc = (indptr_c, users_c, values_c)
        self.nnz = X.nnz
        self.item_sse = np.zeros(X.n_items, dtype=np.float64)
        self.failure: str | None = None
        self.isa = get_isa()
        rows = max(_als.max_row_length(X.indptr), _als.max_row_length(indptr_c))
        self.scratch = RowScratch(
            int(params["factors"]), rows, fitted.state.P.dtype.itemsize, int(params["n_threads"])
        )

    def fitted_attributes(self) -> dict[str, Any]:
        return {"isa": self.isa}

    def _half_step(self, users: bool, row_sse: np.ndarray | None) -> bool:
        p = self.params
        state = self.state
        if users:
            (indptr, indices, values), Y, X = self.csr, state.Q, state.P
            ybias, xbias = state.bi, state.bu
        else:
            (indptr, indices, values), Y, X = self.csc, state.P, state.Q
            ybias, xbias = state.bu, state.bi
        prior = None if self.prior is None else self.prior[0 if users else 1]
        try:
            half_step(
                indptr,
                indices,
                values,
                Y,
                X,
                ybias=ybias if self.biases else None,
                xbias=xbias if self.biases else None,
                mu=self.global_mean,
                regularization=p["regularization"],
                bias_regularization=p["bias_regularization"],
                weighted=self.weighted,
                solver=p["solver"],
                cg_steps=p["cg_steps"],
                prior=prior,
                prior_regularization=p["prior_regularization"],
                row_sse=row_sse,
                n_threads=p["n_threads"],
                isa=self.isa,
                scratch=self.scratch,
            )
        except np.linalg.LinAlgError as exc:
            self.failure = f"{'user' if users else 'item'} half-step: {exc}"
            return False
        return True

    def run_epoch(self, epoch: int) -> tuple[float, bool]:
        if not self._half_step(True, None) or not self._half_step(False, self.item_sse):
            return math.nan, False
        # fixed-order sum over items: the same bits for every thread count
        return math.sqrt(float(np.sum(self.item_sse)) / self.nnz), True

    def divergence_message(self, epoch: int) -> str:
        if self.failure is None:
            return super().divergence_message(epoch)
        return (
            f"ALS failed in epoch {epoch}: {self.failure}. The model keeps the factors of "
            f"epoch {epoch - 1}."
        )


__all__ = ["ALS", "SOLVERS", "ALSTrainer", "RowScratch", "half_step"]
