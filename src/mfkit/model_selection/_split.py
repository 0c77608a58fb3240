"""Splitting ratings for honest evaluation: random, per-user, temporal, k-fold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mfkit._core.validation import SeedLike, check_number, check_random_state
from mfkit.data import Ratings, as_ratings


def train_test_split(
    data: Any, test_size: float = 0.1, *, random_state: SeedLike = None
) -> tuple[Ratings, Ratings]:
    """Random holdout of a fraction of the ratings.

    Both parts keep the full shape and the id maps of ``data``, so indices mean the same in
    both. A user or item whose ratings all fall in the test part has an empty row in the
    training part; models give it zero factors and predict it by the baseline.
    """
    X = as_ratings(data)
    test_size = check_number(test_size, "test_size", low=0, high=1, low_inclusive=False)
    if test_size >= 1:
        raise ValueError("test_size must be below 1 (a fraction of the ratings)")
    rng = check_random_state(random_state)
    n_test = int(round(X.nnz * test_size))
    if n_test == 0 or n_test == X.nnz:
        raise ValueError(
            f"test_size={test_size} leaves an empty part of {X.nnz} ratings; pick a fraction "
            f"that keeps ratings on both sides"
        )
    mask = np.zeros(X.nnz, dtype=bool)
    mask[rng.choice(X.nnz, size=n_test, replace=False)] = True
    return X.subset(~mask), X.subset(mask)


def _check_min_train(min_train: Any) -> int:
    return int(check_number(min_train, "min_train", low=0, integer=True))


def _per_user_counts(
    counts: np.ndarray, test_size: float | None, n_test: int | None, min_train: int
) -> np.ndarray:
    """How many of each user's ratings go to the test part (0 for users with too few)."""
    if (test_size is None) == (n_test is None):
        raise ValueError("give exactly one of test_size (a fraction) or n_test (a count)")
    if n_test is not None:
        n_test = int(check_number(n_test, "n_test", low=1, integer=True))
        want = np.full(len(counts), n_test, dtype=np.int64)
        # all or nothing: a user keeps every rating in training unless n_test can be held
        # out with min_train left
        want[counts < n_test + min_train] = 0
        return want
    frac = check_number(test_size, "test_size", low=0, high=1, low_inclusive=False)
    if frac >= 1:
        raise ValueError("test_size must be below 1 (a fraction of each user's ratings)")
    want = np.floor(counts * frac + 0.5).astype(np.int64)  # round half up
    return np.clip(np.minimum(want, counts - min_train), 0, None)


def _split_by_rank(X: Ratings, rank: np.ndarray, n_test_u: np.ndarray) -> tuple[Ratings, Ratings]:
    """Test part = ratings whose rank within their user is below that user's test count."""
    mask = rank < n_test_u[X.user_index()]
    if not mask.any():
        raise ValueError(
            "the split puts no rating in the test part: every user has too few ratings for "
            "the requested holdout (lower n_test/min_train or raise test_size)"
        )
    return X.subset(~mask), X.subset(mask)


def per_user_split(
    data: Any,
    test_size: float | None = None,
    *,
    n_test: int | None = None,
    min_train: int = 1,
    random_state: SeedLike = None,
) -> tuple[Ratings, Ratings]:
    """Per-user random holdout: leave ``n_test`` ratings of every user out, or a fraction.

    Parameters
    ----------
    data : ratings
    test_size : float in (0, 1), optional
        Hold out ``round(test_size * n_u)`` (half up) of each user's ``n_u`` ratings, at most
        ``n_u - min_train``.
    n_test : int, optional
        Hold out exactly ``n_test`` ratings of each user that has at least
        ``n_test + min_train`` (leave-k-out); other users keep all their ratings in the
        training part. Give exactly one of ``test_size`` and ``n_test``.
    min_train : int, default 1
        Ratings every user keeps in training.
    random_state : None, int or Generator
        Which ratings are held out (seeded, reproducible).

    Returns
    -------
    (train, test) with the full shape and id maps of ``data``. Every test user also has
    training ratings (when ``min_train >= 1``); an item rated only by held-out ratings has
    an empty column in training and is predicted by the baseline.
    """
    X = as_ratings(data)
    min_train = _check_min_train(min_train)
    n_test_u = _per_user_counts(X.user_counts(), test_size, n_test, min_train)
    rng = check_random_state(random_state)
    prio = rng.random(X.nnz)
    users = X.user_index()
    order = np.lexsort((prio, users))
    rank = np.empty(X.nnz, dtype=np.int64)
    rank[order] = np.arange(X.nnz) - np.asarray(X.indptr)[users[order]]
    return _split_by_rank(X, rank, n_test_u)


def temporal_split(
    data: Any,
    cutoff: Any = None,
    *,
    test_size: float | None = None,
    n_test: int | None = None,
    per_user: bool = False,
    min_train: int = 1,
) -> tuple[Ratings, Ratings]:
    """Split by time: the latest ratings are the test part (needs ``data.timestamps``).

    Give exactly one rule:

    * ``cutoff``: a timestamp (int seconds or ``numpy.datetime64``); ratings at or after it
      are tests, the rest training (global rule; ``min_train`` does not apply);
    * ``test_size`` with ``per_user=False``: the latest fraction of all ratings (global);
    * ``n_test`` or ``test_size`` with ``per_user=True``: each user's last ``n_test``
      ratings (or the last fraction, rounded half up), keeping at least ``min_train`` of
      them in training; users with fewer than ``n_test + min_train`` ratings stay whole in
      training.

    Ratings with equal timestamps are ordered by their position in the container (user,
    then item index), the later position counting as later, so the rule holds exactly:
    no training rating (of the same user, for per-user rules) comes after a test rating in
    that order. No randomness is involved. Both parts keep the shape and id maps of
    ``data``; users or items that only occur in the test part have empty rows or columns in
    training (new users and items, as at serving time).
    """
    X = as_ratings(data)
    if X.timestamps is None:
        raise ValueError(
            "temporal_split needs timestamps: build the ratings with timestamps= (e.g. "
            "Ratings.from_triplets(..., timestamps=ts) or datasets.synthetic(..., "
            "timestamps=True))"
        )
    ts = np.asarray(X.timestamps)
    given = sum(x is not None for x in (cutoff, test_size, n_test))
    if given != 1:
        raise ValueError("give exactly one of cutoff, test_size or n_test")
    if cutoff is not None:
        if per_user:
            raise ValueError("cutoff is a global rule; per_user=True takes n_test or test_size")
        if isinstance(cutoff, np.datetime64):
            cut = int(cutoff.astype("datetime64[s]").astype(np.int64))
        else:
            cut = int(check_number(cutoff, "cutoff", integer=True))
        mask = ts >= cut
        if not mask.any() or mask.all():
            raise ValueError(
                f"cutoff={cutoff!r} leaves an empty part (timestamps run from {ts.min()} to "
                f"{ts.max()})"
            )
        return X.subset(~mask), X.subset(mask)
    if not per_user:
        if n_test is not None:
            raise ValueError("n_test counts ratings per user: pass per_user=True")
        frac = check_number(test_size, "test_size", low=0, high=1, low_inclusive=False)
        n = int(round(X.nnz * frac))
        if n == 0 or n >= X.nnz:
            raise ValueError(f"test_size={test_size} leaves an empty part of {X.nnz} ratings")
        order = np.lexsort((np.arange(X.nnz), ts))  # by time, then position
        mask = np.zeros(X.nnz, dtype=bool)
        mask[order[X.nnz - n :]] = True
        return X.subset(~mask), X.subset(mask)
    min_train = _check_min_train(min_train)
    n_test_u = _per_user_counts(X.user_counts(), test_size, n_test, min_train)
    users = X.user_index()
    # latest first within each user: sort by (user, -time, -position)
    order = np.lexsort((-np.arange(X.nnz), -ts, users))
    rank = np.empty(X.nnz, dtype=np.int64)
    rank[order] = np.arange(X.nnz) - np.asarray(X.indptr)[users[order]]
    return _split_by_rank(X, rank, n_test_u)


class KFold:
    """K-fold cross-validation over ratings: the ratings are shuffled (seeded) and cut into
    ``n_splits`` folds of sizes differing by at most one; fold j is the test part of split j.

    Every rating is in exactly one test fold. Train and test parts keep the full shape and id
    maps of the data; a user or item whose ratings all fall in one fold is absent from that
    split's training part and predicted by the baseline there.
    """

    def __init__(
        self, n_splits: int = 5, *, shuffle: bool = True, random_state: SeedLike = None
    ) -> None:
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def get_n_splits(self) -> int:
        return int(self.n_splits)

    def split(self, data: Any) -> Iterator[tuple[Ratings, Ratings]]:
        """Yield ``(train, test)`` for each fold."""
        X = as_ratings(data)
        n_splits = int(check_number(self.n_splits, "n_splits", low=2, integer=True))
        if X.nnz < n_splits:
            raise ValueError(f"n_splits={n_splits} is more than the {X.nnz} ratings")
        if not isinstance(self.shuffle, bool | np.bool_):
            raise TypeError(f"shuffle must be True or False, got {self.shuffle!r}")
        perm = (
            check_random_state(self.random_state).permutation(X.nnz)
            if self.shuffle
            else np.arange(X.nnz)
        )
        for fold in np.array_split(perm, n_splits):
            mask = np.zeros(X.nnz, dtype=bool)
            mask[fold] = True
            yield X.subset(~mask), X.subset(mask)

    def __repr__(self) -> str:
        return (
            f"KFold(n_splits={self.n_splits}, shuffle={self.shuffle}, "
            f"random_state={self.random_state!r})"
        )
