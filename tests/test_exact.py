"""The exactly rounded float32 sum and mean (mfkit._core.exact) against Python's Fractions."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import mfkit
from mfkit._core.exact import (
    SCALE_BITS,
    exact_mean,
    exact_residual_sq,
    exact_sum_f32,
    exact_sum_sq_f32,
    mean_f32,
)


def fraction_mean(values: np.ndarray) -> float:
    # the independent oracle: exact rational arithmetic, one rounding at the end
    return float(sum(Fraction(float(v)) for v in values) / len(values))


@pytest.mark.parametrize(
    "values",
    [
        np.array([1.0, 2.0, 4.5, 0.5], dtype=np.float32),  # on the fast path's grid
        np.random.default_rng(0).standard_normal(3000).astype(np.float32) * 1e30,
        (np.random.default_rng(1).standard_normal(3000) * 1e-40).astype(np.float32),
        np.array([3e38, 3e38, -1e-45, 1.0 / 3.0, 7e-39], dtype=np.float32),
        np.array([0.1] * 10 + [-0.0, 1e7], dtype=np.float32),
    ],
)
def test_mean_is_the_exactly_rounded_mean(values):
    assert mean_f32(values) == fraction_mean(values)
    assert Fraction(exact_sum_f32(values), 2**SCALE_BITS) == sum(Fraction(float(v)) for v in values)


SQUARES = [
    np.array([1.0, 2.0, 4.5, 0.5, -3.0], dtype=np.float32),  # on the fast path's grid
    np.array([4095.0, -4095.5, 1.0 / 256], dtype=np.float32),  # its edge
    np.array([4096.0, 1.0], dtype=np.float32),  # just past it
    np.random.default_rng(3).standard_normal(3000).astype(np.float32) * 1e19,
    (np.random.default_rng(4).standard_normal(3000) * 1e-40).astype(np.float32),
    np.array([3e38, -1e-45, 1.0 / 3.0, 7e-39, 0.0], dtype=np.float32),
]


@pytest.mark.parametrize("values", SQUARES)
def test_sum_of_squares_and_residuals_are_exact(values):
    exact_sq = sum(Fraction(float(v)) ** 2 for v in values)
    assert Fraction(exact_sum_sq_f32(values), 2 ** (2 * SCALE_BITS)) == exact_sq
    s1, s2 = exact_sum_f32(values), exact_sum_sq_f32(values)
    for mu in (0.0, mean_f32(values), -1.25, 1.0 / 3.0):
        want = float(sum((Fraction(float(v)) - Fraction(mu)) ** 2 for v in values))
        assert exact_residual_sq(s1, s2, len(values), mu) == want


def test_partial_sums_of_squares_add_up_to_the_same_bits():
    v = np.random.default_rng(5).integers(1, 11, 10_001).astype(np.float32) / 2
    v[17] = 1e-3  # one block off the grid
    assert sum(exact_sum_sq_f32(p) for p in np.array_split(v, 5)) == exact_sum_sq_f32(v)


def test_partial_sums_add_up_to_the_same_bits():
    v = np.random.default_rng(2).standard_normal(10_001).astype(np.float32) * 3
    parts = np.array_split(v, 7)
    total = sum(exact_sum_f32(p) for p in parts)
    assert total == exact_sum_f32(v)
    assert exact_mean(total, len(v)) == fraction_mean(v)
    with pytest.raises(ValueError, match="count must be positive"):
        exact_mean(0, 0)


def test_models_use_the_exact_mean():
    X = mfkit.datasets.synthetic("toy", random_state=0)
    m = mfkit.ALS(factors=2, epochs=1, random_state=0).fit(X)
    assert m.global_mean_ == fraction_mean(X.values)
    b = mfkit.BayesianMF(factors=2, epochs=1, random_state=0).fit(X)
    assert b.global_mean_ == fraction_mean(X.values)
    # the sampler's starting noise precision: 1 / the exactly rounded mean squared residual
    sampler = b._trainer(X, {}, np.random.default_rng(0), b._check_params())
    mu = Fraction(b.global_mean_)
    sq = float(sum((Fraction(float(v)) - mu) ** 2 for v in X.values))
    assert sampler.alpha == 1.0 / (sq / X.nnz)
