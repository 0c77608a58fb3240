"""Matrix factorization for implicit feedback (Hu, Koren and Volinsky 2008) by alternating
least squares, with a conjugate-gradient or an exact row solver."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mfkit._core.isa import get_isa, isa_level
from mfkit._core.validation import SeedLike, check_choice, check_number
from mfkit.data import Ratings
from mfkit.models import _als, _implicit
from mfkit.models._als import RowScratch
from mfkit.models._base import FactorModel, Trainer
from mfkit.models._preference import (
    DEFAULT_VALIDATION_METRICS,
    PreferenceModel,
    check_confidences,
)
from mfkit.models._state import Fitted
from mfkit.recommend import FoldedUsers, fold_in_rows

SOLVERS = ("cg", "cholesky")
_SOLVER_CODE = {"cholesky": 0, "cg": 1}


def gramian(Y: np.ndarray, n_threads: int = 1, *, isa: str | None = None) -> np.ndarray:
    """``Y^T Y`` (k x k) as the half-step kernel forms it: summed over fixed blocks of rows
    in block order, so the same bits for any ``n_threads``, on the kernel path ``isa``
    (None: :func:`mfkit.get_isa`)."""
    k = Y.shape[1]
    ld = _implicit.ld_of(k)
    G = np.zeros((ld, ld), dtype=Y.dtype)
    _implicit.gramian(np.ascontiguousarray(Y), G, int(n_threads), isa_level(isa))
    return G[:k, :k].copy()


def half_step(
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    Y: np.ndarray,
    X: np.ndarray,
    *,
    alpha: float,
    regularization: float,
    solver: str = "cg",
    cg_steps: int = 3,
    row_loss: np.ndarray | None = None,
    n_threads: int = 1,
    isa: str | None = None,
) -> None:
    r"""Solve the rows of ``X`` with the opposite side ``Y`` held fixed (one implicit ALS
    half-step), in place.

    Row ``u`` observed the rows ``indices[indptr[u]:indptr[u + 1]]`` of ``Y`` with values
    ``v`` (float32, > 0); it gets the minimiser (``'cholesky'``) or ``cg_steps``
    conjugate-gradient steps from its current value towards the minimiser (``'cg'``) of

    .. math:: \sum_i c_{ui} (p_{ui} - y_i^\top x_u)^2 + \lambda \|x_u\|^2,
              \quad c_{ui} = 1 + \alpha v_{ui},\ p_{ui} = 1 \text{ if observed, else }
              c_{ui} = 1,\ p_{ui} = 0,

    summed over all rows i of ``Y``. ``row_loss``, if given (float64, one per row),
    receives each row's value of that sum with its new :math:`x_u`. A row without
    observations becomes zero. ``isa``: the kernel path (None: :func:`mfkit.get_isa`; see
    :func:`mfkit.models.als.half_step` for which paths agree).
    """
    code = _SOLVER_CODE[check_choice(solver, "solver", SOLVERS)]
    cg_steps = int(check_number(cg_steps, "cg_steps", low=1, integer=True))
    dtype = X.dtype
    if dtype not in (np.float32, np.float64) or Y.dtype != dtype:
        raise TypeError(
            f"X and Y must share one dtype, float32 or float64; got {X.dtype}, {Y.dtype}"
        )
    k = X.shape[1]
    ld = _implicit.ld_of(k)
    G = np.zeros((ld, ld), dtype=dtype)
    level = isa_level(isa)
    _implicit.gramian(Y, G, int(n_threads), level)
    loss = row_loss if row_loss is not None else np.empty(0, dtype=np.float64)
    first, _code = _implicit.half_step(
        code,
        indptr,
        indices,
        values,
        Y,
        X,
        G,
        float(alpha),
        float(regularization),
        cg_steps,
        loss,
        int(n_threads),
        level,
    )
    if first >= 0:
        raise np.linalg.LinAlgError(
            f"the normal equations of row {first} are not positive definite in {dtype}; "
            f"raise regularization (now {regularization:g}) or use float64"
        )


class ImplicitALS(PreferenceModel):
    r"""Weighted matrix factorization for implicit feedback (Hu, Koren and Volinsky,
    "Collaborative filtering for implicit feedback datasets", ICDM 2008), trained by
    alternating least squares, parallel over rows and deterministic at any thread count.

    Every user-item cell is a target. A cell the data holds, with value :math:`v_{ui} > 0`
    (a count, a play time, or 1 per interaction), has preference :math:`p_{ui} = 1` and
    confidence :math:`c_{ui} = 1 + \alpha v_{ui}`; every other cell has :math:`p_{ui} = 0`
    and :math:`c_{ui} = 1`. The model :math:`\hat p_{ui} = x_u^\top y_i` minimises

    .. math:: \sum_{u, i} c_{ui} (p_{ui} - x_u^\top y_i)^2
              + \lambda \Big(\sum_u \|x_u\|^2 + \sum_i \|y_i\|^2\Big).

    Each epoch solves every user row with the items fixed, then every item row with the
    users fixed. A row's normal equations are :math:`(Y^\top Y + \lambda I + \sum_{i \in
    I_u} (c_{ui} - 1) y_i y_i^\top) x_u = \sum_{i \in I_u} c_{ui} y_i`: the Gramian
    :math:`Y^\top Y` is formed once per half-step (in parallel, summed in a fixed order)
    and each row adds only its observed items, so a half-step costs
    :math:`O(\mathrm{nnz}\, k^2 + n k^3)` with ``solver='cholesky'`` and
    :math:`O(\mathrm{nnz}\, k\, s + n k^2 s)` with ``solver='cg'`` and ``cg_steps`` = s
    (conjugate gradient warm-started from the current row: Takacs, Pilaszy and Tikk,
    RecSys 2011). With the exact solver each half-step minimises the objective over its
    side, so ``history_['train_loss']`` never increases.

    ``predict`` and ``recommend`` return the preference scores :math:`x_u^\top y_i`, not
    ratings (``predicts_ratings`` is False): judge the model with ranking metrics.

    **The same objective in implicit.** The ``implicit`` package's
    ``AlternatingLeastSquares(factors, regularization, alpha)`` uses the confidence
    :math:`c_{ui} = \alpha_{\mathrm{implicit}} \cdot m_{ui}` of the matrix entries
    :math:`m_{ui}` it is given (1 on cells it is not given) and the same unweighted
    :math:`\lambda`. So ``ImplicitALS(regularization=r, alpha=a)`` fitted on values
    :math:`v` minimises the same objective as ``AlternatingLeastSquares(regularization=r,
    alpha=1.0)`` fitted on the matrix with entries :math:`1 + a v` (equivalently, with
    ``alpha=s`` on entries :math:`(1 + a v) / s`). ``cg_steps`` and ``factors`` mean the
    same in both; ``epochs`` is implicit's ``iterations``.

    Parameters
    ----------
    factors : int, default 64
        Number of latent factors k (multiples of 16 use the kernels' vector width fully).
    epochs : int, default 15
        Full iterations (a user half-step then an item half-step).
    regularization : float, default 0.01
        L2 weight :math:`\lambda` on every factor row (not scaled by the row's count).
    alpha : float, default 40.0
        Confidence slope :math:`\alpha > 0` (Hu et al. found 40 good on counts).
    solver : {'cg', 'cholesky'}, default 'cg'
        Warm-started conjugate gradient, or the exact per-row normal equations.
    cg_steps : int, default 3
        Conjugate-gradient steps per row and half-step (``solver='cg'``).
    init_std : float, default 0.01
        Standard deviation of the normal initial factors.
    validation_metrics : sequence of str, default ('precision@10', 'recall@10', 'map@10',
        'ndcg@10')
        Ranking metrics (see :mod:`mfkit.metrics`) computed on ``fit(validation=...)``
        after each epoch and recorded in ``history_`` as ``'val_<metric>'``.
    monitor : str, default 'ndcg@10'
        The validation metric early stopping watches (higher is better); one of
        ``validation_metrics``.
    tol : float, default 1e-4
        Minimum improvement of ``monitor`` that resets the ``patience`` counter.
    patience : int or None, default None
        Stop after this many epochs without improvement of ``monitor`` and restore the best
        epoch's factors; None disables early stopping.
    dtype : float32 or float64, default float32
        Factor precision (the row systems are formed and solved in this precision).
    random_state : None, int or numpy.random.Generator, default None
        Seed of the initial factors. The same seed, data and parameters give bit-identical
        factors for every ``n_threads``.
    n_threads : int or None, default None
        Threads for the Gramian, the row solves, scoring and validation (None: all usable
        cores).
    verbose : bool, default False
        Print one line per epoch on stderr.

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray (n_users, k), (n_items, k)
    user_ids_, item_ids_ : original ids of the rows (None when the data had none)
    history_ : dict of lists: epoch, train_loss (the objective above with the factors at
        the end of the epoch), ``val_<metric>`` for each of ``validation_metrics`` (NaN
        without validation data), seconds
    best_epoch_ : epoch restored by early stopping (None without it)
    stop_reason_ : 'epochs', 'early_stopping', 'callback', 'interrupted' or 'diverged'
    isa_ : the kernel path the fit ran (as for :class:`ALS`: ``'avx2'`` and ``'avx512'``
        agree bit for bit, ``'baseline'`` and ``'neon'`` differ from them in the last bits;
        each is bit-identical for any ``n_threads``)

    Notes
    -----
    Input is any rating container :func:`mfkit.as_ratings` reads; its values are the
    interaction strengths :math:`v_{ui}` and must be positive. Turn explicit ratings into
    implicit feedback with :func:`mfkit.to_implicit`. A user or item without interactions
    has zero factors. ``validation`` takes held-out interactions in the same ids; each
    epoch recommends to its users (excluding their training items) and scores the lists.
    """

    _extra_attributes = ("isa",)

    def __init__(
        self,
        factors: int = 64,
        epochs: int = 15,
        regularization: float = 0.01,
        alpha: float = 40.0,
        solver: str = "cg",
        cg_steps: int = 3,
        init_std: float = 0.01,
        validation_metrics: Sequence[str] = DEFAULT_VALIDATION_METRICS,
        monitor: str = "ndcg@10",
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
        self.alpha = alpha
        self.solver = solver
        self.cg_steps = cg_steps
        self.init_std = init_std
        self.validation_metrics = validation_metrics
        self.monitor = monitor
        self.tol = tol
        self.patience = patience
        self.dtype = dtype
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    def _check_params(self) -> dict[str, Any]:
        p = self._check_common_params()
        alpha = check_number(self.alpha, "alpha")
        if not alpha > 0:
            raise ValueError(
                f"alpha must be > 0 (the confidence of an interaction is 1 + alpha * value), "
                f"got {alpha!r}; try alpha=40"
            )
        p["alpha"] = float(alpha)
        if not isinstance(self.solver, str):
            raise TypeError(f"solver must be 'cg' or 'cholesky', got {self.solver!r}")
        p["solver"] = check_choice(self.solver, "solver", SOLVERS)
        p["cg_steps"] = check_number(self.cg_steps, "cg_steps", low=1, integer=True)
        return self._check_ranking_params(p)

    def fit(
        self,
        data: Any,
        validation: Any = None,
        *,
        init: Any = None,
        callback: Callable[[FactorModel, dict[str, float]], Any] | None = None,
    ) -> ImplicitALS:
        """Fit the model to implicit feedback ``data`` (anything :func:`mfkit.as_ratings`
        accepts; values are interaction strengths > 0).

        ``validation``: held-out interactions in the same ids, scored with
        ``validation_metrics`` after each epoch (``history_``) and watched by early
        stopping (``monitor``, ``patience``). ``init``: starting ``(P0, Q0)`` factors or a
        fitted model. ``callback(model, record)`` runs after every epoch; returning
        ``False`` stops training. See :meth:`FactorModel.fit` for interruption and
        divergence."""
        super().fit(data, validation, init=init, callback=callback)
        return self

    def _trainer(
        self,
        X: Ratings,
        fitted: Fitted,
        prior: tuple[np.ndarray, np.ndarray] | None,
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> ImplicitALSTrainer:
        check_confidences(X.values)
        return ImplicitALSTrainer(X, fitted, params)

    def fold_in(
        self, data: Any, *, weighted: bool | None = None, unknown_items: str = "error"
    ) -> FoldedUsers:
        r"""Factors of users not seen in training (for example a visitor's recent clicks),
        without refitting: each new user's row is the exact minimiser of the model's
        objective with the item factors held fixed (the Cholesky user half-step),

        .. math:: \Big(Q^\top Q + \lambda I + \sum_{i \in I_u} (c_{ui} - 1) q_i q_i^\top
                  \Big) x_u = \sum_{i \in I_u} c_{ui} q_i, \quad c_{ui} = 1 + \alpha v_{ui}.

        ``data``: the new users' interactions (values > 0); item ids are mapped to the
        model's items (a container without item ids is read as item indices).
        ``unknown_items``: 'error' (default) or 'ignore' (drop interactions with items the
        model does not know). ``weighted`` does not apply (leave it None). Returns
        :class:`~mfkit.FoldedUsers` for :meth:`recommend`; a user without known
        interactions gets zero factors."""
        self._check_fitted()
        if weighted is not None:
            raise ValueError("weighted does not apply to ImplicitALS.fold_in: leave it None")
        X, indptr, indices, vals = fold_in_rows(self, data, unknown_items)
        check_confidences(vals, "the fold-in data")
        Q = self._fitted.state.Q
        P_out = np.zeros((X.n_users, Q.shape[1]), dtype=Q.dtype)
        half_step(
            indptr,
            indices,
            vals,
            Q,
            P_out,
            alpha=self._params["alpha"],
            regularization=self._params["regularization"],
            solver="cholesky",
            n_threads=self.n_threads_,
        )
        user_ids = np.asarray(X.user_map.original(np.arange(X.n_users)))
        bu = np.zeros(X.n_users, dtype=Q.dtype)
        return FoldedUsers(P_out, bu, user_ids, indptr, indices)


class ImplicitALSTrainer(Trainer):
    """One implicit ALS fit: the interactions by user (CSR) and by item (CSC), the padded
    Gramian of the fixed side, the kernel path and the per-thread scratch of every
    half-step, and the per-item objective of the last half-step."""

    name = "ImplicitALS"

    def __init__(self, X: Ratings, fitted: Fitted, params: dict[str, Any]) -> None:
        self.params, self.state = params, fitted.state
        self.csr = (X.indptr, X.indices, X.values)
        self.csc = X.csc_arrays()
        k = params["factors"]
        ld = _implicit.ld_of(k)
        self.G = np.zeros((ld, ld), dtype=params["dtype"])
        self.item_loss = np.zeros(X.n_items, dtype=np.float64)
        self.failure: str | None = None
        self.isa = get_isa()
        self.level = isa_level(self.isa)
        rows = max(_als.max_row_length(X.indptr), _als.max_row_length(self.csc[0]))
        self.scratch = RowScratch(k, rows, self.G.dtype.itemsize, int(params["n_threads"]))

    def fitted_attributes(self) -> dict[str, Any]:
        return {"isa": self.isa}

    def _half_step(self, users: bool, row_loss: np.ndarray) -> bool:
        p, state = self.params, self.state
        if users:
            (indptr, indices, values), Y, X = self.csr, state.Q, state.P
        else:
            (indptr, indices, values), Y, X = self.csc, state.P, state.Q
        _implicit.gramian(Y, self.G, p["n_threads"], self.level)
        first, _code = _implicit.half_step(
            _SOLVER_CODE[p["solver"]],
            indptr,
            indices,
            values,
            Y,
            X,
            self.G,
            p["alpha"],
            p["regularization"],
            p["cg_steps"],
            row_loss,
            p["n_threads"],
            self.level,
            self.scratch,
        )
        if first >= 0:
            self.failure = (
                f"{'user' if users else 'item'} half-step: the normal equations of row "
                f"{first} are not positive definite in {X.dtype}; raise regularization (now "
                f"{p['regularization']:g}) or use float64"
            )
            return False
        return True

    def run_epoch(self, epoch: int) -> tuple[float, bool]:
        none = np.empty(0, dtype=np.float64)
        if not self._half_step(True, none) or not self._half_step(False, self.item_loss):
            return math.nan, False
        # the item half-step's rows hold the data term and reg |y_i|^2; add reg |x_u|^2.
        # Fixed-order sums: the same bits for every thread count.
        P = self.state.P
        user_norm = float(np.einsum("ij,ij->", P, P, dtype=np.float64))
        loss = float(np.sum(self.item_loss)) + self.params["regularization"] * user_norm
        return loss, True

    def divergence_message(self, epoch: int) -> str:
        if self.failure is None:
            return super().divergence_message(epoch)
        return (
            f"ImplicitALS failed in epoch {epoch}: {self.failure}. The model keeps the "
            f"factors of epoch {epoch - 1}."
        )


__all__ = [
    "DEFAULT_VALIDATION_METRICS",
    "SOLVERS",
    "ImplicitALS",
    "ImplicitALSTrainer",
    "check_confidences",
    "gramian",
    "half_step",
]
