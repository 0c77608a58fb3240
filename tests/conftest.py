"""Shared data generators: small seeded rating sets with known structure.

Test modules import them as ``from tests.conftest import ...`` (``tests`` is a package, so
pytest's importlib mode gives the module that name)."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings

from mfkit import Ratings


def random_ratings(
    seed: int,
    n_users: int = 40,
    n_items: int = 30,
    density: float = 0.25,
    empty_users: tuple[int, ...] = (),
    empty_items: tuple[int, ...] = (),
) -> Ratings:
    """Integer ratings 1..5 on a random sparsity pattern; the listed rows/columns are empty,
    and user 1 has exactly one rating (fewer than any k used in the tests)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[list(empty_users), :] = False
    mask[:, list(empty_items)] = False
    if 1 not in empty_users:
        mask[1, :] = False
        mask[1, [j for j in range(n_items) if j not in empty_items][0]] = True
    dense = np.where(mask, rng.integers(1, 6, (n_users, n_items)).astype(float), np.nan)
    return Ratings.from_dense(dense)


def awkward_ratings(seed: int, n_users: int = 37, n_items: int = 29) -> Ratings:
    """Sparse ratings with empty users and items, one user who rated every item and one item
    rated by every (non-empty) user."""
    rng = np.random.default_rng(seed)
    A = np.where(rng.random((n_users, n_items)) < 0.12, rng.integers(1, 6, (n_users, n_items)), 0)
    A = A.astype(np.float64)
    A[3, :] = rng.integers(1, 6, n_items)  # a huge row
    A[:, 5] = rng.integers(1, 6, n_users)  # a huge column
    A[[8, 9], :] = 0  # empty users
    A[:, [11, 20]] = 0  # empty items
    A[A == 0] = np.nan
    return Ratings.from_dense(A)


def hidden_low_rank(
    seed: int, n_users: int, n_items: int, n_ratings: int, noise: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A rank-5 biased model observed with noise at random cells (not rounded):
    ``(users, items, noisy ratings, clean ratings)``."""
    rng = np.random.default_rng(seed)
    P = rng.normal(0, 0.5, (n_users, 5))
    Q = rng.normal(0, 0.5, (n_items, 5))
    bu = rng.normal(0, 0.3, n_users)
    bi = rng.normal(0, 0.3, n_items)
    cells = rng.choice(n_users * n_items, size=n_ratings, replace=False)
    u, i = cells // n_items, cells % n_items
    clean = 3.5 + bu[u] + bi[i] + np.einsum("ij,ij->i", P[u], Q[i])
    r = clean + rng.normal(0, noise, n_ratings)
    return u, i, r, clean


def dense_of(X: Ratings, fill: float = np.nan) -> np.ndarray:
    """The rating matrix as a dense array, ``fill`` where no rating is stored."""
    out = np.full(X.shape, fill)
    u, i, v = X.to_triplets()
    out[u, i] = v
    return out


# Hypothesis profiles for the fuzz suite (tests/test_fuzz.py): "quick" (the default, run in
# CI: a few dozen derandomised examples per test, so the whole suite stays within minutes on
# two cores) and "long" for release checks:
#     MFKIT_FUZZ_PROFILE=long python -m pytest tests/test_fuzz.py
# (or pytest's --hypothesis-profile=long).
settings.register_profile(
    "quick",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("MFKIT_FUZZ_PROFILE", "quick"))
