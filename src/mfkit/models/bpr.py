"""Bayesian Personalized Ranking (Rendle et al. 2009): pairwise SGD for implicit feedback,
block-parallel with results that do not depend on the thread count."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from mfkit._core.validation import SeedLike, check_choice, check_number
from mfkit.data import Ratings
from mfkit.models import _bpr
from mfkit.models._base import FactorModel, Trainer
from mfkit.models._preference import (
    DEFAULT_VALIDATION_METRICS,
    PreferenceModel,
    check_confidences,
)
from mfkit.models._state import Fitted
from mfkit.models.sgd import MAX_BLOCKS, block_layout, epoch_schedule, resolve_blocks


def item_groups(groups: np.ndarray, B: int) -> tuple[np.ndarray, np.ndarray]:
    """``(group_ptr, group_items)``: the items of group g, ascending, are
    ``group_items[group_ptr[g]:group_ptr[g + 1]]`` (the negatives a block may draw)."""
    order = np.argsort(groups, kind="stable").astype(np.int32)
    ptr = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=B), out=ptr[1:])
    return ptr, order


class BPR(PreferenceModel):
    r"""Bayesian Personalized Ranking (Rendle, Freudenthaler, Gantner and Schmidt-Thieme,
    "BPR: Bayesian personalized ranking from implicit feedback", UAI 2009): matrix
    factorization fitted to pairwise preferences by stochastic gradient ascent, parallel
    and reproducible at any thread count.

    Each observed interaction (u, i) is a positive; a negative item j the user has not
    interacted with is drawn, and :math:`\ln \sigma(x_{uij}) - \lambda(\|p_u\|^2 +
    \|q_i\|^2 + \|q_j\|^2)` with :math:`x_{uij} = p_u^\top (q_i - q_j)` is climbed by one
    step of size ``learning_rate``. An epoch visits every interaction once.

    **Parallel epochs** (``blocks`` = B > 1) use the stratified scheme of :class:`SGD`:
    users and items are split into B groups, the interactions into B x B blocks, and the B
    blocks of a stratum (which share no user and no item) run concurrently. A negative is
    drawn uniformly from the items of its positive's item group (groups are random and
    balanced, so over the data the negatives stay uniform over items), redrawn up to 16
    times while the user has interacted with it (the sample is skipped if all 16 were). Each
    block shuffles its interactions and draws its negatives from one seeded splitmix64
    stream, so the factors depend on ``random_state`` and B, never on ``n_threads``.

    ``predict`` and ``recommend`` return the scores :math:`p_u^\top q_i`; interaction values
    are only checked to be positive (BPR uses which items were seen, not how much).

    Parameters
    ----------
    factors : int, default 64
    epochs : int, default 50
    learning_rate : float, default 0.05
    regularization : float, default 0.01
        :math:`\lambda`, applied at every step to the three rows it updates.
    blocks : int or 'auto', default 'auto'
        B as for :class:`SGD` ('auto': 1 below 500,000 interactions, else 32 or more).
    init_std : float, default 0.1
        Standard deviation of the normal initial factors.
    validation_metrics, monitor, tol, patience :
        Ranking validation and early stopping, as for :class:`ImplicitALS`.
    dtype, random_state, n_threads, verbose :
        As for :class:`SGD`.

    Attributes
    ----------
    user_factors_, item_factors_, user_ids_, item_ids_, best_epoch_, stop_reason_ :
        as for :class:`ImplicitALS`
    history_ : dict of lists: epoch, train_loss (mean :math:`-\ln \sigma(x_{uij})` of the
        epoch's samples, at the time of each step), train_accuracy (fraction with
        :math:`x_{uij} > 0`), ``val_<metric>``, seconds
    blocks_ : the B of the last fit
    """

    _extra_attributes = ("blocks",)
    _trainer_keys: ClassVar[tuple[str, ...]] = ("train_accuracy",)

    def __init__(
        self,
        factors: int = 64,
        epochs: int = 50,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        blocks: int | str = "auto",
        init_std: float = 0.1,
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
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.blocks = blocks
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
        lr = check_number(self.learning_rate, "learning_rate")
        if not lr > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}; try 0.05")
        p["learning_rate"] = float(lr)
        if isinstance(self.blocks, str):
            check_choice(self.blocks, "blocks", ("auto",))
        else:
            check_number(self.blocks, "blocks", low=1, high=MAX_BLOCKS, integer=True)
        return self._check_ranking_params(p)

    def fit(
        self,
        data: Any,
        validation: Any = None,
        *,
        init: Any = None,
        callback: Callable[[FactorModel, dict[str, float]], Any] | None = None,
    ) -> BPR:
        """Fit to implicit feedback ``data`` (values > 0); ``validation``, ``init`` and
        ``callback`` as for :meth:`ImplicitALS.fit`."""
        super().fit(data, validation, init=init, callback=callback)
        return self

    def _trainer(
        self,
        X: Ratings,
        fitted: Fitted,
        prior: tuple[np.ndarray, np.ndarray] | None,
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> BPRTrainer:
        check_confidences(X.values)
        return BPRTrainer(self, X, fitted, rng, params)

    def fold_in(
        self, data: Any, *, weighted: bool | None = None, unknown_items: str = "error"
    ) -> Any:
        """Not available: BPR has no closed-form user solve (refit, or use
        :class:`ImplicitALS`, whose ``fold_in`` is exact)."""
        self._check_fitted()
        raise NotImplementedError(
            "BPR has no closed-form fold-in for new users; refit with them, or use "
            "mfkit.ImplicitALS, whose fold_in solves a new user's row exactly"
        )


class BPRTrainer(Trainer):
    """One BPR fit: the interactions in B x B blocks, the items of each item group, the
    users' training items (to reject negatives) and the generator of the epoch plans."""

    name = "BPR"

    def __init__(
        self,
        model: BPR,
        X: Ratings,
        fitted: Fitted,
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> None:
        self.params, self.state, self.rng = params, fitted.state, rng
        self.B = resolve_blocks(
            model.blocks, X.nnz, X.n_users, X.n_items, params["factors"] * params["dtype"].itemsize
        )
        useed, iseed = (int(s) for s in rng.integers(2**63, size=2))
        layout = block_layout(X, self.B, useed, iseed)
        self.records, self.offsets = layout.records, layout.offsets
        self.group_ptr, self.group_items = item_groups(layout.item_groups, self.B)
        self.seen = (X.indptr, X.indices)
        self.nnz = X.nnz
        self.negatives = np.empty(0, dtype=np.int32)  # set to one per record to record them
        self.accuracy = math.nan

    def fitted_attributes(self) -> dict[str, Any]:
        return {"blocks": self.B}

    def run_epoch(self, epoch: int) -> tuple[float, bool]:
        p = self.params
        strata, seeds = epoch_schedule(int(self.rng.integers(2**63)), self.B)
        loss, correct, skipped = _bpr.bpr_block_epoch(
            self.records,
            self.offsets,
            strata,
            seeds,
            self.seen[0],
            self.seen[1],
            self.group_ptr,
            self.group_items,
            self.state.P,
            self.state.Q,
            p["learning_rate"],
            p["regularization"],
            self.negatives,
            p["n_threads"],
        )
        n = self.nnz - skipped
        self.accuracy = correct / n if n else math.nan
        return (loss / n if n else 0.0), True

    def epoch_extras(self) -> dict[str, float]:
        return {"train_accuracy": self.accuracy}


__all__ = ["BPR", "BPRTrainer", "item_groups"]
