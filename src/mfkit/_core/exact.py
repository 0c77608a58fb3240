"""Exactly rounded sums and means of float32 values, the same bits however they are split.

A float32 value is an integer multiple of 2**-149, so ``value * 2**149`` is an integer and
a sum of such integers is exact in Python's unbounded ints. Partial sums (one per shard of
a distributed data set, in any order) add up to the same integer, and the mean rounded
once from it (:func:`exact_mean`) is the same float for one machine and for a cluster. A
floating-point sum (``numpy.mean``) depends on how the values are grouped, so it cannot be
reproduced shard by shard.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

#: float32 values are integers in units of 2**-SCALE_BITS
SCALE_BITS = 149
#: values per block: small enough that a block's float64 scratch (about 17 bytes a value)
#: stays near 1 MB, as fast as larger blocks
_BLOCK = 1 << 16
_GRID_BITS = 8


def exact_sum_f32(values: np.ndarray) -> int:
    """The exact sum of finite float32 ``values``, times ``2**149`` (a Python int)."""
    a = np.ascontiguousarray(values, dtype=np.float32).ravel()
    total = 0
    for start in range(0, len(a), _BLOCK):
        block = a[start : start + _BLOCK]
        # fast path, ratings on a grid of 1/256 below 2**31 (1-5 stars, halves, ...): the
        # block's sum is an exact int64
        grid = block.astype(np.float64) * float(1 << _GRID_BITS)
        if np.all(np.abs(grid) < 2.0**39) and np.array_equal(grid, np.trunc(grid)):
            total += int(grid.astype(np.int64).sum()) << (SCALE_BITS - _GRID_BITS)
            continue
        bits = block.view(np.uint32)
        biased = (bits >> np.uint32(23)) & np.uint32(0xFF)
        mant = (bits & np.uint32(0x7FFFFF)) | ((biased > 0).astype(np.uint32) << np.uint32(23))
        # value * 2**149 = +-mant * 2**shift with shift = max(biased, 1) - 1 in [0, 253]
        shift = np.maximum(biased, np.uint32(1)) - np.uint32(1)
        sign = np.where(bits >> np.uint32(31), -1.0, 1.0)
        # the 24-bit significand in two 12-bit halves: a block's per-shift sums of either
        # stay below 2**53, so the float64 bincounts are exact
        hi = sign * (mant >> np.uint32(12)).astype(np.float64)
        lo = sign * (mant & np.uint32(0xFFF)).astype(np.float64)
        sums_hi = np.bincount(shift, weights=hi, minlength=254)
        sums_lo = np.bincount(shift, weights=lo, minlength=254)
        for s in np.flatnonzero((sums_hi != 0) | (sums_lo != 0)).tolist():
            total += ((int(sums_hi[s]) << 12) + int(sums_lo[s])) << s
    return total


def exact_mean(scaled_sum: int, count: int) -> float:
    """``scaled_sum / 2**149 / count`` rounded once to the nearest float64."""
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    return scaled_sum / (count << SCALE_BITS)  # int / int is correctly rounded in Python


def exact_sum_sq_f32(values: np.ndarray) -> int:
    """The exact sum of the squares of finite float32 ``values``, times ``2**298`` (a
    Python int: a float32 square is an integer multiple of ``2**-298``)."""
    a = np.ascontiguousarray(values, dtype=np.float32).ravel()
    total = 0
    for start in range(0, len(a), _BLOCK):
        block = a[start : start + _BLOCK]
        # fast path, ratings on a grid of 1/256 below 2**12: the squares' sum is an exact
        # int64 (each below 2**40, a block of 2**16 below 2**56)
        grid = block.astype(np.float64) * float(1 << _GRID_BITS)
        if np.all(np.abs(grid) < 2.0**20) and np.array_equal(grid, np.trunc(grid)):
            g = grid.astype(np.int64)
            total += int(np.dot(g, g)) << (2 * (SCALE_BITS - _GRID_BITS))
            continue
        bits = block.view(np.uint32)
        biased = (bits >> np.uint32(23)) & np.uint32(0xFF)
        mant = (bits & np.uint32(0x7FFFFF)) | ((biased > 0).astype(np.uint32) << np.uint32(23))
        # value**2 * 2**298 = mant**2 * 2**(2 shift), mant**2 below 2**48 in three 16-bit
        # pieces whose per-shift float64 sums over a block stay exact
        shift = np.maximum(biased, np.uint32(1)) - np.uint32(1)
        sq = mant.astype(np.uint64) ** 2
        pieces = [
            np.bincount(shift, weights=((sq >> np.uint64(b)) & np.uint64(0xFFFF)), minlength=254)
            for b in (0, 16, 32)
        ]
        nonzero = (pieces[0] != 0) | (pieces[1] != 0) | (pieces[2] != 0)
        for s in np.flatnonzero(nonzero).tolist():
            exact = int(pieces[0][s]) + (int(pieces[1][s]) << 16) + (int(pieces[2][s]) << 32)
            total += exact << (2 * s)
    return total


def exact_residual_sq(scaled_sum: int, scaled_sum_sq: int, count: int, mu: float) -> float:
    """``sum((v - mu)**2)`` over float32 values ``v`` with the exact ``scaled_sum``
    (:func:`exact_sum_f32`) and ``scaled_sum_sq`` (:func:`exact_sum_sq_f32`) of ``count``
    values, rounded once to the nearest float64: the same bits however the values were
    split to be summed."""
    m = Fraction(mu)
    exact = (
        Fraction(scaled_sum_sq, 1 << (2 * SCALE_BITS))
        - 2 * m * Fraction(scaled_sum, 1 << SCALE_BITS)
        + count * m * m
    )
    return float(exact)


def mean_f32(values: np.ndarray) -> float:
    """The mean of finite float32 ``values``, exactly rounded (see the module docstring)."""
    return exact_mean(exact_sum_f32(values), len(values))


__all__ = [
    "SCALE_BITS",
    "exact_mean",
    "exact_residual_sq",
    "exact_sum_f32",
    "exact_sum_sq_f32",
    "mean_f32",
]
