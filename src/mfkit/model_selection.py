"""Splitting ratings for honest evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np

from mfkit._validation import SeedLike, check_number, check_random_state
from mfkit.ratings import Ratings, as_ratings


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
