"""Synthetic data: shape, coverage, no duplicates, seeding, known structure."""

from __future__ import annotations

import numpy as np
import pytest

import mfkit
from mfkit.datasets import synthetic


@pytest.mark.parametrize("name", ["toy", "ml-100k"])
def test_presets_hold_their_promises(name: str) -> None:
    n_users, n_items, n_ratings = mfkit.datasets.PRESETS[name]
    d = synthetic(name, random_state=1)
    assert d.shape == (n_users, n_items) and d.nnz == n_ratings
    assert d.user_counts().min() >= 1 and d.item_counts().min() >= 1
    u, i, r = d.to_triplets()
    keys = u.astype(np.int64) * n_items + i
    assert len(np.unique(keys)) == n_ratings
    assert set(np.unique(r).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    # rows are sorted CSR
    assert np.all(np.diff(keys) > 0)


def test_heavy_tails_and_seeding() -> None:
    d = synthetic("ml-100k", random_state=2)
    uc, ic = d.user_counts(), d.item_counts()
    assert uc.max() > 8 * np.median(uc)
    assert ic.max() > 20 * np.median(ic)
    d2 = synthetic("ml-100k", random_state=2)
    d3 = synthetic("ml-100k", random_state=3)
    assert np.array_equal(d.indices, d2.indices) and np.array_equal(d.values, d2.values)
    assert not np.array_equal(d.indices, d3.indices)


def test_ratings_follow_the_hidden_model() -> None:
    d, t = synthetic(
        n_users=300, n_items=200, n_ratings=20000, noise=0.0, random_state=4, return_truth=True
    )
    u, i, r = d.to_triplets()
    score = t["mu"] + t["user_biases"][u] + t["item_biases"][i]
    score += np.einsum("ij,ij->i", t["user_factors"][u], t["item_factors"][i])
    np.testing.assert_array_equal(r, np.clip(np.rint(score), 1, 5))


def test_dense_users_and_timestamps() -> None:
    d = synthetic(n_users=20, n_items=30, n_ratings=550, timestamps=True, random_state=0)
    assert d.user_counts().max() <= 30 and d.item_counts().min() >= 1
    assert d.timestamps is not None and d.timestamps.shape == (550,)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"name": "nope"}, "unknown preset"),
        ({"name": None, "n_users": 5, "n_items": 5, "n_ratings": 26}, "exceeds"),
        ({"name": None, "n_users": 50, "n_items": 5, "n_ratings": 20}, "too small"),
        ({"name": None, "n_users": 5}, "give a preset"),
    ],
)
def test_bad_arguments(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        synthetic(**kwargs)
