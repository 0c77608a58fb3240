"""Biased matrix factorization trained by stochastic gradient descent."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfkit._core.isa import ISAS, isa_level
from mfkit._core.validation import SeedLike, check_choice, check_number
from mfkit.data import Ratings
from mfkit.models import _sgd, _svdpp
from mfkit.models._base import FactorModel, Trainer
from mfkit.models._blocks import (
    AUTO_BLOCKS,
    AUTO_BLOCKS_MAX,
    AUTO_BLOCKS_MIN_RATINGS,
    AUTO_GROUP_BYTES,
    GROUP_CHUNK,
    MAX_BLOCKS,
    ORDERS,
    RATING_DTYPE,
    ROWS_AUTO_BLOCKS,
    ROWS_GROUP_BYTES,
    SVDPP_AUTO_BLOCKS,
    SVDPP_AUTO_BLOCKS_MIN_RATINGS,
    SVDPP_CHUNK_COUPLING,
    SVDPP_PARALLEL_WORK,
    BlockLayout,
    RowLayout,
    balanced_groups,
    block_layout,
    epoch_schedule,
    range_groups,
    rating_records,
    resolve_blocks,
    resolve_row_blocks,
    resolve_svdpp_blocks,
    row_layout,
    svdpp_chunks,
    svdpp_threads,
)
from mfkit.models._state import Fitted, aligned_copy, aligned_rows

SCHEDULES = ("constant", "decay", "adagrad")
LOSSES = ("squared", "huber", "absolute")
#: learning_rate=None resolves to these, per schedule
DEFAULT_LEARNING_RATES = {"constant": 0.02, "decay": 0.05, "adagrad": 0.08}
_LOSS_CODES = {
    "squared": _sgd.LOSS_SQUARED,
    "huber": _sgd.LOSS_HUBER,
    "absolute": _sgd.LOSS_ABSOLUTE,
}


def decayed_learning_rate(learning_rate: float, decay: float, epoch: int) -> float:
    """Step of epoch ``epoch`` (from 1) under ``'decay'``: eta / (1 + decay (epoch-1)^1.5)."""
    return learning_rate / (1.0 + decay * (epoch - 1) ** 1.5)


class SGD(FactorModel):
    r"""Matrix factorization by stochastic gradient descent (Funk SVD, biased), serial or
    block-parallel with results that do not depend on the thread count.

    Model (Koren, Bell and Volinsky, "Matrix factorization techniques for recommender
    systems", IEEE Computer 2009):

    .. math:: \hat r_{ui} = \mu + b_u + b_i + p_u^\top q_i

    fitted by minimising, over the observed ratings,

    .. math:: \sum \ell(r_{ui} - \hat r_{ui}) + \lambda (\|p_u\|^2 + \|q_i\|^2)
              + \lambda_b (b_u^2 + b_i^2) + \lambda_0 (\|p_u - p^0_u\|^2 + \|q_i - q^0_i\|^2)

    one rating at a time: with :math:`e = r_{ui} - \hat r_{ui}`, :math:`g = \psi(e)` (the
    loss's influence function, below) and step :math:`\eta`,
    :math:`b_u \mathrel{+}= \eta (g - \lambda_b b_u)`, the same for :math:`b_i`, and
    :math:`p_u \mathrel{+}= \eta (g q_i - \lambda p_u - \lambda_0 (p_u - p^0_u))`,
    :math:`q_i \mathrel{+}= \eta (g p_u - \lambda q_i - \lambda_0 (q_i - q^0_i))` using the
    old :math:`p_u, q_i` on the right (the constant factor 2 of the squared loss is folded
    into :math:`\eta`). With ``biases=False`` the model is the plain :math:`P Q^\top` with no
    mean and no biases.

    **Losses** (``loss``): ``'squared'`` (:math:`\psi(e) = e`) fits the conditional mean;
    ``'huber'`` (:math:`\psi(e) = \max(-\delta, \min(\delta, e))`, ``huber_delta`` =
    :math:`\delta`) is quadratic for small residuals and linear for large ones, so gross
    outliers pull with bounded force; ``'absolute'`` (:math:`\psi(e) = \operatorname{sign}(e)`)
    fits the conditional median. The global mean :math:`\mu` is the training mean for every
    loss (the biases absorb the rest).

    **Learning-rate schedules** (``learning_rate_schedule``, :math:`\eta_0` =
    ``learning_rate``, epochs :math:`t = 1, 2, \ldots`):

    - ``'constant'``: :math:`\eta = \eta_0` (default :math:`\eta_0` = 0.02; the classic
      0.005 of Funk and Surprise needs 50 to 100 epochs to leave the initial plateau).
    - ``'decay'``: :math:`\eta_t = \eta_0 / (1 + \beta (t - 1)^{1.5})`, :math:`\beta` =
      ``learning_rate_decay`` (the schedule of Yun et al., NOMAD, VLDB 2014; default
      :math:`\eta_0` = 0.05).
    - ``'adagrad'``: row-wise AdaGrad as in Chin, Zhuang, Juan and Lin, "A learning-rate
      schedule for stochastic gradient methods to matrix factorization", PAKDD 2015 (the
      schedule LibMF uses). Each user and item row keeps one accumulator :math:`G`
      (starting at 1); a step on row :math:`p_u` with gradient direction
      :math:`d = g q_i - \lambda p_u - \lambda_0 (p_u - p^0_u)` is
      :math:`p_u \mathrel{+}= \eta_0 d / \sqrt{G_u}` followed by
      :math:`G_u \mathrel{+}= \|d\|^2 / k`; each bias has its own accumulator
      (:math:`G \mathrel{+}= d^2`). One accumulator per row rather than per coordinate
      costs 4 (or 8) bytes per row instead of k times that and, as the paper shows,
      converges as fast. Default :math:`\eta_0` = 0.08. This is the default schedule: it
      leaves the initial plateau in a few epochs at any data size.

    **Parallel epochs** (``blocks`` = B > 1): users and items are each split into B groups
    holding about the same number of ratings (a seeded shuffle of the rows cut by running
    rating count; fixed by the data and ``random_state``), giving B x B blocks. The ratings
    are stored block by block once per fit (12 bytes per rating). An epoch visits the B
    strata ``{(g, (g + s) mod B)}`` in a seeded order; the B blocks of a stratum share no
    user and no item, so they are processed concurrently on ``n_threads`` threads without
    locks, each block shuffled (seeded) and swept by a single thread (stratified SGD,
    Gemulla et al., KDD 2011). The factors therefore depend on the data, the parameters,
    the seed and B, never on the thread count or the timing. Trade-off of B: at most B
    threads can work at once, and with dynamic scheduling the threads stay busy when B is
    several times the thread count (the default 32 balances up to about 8 threads); more
    blocks also shrink each block's working set of factor rows (better cache use), but cost
    B synchronisations per epoch and visit the ratings in a less random order (each stratum
    covers only 1/B of every row); B = 1 is the plain shuffled serial SGD. On the
    benchmark sets the test RMSE of B = 32 stays within 0.1% of B = 1 at every epoch.
    ``'auto'`` uses B = 1 below 500,000 training ratings and B = 32 from there on (fewer
    when the matrix has fewer than 2,048 users or items: each group keeps at least 64
    rows), whatever ``n_threads`` is.

    **Visiting order** (``order``): ``'shuffle'`` is the order above, every
    rating of a block in a seeded random order, from a packed copy of the ratings (12 bytes
    per rating). ``'rows'`` walks the ratings grouped by user, straight from the training
    CSR arrays (no copy): items are split into B contiguous index ranges (balanced by rating
    count) and users into B groups as above; in each block the users come in a seeded random
    order (chunks of 16 consecutive entries of the block's ascending user list in a random
    order, each chunk's users in a random order of their own, so that the rows and run
    starts read one after the other share cache lines and pages) and each user's ratings of
    the block's item range are visited consecutively, as a seeded rotation (random start,
    random direction) of the run, so the user's row stays in the first level cache (in
    vector registers on the fast paths) for all of them and only the item rows, a range of
    about one core's L2, are reached at random. Every step uses the row the previous step
    left, exactly as the sweep over the ratings in that order would: a different visiting
    order, not an approximation. ``'auto'``
    blocks for ``'rows'``: 1 below 500,000 ratings, else 4, doubled while an item range's
    rows exceed 1 MiB (:func:`resolve_row_blocks`); the layout costs (B + 1) x 8 bytes per
    user. Every loss, schedule and prior is supported; the bits differ from
    ``'shuffle'``'s (another order), and the threads-identity holds the same way. Not with
    ``implicit_feedback=True``. ``'rows'`` is the default (``'auto'``) since mfkit 0.2: on the
    benchmark sets it is 1.2-1.4x faster per epoch than ``'shuffle'``, needs no copy of the
    ratings (peak memory of a fit about 1.25x the CSR arrays and factors, against about
    2.4x), and its held-out RMSE was never worse.

    Parameters
    ----------
    factors : int, default 100
        Number of latent factors k.
    epochs : int, default 20
        Passes over the training ratings.
    learning_rate : float or None, default None
        Base step size :math:`\eta_0`; None picks the schedule's default (see above).
    regularization : float or 'auto', default 'auto'
        L2 weight :math:`\lambda` on the factors (applied at every step of a row, so rows
        with many ratings are regularised more). ``'auto'`` chooses it from the grid
        0.0125 .. 0.8 by held-out RMSE on a seeded internal 10% split, then fits with it
        (:mod:`mfkit.models._autoreg` states the rule); the value is in
        ``regularization_``. A number fixes it (mfkit 0.1's default was 0.05).
    bias_regularization : float or None, default None
        L2 weight :math:`\lambda_b` on the biases; None means ``regularization``.
    prior_regularization : float, default 0.0
        Weight :math:`\lambda_0` pulling the factors toward the ``init=(P0, Q0)`` given to
        ``fit`` (a prior); needs ``init``.
    init_std : float, default 0.1
        Standard deviation of the normal initial factors.
    biases : bool, default True
        Learn a global mean and user and item biases.
    shuffle : bool, default True
        Visit the ratings in a new seeded random order every epoch (else in storage order:
        CSR order, or with B > 1 the blocks and strata in index order).
    tol : float, default 1e-4
        Minimum improvement of validation RMSE that resets the ``patience`` counter.
    patience : int or None, default None
        Stop after this many epochs without improvement of validation RMSE and restore the
        best epoch's factors; None disables early stopping.
    dtype : float32 or float64, default float32
        Factor precision.
    random_state : None, int or numpy.random.Generator, default None
        Seed of the initial factors, the groups and the visit order. The same seed, data and
        parameters give bit-identical factors for any ``n_threads``. A fit draws from it, in
        this order: the initial factors (unless ``init`` is given); with B > 1 two layout
        seeds (user groups, item groups) as ``integers(2**63, size=2)`` (SVD++: always
        three, user groups, item groups and user chunks, as ``integers(2**63, size=3)``);
        then, when ``shuffle``, one seed per epoch as ``integers(2**63)``.
    n_threads : int or None, default None
        Threads for the parallel epochs (B > 1), prediction and scoring (None: all usable
        cores). With B = 1 the epoch runs on one thread. On a machine shared with other
        busy processes, ``OMP_WAIT_POLICY=passive`` in the environment (set before the
        process starts) keeps threads that wait for a stratum to finish from spinning on a
        core the working thread needs.
    verbose : bool, default False
        Print one line per epoch on stderr.
    learning_rate_schedule : {'constant', 'decay', 'adagrad'}, default 'adagrad'
        How the step size evolves (see above).
    learning_rate_decay : float, default 0.05
        :math:`\beta` of the ``'decay'`` schedule.
    loss : {'squared', 'huber', 'absolute'}, default 'squared'
        Loss on the residuals (see above).
    huber_delta : float, default 1.0
        Residual size where the Huber loss turns from quadratic to linear.
    blocks : int or 'auto', default 'auto'
        Number B of user and item groups (B x B blocks) of the parallel epoch, 1..1024
        (with ``implicit_feedback=True`` see there).
    order : {'auto', 'rows', 'shuffle'}, default 'auto'
        Visiting order of the ratings in an epoch (see "Visiting order" above); ``'auto'``
        is ``'rows'`` (with ``implicit_feedback=True``, SVD++'s own block order).
    implicit_feedback : bool, default False
        Fit SVD++ (Koren, "Factorization meets the neighborhood", KDD 2008):
        :math:`\hat r_{ui} = \mu + b_u + b_i + q_i^\top (p_u + |N(u)|^{-1/2}
        \sum_{j \in N(u)} y_j)` with N(u) the items u rated in training and one more
        factor row :math:`y_j` per item, regularised by :math:`\lambda` at every rating of
        a user who rated j. Each user's error terms are accumulated over the epoch and
        applied to its :math:`y_j` as one step per user (L2 part implicit), so an epoch costs
        O(ratings k). Parallel and bit-identical for any ``n_threads``: the users are split
        into C chunks (C from the data, :func:`svdpp_chunks`); within a chunk the ratings
        run in B x B blocks as the parallel SGD epoch (``blocks``: 'auto' is 1 below 20,000
        ratings, else 4), with the implicit terms held fixed, and after the chunk every
        :math:`y_j` takes its raters' steps, in parallel over item groups (see
        :mod:`mfkit.models._svdpp`). The factors depend on the data, the parameters, the
        seed and B, never on the thread count. The threads synchronise B + 1 times per
        chunk, so the epoch uses ``n_threads`` only when that leaves them enough work
        (:func:`svdpp_threads`), else one. ``user_factors_`` holds the effective factors
        :math:`p_u + |N(u)|^{-1/2} \sum y_j`. Not with ``prior_regularization``.

    Attributes
    ----------
    user_factors, item_factors : ndarray (n_users, k), (n_items, k)
    user_biases, item_biases : ndarray (n_users,), (n_items,); zeros with ``biases=False``
    global_mean : float; 0.0 with ``biases=False``
    user_ids, item_ids : original ids of the rows (None when the data had none)
    history_ : dict of lists: epoch, train_rmse (residuals seen during the epoch),
        val_rmse, val_mae (NaN without validation data), seconds
    best_epoch_ : epoch restored by early stopping (None without it)
    stop_reason_ : 'epochs', 'early_stopping', 'callback', 'interrupted' or 'diverged'
    blocks_ : the B the last fit used
    isa_ : the kernel path the last fit's epochs ran (``'baseline'``, ``'avx2'``,
        ``'avx512'`` or, on aarch64, ``'neon'``; :func:`mfkit.get_isa` at the start of the
        fit, see :mod:`mfkit._core.isa`). ``'baseline'`` gives the same bits on every
        machine; ``'avx2'``, ``'avx512'`` and ``'neon'`` give the same bits as each other
        (fused multiply-adds, 16 partial sums), which differ from the baseline's in the
        last places. SVD++ (``implicit_feedback=True``) always runs the baseline path.
    fit_nbytes_ : bytes of the per-fit scratch of the last fit (rating records, block
        offsets, with ``order='rows'`` the run starts and user groups instead, AdaGrad
        accumulators; with SVD++ also the own user factors, the implicit
        item factors and two more user-factor-sized arrays, the implicit terms and the
        accumulated error terms), on top of the training data and the factors
    regularization_ : the L2 weight the fit used (the choice of ``'auto'``)
    regularization_scores_ : ``[(value, held-out rmse), ...]`` tried by ``'auto'`` (None
        for a fixed value)
    """

    _extra_attributes = (
        "blocks",
        "fit_nbytes",
        "isa",
        "regularization",
        "regularization_scores",
    )
    _auto_regularization = True

    def __init__(
        self,
        factors: int = 100,
        epochs: int = 20,
        learning_rate: float | None = None,
        regularization: float | str = "auto",
        bias_regularization: float | None = None,
        prior_regularization: float = 0.0,
        init_std: float = 0.1,
        biases: bool = True,
        shuffle: bool = True,
        tol: float = 1e-4,
        patience: int | None = None,
        dtype: Any = "float32",
        random_state: SeedLike = None,
        n_threads: int | None = None,
        verbose: bool = False,
        learning_rate_schedule: str = "adagrad",
        learning_rate_decay: float = 0.05,
        loss: str = "squared",
        huber_delta: float = 1.0,
        blocks: int | str = "auto",
        implicit_feedback: bool = False,
        order: str = "auto",
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.prior_regularization = prior_regularization
        self.init_std = init_std
        self.biases = biases
        self.shuffle = shuffle
        self.tol = tol
        self.patience = patience
        self.dtype = dtype
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose
        self.learning_rate_schedule = learning_rate_schedule
        self.learning_rate_decay = learning_rate_decay
        self.loss = loss
        self.huber_delta = huber_delta
        self.blocks = blocks
        self.implicit_feedback = implicit_feedback
        self.order = order

    def _check_params(self) -> dict[str, Any]:
        p = self._check_common_params()
        schedule = check_choice(self.learning_rate_schedule, "learning_rate_schedule", SCHEDULES)
        p["schedule"] = schedule
        if self.learning_rate is None:
            p["learning_rate"] = DEFAULT_LEARNING_RATES[schedule]
        else:
            p["learning_rate"] = check_number(
                self.learning_rate, "learning_rate", low=0, low_inclusive=False
            )
        p["learning_rate_decay"] = check_number(
            self.learning_rate_decay, "learning_rate_decay", low=0
        )
        p["loss"] = check_choice(self.loss, "loss", LOSSES)
        p["order"] = check_choice(self.order, "order", ORDERS)
        if p["order"] == "auto":
            p["order"] = "shuffle" if self.implicit_feedback is True else "rows"
        p["huber_delta"] = check_number(self.huber_delta, "huber_delta", low=0, low_inclusive=False)
        if isinstance(self.blocks, str):
            check_choice(self.blocks, "blocks", ("auto",))
        else:
            check_number(self.blocks, "blocks", low=1, high=MAX_BLOCKS, integer=True)
        if not isinstance(self.shuffle, bool | np.bool_):
            raise TypeError(f"shuffle must be True or False, got {self.shuffle!r}")
        if not isinstance(self.implicit_feedback, bool | np.bool_):
            raise TypeError(
                f"implicit_feedback must be True or False, got {self.implicit_feedback!r}"
            )
        if self.implicit_feedback:
            if p["order"] == "rows":
                raise ValueError(
                    "implicit_feedback=True (SVD++) visits the ratings in its own block "
                    "order; order='rows' is for plain SGD: leave order='auto'"
                )
            if p["prior_regularization"] > 0:
                raise ValueError(
                    "implicit_feedback=True (SVD++) does not support prior_regularization; "
                    "set prior_regularization=0 (init= still warm-starts the factors)"
                )
        return p

    def _trainer(
        self,
        X: Ratings,
        fitted: Fitted,
        prior: tuple[np.ndarray, np.ndarray] | None,
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> Trainer:
        if self.implicit_feedback:
            return SVDppTrainer(self, X, fitted, rng, params)
        return SGDTrainer(self, X, fitted, prior, rng, params)


class SGDTrainer(Trainer):
    """One SGD fit: the packed rating records (serial) or the block layout (parallel), the
    AdaGrad accumulators and the generator that draws each epoch's visiting order."""

    name = "SGD"

    def __init__(
        self,
        model: SGD,
        X: Ratings,
        fitted: Fitted,
        prior: tuple[np.ndarray, np.ndarray] | None,
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> None:
        p = params
        self.params, self.state, self.rng = p, fitted.state, rng
        self.biases, self.shuffle = bool(model.biases), bool(model.shuffle)
        self.global_mean = fitted.global_mean
        self.prior = prior if p["prior_regularization"] > 0 else None
        self.nnz = X.nnz
        self.isa = isa_level()
        self.X = X
        self.rows: RowLayout | None = None
        self.records: np.ndarray | None = None
        self.offsets: np.ndarray | None = None
        row_bytes = p["factors"] * p["dtype"].itemsize
        if p["order"] == "rows":
            B = resolve_row_blocks(model.blocks, X.nnz, X.n_users, X.n_items, row_bytes)
            useed = int(rng.integers(2**63)) if B > 1 else 0
            self.rows = row_layout(X, B, useed, n_threads=p["n_threads"])
        else:
            B = resolve_blocks(model.blocks, X.nnz, X.n_users, X.n_items, row_bytes)
        self.B = B
        if self.rows is not None:
            pass  # the epoch reads the CSR arrays of X themselves
        elif B == 1:
            self.records = rating_records(X, p["n_threads"])
            self.offsets = None
        else:
            useed, iseed = (int(s) for s in rng.integers(2**63, size=2))
            layout = block_layout(X, B, useed, iseed, n_threads=p["n_threads"])
            self.records = layout.records
            self.offsets = layout.offsets
        self.grad_sq: tuple[np.ndarray, ...] | None = None
        if p["schedule"] == "adagrad":
            dt = p["dtype"]
            self.grad_sq = (
                np.ones(X.n_users, dtype=dt),
                np.ones(X.n_items, dtype=dt),
                np.ones(X.n_users, dtype=dt),
                np.ones(X.n_items, dtype=dt),
            )

    def fitted_attributes(self) -> dict[str, Any]:
        nbytes = (
            (0 if self.records is None else self.records.nbytes)
            + (0 if self.offsets is None else self.offsets.nbytes)
            + (0 if self.rows is None else self.rows.nbytes)
            + (0 if self.grad_sq is None else sum(a.nbytes for a in self.grad_sq))
        )
        return {"blocks": self.B, "fit_nbytes": int(nbytes), "isa": ISAS[self.isa]}

    def run_epoch(self, epoch: int) -> tuple[float, bool]:
        p = self.params
        state = self.state
        P0, Q0 = self.prior if self.prior is not None else (None, None)
        lr = p["learning_rate"]
        if p["schedule"] == "decay":
            lr = decayed_learning_rate(lr, p["learning_rate_decay"], epoch)
        kw: dict[str, Any] = {
            "loss": _LOSS_CODES[p["loss"]],
            "delta": p["huber_delta"],
            "isa": self.isa,
        }
        if self.grad_sq is not None:
            kw["Gp"], kw["Gq"], kw["Gbu"], kw["Gbi"] = self.grad_sq
        args = (
            state.P,
            state.Q,
            state.bu,
            state.bi,
            self.global_mean,
            lr,
            p["regularization"],
            p["bias_regularization"],
            self.biases,
            P0,
            Q0,
            p["prior_regularization"],
        )
        if self.rows is not None:
            B = self.B
            if self.shuffle:
                strata, seeds = epoch_schedule(int(self.rng.integers(2**63)), B)
            else:
                strata = np.arange(B, dtype=np.int64)
                seeds = np.zeros(B * B, dtype=np.uint64)
            X, rows = self.X, self.rows
            sse, bad = _sgd.sgd_rows_epoch(
                X.indptr,
                X.indices,
                X.values,
                rows.segments,
                rows.group_users,
                rows.group_ptr,
                strata,
                seeds,
                self.shuffle,
                p["n_threads"],
                *args,
                **kw,
            )
        elif self.offsets is None:
            assert self.records is not None
            if self.shuffle:
                _sgd.shuffle_records(self.records, int(self.rng.integers(2**63)))
            sse, bad = _sgd.sgd_epoch(self.records, *args, **kw)
        else:
            B = self.B
            if self.shuffle:
                strata, seeds = epoch_schedule(int(self.rng.integers(2**63)), B)
            else:
                strata = np.arange(B, dtype=np.int64)
                seeds = np.zeros(B * B, dtype=np.uint64)
            assert self.records is not None
            sse, bad = _sgd.sgd_block_epoch(
                self.records,
                self.offsets,
                strata,
                seeds,
                self.shuffle,
                p["n_threads"],
                *args,
                **kw,
            )
        return math.sqrt(sse / self.nnz), bad < 0

    def divergence_message(self, epoch: int) -> str:
        return _divergence_message(self.params, epoch)


def _divergence_message(p: dict[str, Any], epoch: int) -> str:
    lr = p["learning_rate"]
    return (
        f"SGD diverged in epoch {epoch}: a residual or factor became NaN or inf; lower "
        f"learning_rate (now {lr:g} with the {p['schedule']!r} schedule, try "
        f"{lr / 4:g}) or raise regularization. The model keeps the factors of epoch "
        f"{epoch - 1}."
    )


class SVDppTrainer(Trainer):
    """One SVD++ fit (``implicit_feedback=True``): the ratings stored block by block (as for
    the parallel SGD epoch; one block when B = 1), the item-major copy of the rating pattern
    for the implicit pass, the users' own factors p_u, the implicit item factors y_j, the
    implicit terms z_u and the per-user error accumulators a_u (the model's
    ``user_factors_`` are the effective p_u + z_u, rewritten after every epoch), the AdaGrad
    accumulators and the generator of each epoch's plan. :mod:`mfkit.models._svdpp` gives
    the three passes of an epoch."""

    name = "SGD"

    def __init__(
        self,
        model: SGD,
        X: Ratings,
        fitted: Fitted,
        rng: np.random.Generator,
        params: dict[str, Any],
    ) -> None:
        p = params
        self.params, self.state, self.rng = p, fitted.state, rng
        self.biases, self.shuffle = bool(model.biases), bool(model.shuffle)
        self.global_mean = fitted.global_mean
        self.nnz = X.nnz
        dt = p["dtype"]
        B = resolve_svdpp_blocks(model.blocks, X.nnz, X.n_users, X.n_items)
        C = svdpp_chunks(X.user_counts(), X.n_items)
        self.B, self.C = B, C
        self.threads = svdpp_threads(p["n_threads"], X.nnz, p["factors"], C, B)
        useed, iseed, cseed = (int(s) for s in rng.integers(2**63, size=3))
        counts = X.user_counts()
        ug = balanced_groups(counts, B, useed)
        ig = balanced_groups(X.item_counts(), B, iseed)
        uc = balanced_groups(counts, C, cseed, chunk=1)
        self.records = np.empty(X.nnz, dtype=RATING_DTYPE)
        self.offsets = np.empty(C * B * B + 1, dtype=np.int64)
        self.user_indptr = np.ascontiguousarray(X.indptr, dtype=np.int64)
        self.user_items = np.ascontiguousarray(X.indices, dtype=np.int32)
        _svdpp.build_layout(
            self.user_indptr,
            self.user_items,
            X.values,
            uc,
            ug,
            ig,
            C,
            B,
            self.records,
            self.offsets,
        )
        # the users by (chunk, user group), ascending within each
        key = uc.astype(np.int64) * B + ug
        self.chunk_users = np.argsort(key, kind="stable").astype(np.int32)
        self.chunk_ptr = np.zeros(C * B + 1, dtype=np.int64)
        np.cumsum(np.bincount(key, minlength=C * B), out=self.chunk_ptr[1:])
        # the start (random, or init=) is the effective factor with y = 0: p_u = P[u]
        # (64-byte aligned, as the factors: the kernels read these rows in place)
        (nu, k), ni, dt = self.state.P.shape, self.state.Q.shape[0], self.state.P.dtype
        self.own = aligned_copy(self.state.P)
        self.implicit = aligned_rows(ni, k, dt)
        self.implicit.fill(0)
        self.z = aligned_rows(nu, k, dt)
        self.acc = aligned_rows(nu, k, dt)
        self.grad_sq: tuple[np.ndarray, ...] | None = None
        if p["schedule"] == "adagrad":
            self.grad_sq = (
                np.ones(X.n_users, dtype=dt),
                np.ones(X.n_items, dtype=dt),
                np.ones(X.n_items, dtype=dt),
                np.ones(X.n_users, dtype=dt),
                np.ones(X.n_items, dtype=dt),
            )

    def fitted_attributes(self) -> dict[str, Any]:
        nbytes = (
            self.records.nbytes
            + self.offsets.nbytes
            + self.chunk_users.nbytes
            + self.chunk_ptr.nbytes
            + self.own.nbytes
            + self.implicit.nbytes
            + self.z.nbytes
            + self.acc.nbytes
            + (0 if self.grad_sq is None else sum(a.nbytes for a in self.grad_sq))
        )
        return {"blocks": self.B, "fit_nbytes": int(nbytes), "isa": "baseline"}

    def run_epoch(self, epoch: int) -> tuple[float, bool]:
        p = self.params
        state = self.state
        nt = self.threads
        lr = p["learning_rate"]
        if p["schedule"] == "decay":
            lr = decayed_learning_rate(lr, p["learning_rate_decay"], epoch)
        kw: dict[str, Any] = {"loss": _LOSS_CODES[p["loss"]], "delta": p["huber_delta"]}
        if self.grad_sq is not None:
            kw["Gp"], kw["Gq"], kw["Gy"], kw["Gbu"], kw["Gbi"] = self.grad_sq
        B, C = self.B, self.C
        if self.shuffle:
            order, strata, seeds = _svdpp.epoch_plan(np.uint64(self.rng.integers(2**63)), C, B)
        else:
            order = np.arange(C, dtype=np.int64)
            strata = np.tile(np.arange(B, dtype=np.int64), C)
            seeds = np.zeros(C * B * B, dtype=np.uint64)
        sse, bad = _svdpp.svdpp_epoch(
            self.records,
            self.offsets,
            self.chunk_ptr,
            self.chunk_users,
            self.user_indptr,
            self.user_items,
            order,
            strata,
            seeds,
            self.shuffle,
            nt,
            self.own,
            state.Q,
            self.implicit,
            self.z,
            self.acc,
            state.bu,
            state.bi,
            self.global_mean,
            lr,
            p["regularization"],
            p["bias_regularization"],
            self.biases,
            **kw,
        )
        if bad >= 0:
            return math.sqrt(sse / self.nnz), False
        _svdpp.effective_user_factors(
            self.user_indptr, self.user_items, self.own, self.implicit, state.P, p["n_threads"]
        )
        return math.sqrt(sse / self.nnz), True

    def divergence_message(self, epoch: int) -> str:
        return _divergence_message(self.params, epoch)


__all__ = [
    "AUTO_BLOCKS",
    "AUTO_BLOCKS_MAX",
    "AUTO_BLOCKS_MIN_RATINGS",
    "AUTO_GROUP_BYTES",
    "DEFAULT_LEARNING_RATES",
    "GROUP_CHUNK",
    "LOSSES",
    "MAX_BLOCKS",
    "ORDERS",
    "RATING_DTYPE",
    "ROWS_AUTO_BLOCKS",
    "ROWS_GROUP_BYTES",
    "SCHEDULES",
    "SGD",
    "SVDPP_AUTO_BLOCKS",
    "SVDPP_AUTO_BLOCKS_MIN_RATINGS",
    "SVDPP_CHUNK_COUPLING",
    "SVDPP_PARALLEL_WORK",
    "BlockLayout",
    "RowLayout",
    "SGDTrainer",
    "SVDppTrainer",
    "balanced_groups",
    "block_layout",
    "decayed_learning_rate",
    "epoch_schedule",
    "rating_records",
    "range_groups",
    "resolve_blocks",
    "resolve_row_blocks",
    "row_layout",
    "resolve_svdpp_blocks",
    "svdpp_chunks",
    "svdpp_threads",
]
