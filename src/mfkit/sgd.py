"""Biased matrix factorization trained by stochastic gradient descent."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfkit import _sgd
from mfkit._base import FactorModel, FactorState
from mfkit._validation import SeedLike, check_number
from mfkit.ratings import Ratings

#: one rating as the SGD kernels read it: user index, item index, rating (12 bytes, packed)
RATING_DTYPE = np.dtype([("u", "<i4"), ("i", "<i4"), ("r", "<f4")])


def rating_records(X: Ratings) -> np.ndarray:
    """The ratings of ``X`` as packed records in CSR order (a new, writable array)."""
    rec = np.empty(X.nnz, dtype=RATING_DTYPE)
    rec["u"] = X.user_index()
    rec["i"] = X.indices
    rec["r"] = X.values
    return rec


class SGD(FactorModel):
    r"""Matrix factorization by stochastic gradient descent (Funk SVD, biased).

    Model (Koren, Bell and Volinsky, "Matrix factorization techniques for recommender
    systems", IEEE Computer 2009):

    .. math:: \hat r_{ui} = \mu + b_u + b_i + p_u^\top q_i

    fitted by minimising, over the observed ratings,

    .. math:: \sum (r_{ui} - \hat r_{ui})^2 + \lambda (\|p_u\|^2 + \|q_i\|^2)
              + \lambda_b (b_u^2 + b_i^2) + \lambda_0 (\|p_u - p^0_u\|^2 + \|q_i - q^0_i\|^2)

    one rating at a time: with :math:`e = r_{ui} - \hat r_{ui}` and step :math:`\eta`,
    :math:`b_u \mathrel{+}= \eta (e - \lambda_b b_u)`, the same for :math:`b_i`, and
    :math:`p_u \mathrel{+}= \eta (e q_i - \lambda p_u - \lambda_0 (p_u - p^0_u))`,
    :math:`q_i \mathrel{+}= \eta (e p_u - \lambda q_i - \lambda_0 (q_i - q^0_i))` using the
    old :math:`p_u, q_i` on the right. With ``biases=False`` the model is the plain
    :math:`P Q^\top` with no mean and no biases.

    Parameters
    ----------
    factors : int, default 100
        Number of latent factors k.
    epochs : int, default 20
        Passes over the training ratings.
    learning_rate : float, default 0.005
        SGD step size :math:`\eta`.
    regularization : float, default 0.02
        L2 weight :math:`\lambda` on the factors.
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
        Visit the ratings in a new seeded random order every epoch (else in CSR order).
    tol : float, default 1e-4
        Minimum improvement of validation RMSE that resets the ``patience`` counter.
    patience : int or None, default None
        Stop after this many epochs without improvement of validation RMSE and restore the
        best epoch's factors; None disables early stopping.
    dtype : float32 or float64, default float32
        Factor precision.
    random_state : None, int or numpy.random.Generator, default None
        Seed of the initial factors and the visit order. The same seed, data and
        parameters give bit-identical factors.
    n_threads : int or None, default None
        Threads for prediction and scoring (None: all usable cores). The serial SGD epoch
        itself runs on one thread.
    verbose : bool, default False
        Print one line per epoch on stderr.

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
    """

    _step_param = "learning_rate"

    def __init__(
        self,
        factors: int = 100,
        epochs: int = 20,
        learning_rate: float = 0.005,
        regularization: float = 0.02,
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

    def _check_params(self) -> dict[str, Any]:
        p = self._check_common_params()
        p["learning_rate"] = check_number(
            self.learning_rate, "learning_rate", low=0, low_inclusive=False
        )
        if not isinstance(self.shuffle, bool | np.bool_):
            raise TypeError(f"shuffle must be True or False, got {self.shuffle!r}")
        return p

    def _begin_fit(self, X: Ratings, state: FactorState, rng: np.random.Generator) -> None:
        self._records = rating_records(X)
        self._rng = rng
        self._nnz = X.nnz

    def _run_epoch(self, epoch: int) -> tuple[float, bool]:
        p = self._params
        if self.shuffle:
            _sgd.shuffle_records(self._records, int(self._rng.integers(2**63)))
        state = self._state
        P0, Q0 = self._prior if self._prior is not None else (None, None)
        sse, bad = _sgd.sgd_epoch(
            self._records,
            state.P,
            state.Q,
            state.bu,
            state.bi,
            self.global_mean,
            p["learning_rate"],
            p["regularization"],
            p["bias_regularization"],
            bool(self.biases),
            P0 if p["prior_regularization"] > 0 else None,
            Q0 if p["prior_regularization"] > 0 else None,
            p["prior_regularization"],
        )
        return math.sqrt(sse / self._nnz), bad < 0

    def _end_fit(self) -> None:
        for name in ("_records", "_rng"):
            self.__dict__.pop(name, None)
