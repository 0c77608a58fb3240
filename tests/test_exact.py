"""The exactly rounded float32 sum and mean (mfkit._core.exact) against Python's Fractions."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import mfkit
from mfkit._core.exact import SCALE_BITS, exact_mean, exact_sum_f32, mean_f32


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
