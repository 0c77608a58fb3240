# cython: language_level=3
"""Kernels shared by every mfkit model: prediction, scoring, seeded shuffling."""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs
from libc.stdint cimport int64_t, uint64_t

import numpy as np

from mfkit._core._openmp cimport MFKIT_HAVE_OPENMP
from mfkit._core._simd cimport (mf_dot_f32, mf_dot_f64, mf_scan_abs_max_f32,
                                mf_scan_abs_max_f64)


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(MFKIT_HAVE_OPENMP)


cdef inline floating _dot(const floating *a, const floating *b, int k) noexcept nogil:
    if floating is float:
        return mf_dot_f32(a, b, k)
    else:
        return mf_dot_f64(a, b, k)


def predict_pairs(const floating[:, ::1] P, const floating[:, ::1] Q,
                  const floating[::1] bu, const floating[::1] bi, double mu,
                  const int64_t[::1] users, const int64_t[::1] items,
                  double[::1] out, int n_threads):
    """out[j] = mu + bu[u] + bi[i] + P[u] . Q[i]; a negative index stands for an unknown id
    and contributes nothing (the baseline). Empty bias arrays mean no biases."""
    cdef Py_ssize_t n = users.shape[0], j
    cdef int k = P.shape[1]
    cdef bint has_bu = bu.shape[0] > 0, has_bi = bi.shape[0] > 0
    cdef int64_t u, i
    cdef double s
    if items.shape[0] != n or out.shape[0] != n:
        raise ValueError("users, items and out must have the same length")
    if Q.shape[1] != k:
        raise ValueError("P and Q must have the same number of columns")
    with nogil:
        for j in prange(n, num_threads=n_threads, schedule='static'):
            u = users[j]
            i = items[j]
            s = mu
            if u >= 0 and has_bu:
                s = s + bu[u]
            if i >= 0 and has_bi:
                s = s + bi[i]
            if u >= 0 and i >= 0:
                s = s + _dot(&P[u, 0], &Q[i, 0], k)
            out[j] = s


cdef uint64_t splitmix64(uint64_t *state) noexcept nogil:
    cdef uint64_t z
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef extern from *:
    """
    #include <stdint.h>
    static inline uint64_t mfkit_mul128(uint64_t a, uint64_t b, uint64_t *lo) {
        unsigned __int128 m = (unsigned __int128)a * b;
        *lo = (uint64_t)m;
        return (uint64_t)(m >> 64);
    }
    """
    uint64_t mfkit_mul128(uint64_t a, uint64_t b, uint64_t *lo) noexcept nogil


cdef uint64_t bounded(uint64_t *state, uint64_t n) noexcept nogil:
    """A uniform integer in [0, n) (Lemire's nearly-divisionless method, exact)."""
    cdef uint64_t lo, hi, t
    hi = mfkit_mul128(splitmix64(state), n, &lo)
    if lo < n:
        t = (0 - n) % n
        while lo < t:
            hi = mfkit_mul128(splitmix64(state), n, &lo)
    return hi


cdef void shuffle_i64(int64_t *a, Py_ssize_t n, uint64_t *state) noexcept nogil:
    """Fisher-Yates shuffle of a[0:n], drawing from the splitmix64 stream `state`."""
    cdef Py_ssize_t j = n - 1, r
    cdef int64_t tmp
    while j > 0:
        r = <Py_ssize_t>bounded(state, <uint64_t>(j + 1))
        tmp = a[j]
        a[j] = a[r]
        a[r] = tmp
        j -= 1


def shuffle_inplace(int64_t[::1] a, uint64_t seed):
    """Fisher-Yates shuffle of `a` driven by splitmix64 from `seed` (no GIL, reproducible)."""
    cdef uint64_t state = seed
    if a.shape[0] > 1:
        with nogil:
            shuffle_i64(&a[0], a.shape[0], &state)


def all_finite(const floating[:, ::1] A):
    """True when every entry of A is finite (NaN and inf fail)."""
    cdef Py_ssize_t i, j
    cdef bint ok = True
    with nogil:
        for i in range(A.shape[0]):
            for j in range(A.shape[1]):
                if not (fabs(A[i, j]) <= 1.7976931348623157e308):
                    ok = False
                    break
            if not ok:
                break
    return ok


cdef enum:
    SCAN_BLOCK = 1 << 16  # entries per task of scan_abs_max


cdef inline void _scan_block(const floating *a, Py_ssize_t n, double *top,
                             unsigned char *bad) noexcept nogil:
    if floating is float:
        mf_scan_abs_max_f32(a, n, top, bad)
    else:
        mf_scan_abs_max_f64(a, n, top, bad)


def scan_abs_max(const floating[:, ::1] A, int n_threads=1):
    """``(finite, max |A|)``: whether every entry of A is finite, and the largest absolute
    value of its entries (0.0 for an empty A; meaningless when not finite), in one parallel
    pass. The maximum does not depend on the order of the comparisons, so the result is the
    same for any ``n_threads``."""
    cdef Py_ssize_t n = A.shape[0] * A.shape[1], n_blocks, b, lo
    cdef const floating *base
    cdef double m = 0.0
    cdef unsigned char any_bad = 0
    if n == 0:
        return True, 0.0
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    base = &A[0, 0]
    n_blocks = (n + SCAN_BLOCK - 1) // SCAN_BLOCK
    tops = np.zeros(n_blocks, dtype=np.float64)
    bads = np.zeros(n_blocks, dtype=np.uint8)
    cdef double[::1] t = tops
    cdef unsigned char[::1] f = bads
    with nogil:
        for b in prange(n_blocks, num_threads=n_threads, schedule='static'):
            lo = b * SCAN_BLOCK
            _scan_block(base + lo, min(n - lo, <Py_ssize_t>SCAN_BLOCK), &t[b], &f[b])
        for b in range(n_blocks):
            any_bad |= f[b]
            if t[b] > m:
                m = t[b]
    return not any_bad, m


cdef extern from "_isa.h" nogil:
    int mfkit_cpu_isa()


def cpu_isa():
    """The best kernel path this CPU and OS support: 0 baseline, 1 AVX2+FMA, 2 AVX-512
    (x86-64, each including the ones below), 3 NEON (aarch64: baseline and NEON only)."""
    return mfkit_cpu_isa()
