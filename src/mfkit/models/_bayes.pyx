# cython: language_level=3
"""Gibbs half-sweeps of Bayesian matrix factorization: draw every row of one side from its
Gaussian conditional with the other side held fixed.

Row u (with biases, the augmented row x_u = [p_u, b_u] against opposite rows a_j = [y_j, 1];
without, x_u = p_u against y_j) rates opposite rows j with r_uj; with targets
t_uj = r_uj - mu - ybias_j (r_uj without biases), noise precision alpha and the side's prior
x_u ~ N(m, Lam^-1), its conditional is Gaussian with

    precision  A = alpha sum_j a_j a_j^T + Lam,     mean  A^-1 (alpha sum_j a_j t_uj + Lam m).

The ALS row kernels of _als.h build the sums (the Gram tiles, Y^T t and the column sums) and
factor A = U^T U by Cholesky while solving for the mean; the draw adds U^-1 z, whose
covariance is U^-1 U^-T = A^-1, for z a vector of standard normals. A row without ratings is
set to zero (the model predicts the baseline for it).

The normals of row `row` in sweep `sweep` on side `side` come from a splitmix64 stream keyed
by (seed, sweep, side, row) through Box-Muller, so a row's draw does not depend on the thread
that makes it and the samples are bit-identical for any thread count (every sum inside a row
is taken in the fixed order of _als.h).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport cos, log, sin, sqrt
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memset

import numpy as np

from mfkit._core._common cimport splitmix64

from mfkit.models._als import RowScratch

from mfkit.models._rows cimport (check_isa, mf_als_dot_f32, mf_als_dot_f64, mf_als_ld,
                                 mf_rows_scratch, mf_rows_scratch_at, row_cholesky, row_gram,
                                 row_residual, row_rhs, scratch_base, first_bad_row)

cdef enum:
    ROW_OK = 0
    ROW_NOT_PD = 1
    ROW_BAD_INDEX = 2
    # bytes of gathered rows per Gram pass (as in _als.pyx)
    GRAM_CHUNK_BYTES = 32768

cdef double TWO_PI = 6.283185307179586


cdef struct Params:
    int isa          # instruction-set path of the row kernels (_isa.h)
    int k
    int K            # k + 1 with biases, else k
    int ld           # row stride of the gathered block
    int lda          # row stride of the precision matrix
    int biases
    int want_sse
    int chunk
    double mu
    double alpha
    uint64_t seed
    int64_t sweep
    int side
    int64_t row_offset   # the global index of local row 0 (a shard's first row)
    Py_ssize_t n_opposite


# --------------------------------------------------------------------------- the draws
cdef inline uint64_t _row_key(uint64_t seed, int64_t sweep, int side,
                              int64_t row) noexcept nogil:
    cdef uint64_t s = seed, a
    a = splitmix64(&s)
    s = a ^ <uint64_t>sweep
    a = splitmix64(&s)
    s = a ^ ((<uint64_t>row << 1) | <uint64_t>(side & 1))
    return splitmix64(&s)


cdef void _normals(uint64_t seed, int64_t sweep, int side, int64_t row, int K,
                   double *z) noexcept nogil:
    """K standard normals for (seed, sweep, side, row) by Box-Muller on splitmix64."""
    cdef uint64_t state = _row_key(seed, sweep, side, row)
    cdef double u1, u2, rad
    cdef int f = 0
    while f < K:
        # 53-bit uniforms; 1 - u1 lies in (0, 1], so the log is finite
        u1 = <double>(splitmix64(&state) >> 11) * (1.0 / 9007199254740992.0)
        u2 = <double>(splitmix64(&state) >> 11) * (1.0 / 9007199254740992.0)
        rad = sqrt(-2.0 * log(1.0 - u1))
        z[f] = rad * cos(TWO_PI * u2)
        if f + 1 < K:
            z[f + 1] = rad * sin(TWO_PI * u2)
        f += 2


def normal_draws(uint64_t seed, int64_t sweep, int side, int64_t row, int K):
    """The K standard normals the sampler uses for row ``row`` of side ``side`` (0 users,
    1 items) in sweep ``sweep`` (float64; the kernel casts them to the factor dtype)."""
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    out = np.empty(K, dtype=np.float64)
    cdef double[::1] o = out
    _normals(seed, sweep, side, row, K, &o[0])
    return out


# --------------------------------------------------------------------------- one row
cdef int _sample_row(Py_ssize_t row, const int64_t[::1] indptr, const int32_t[::1] indices,
                     const float[::1] values, const floating[:, ::1] Y,
                     const floating[::1] ybias, floating[:, ::1] X, floating[::1] xbias,
                     const floating[:, ::1] Lam, const floating[::1] Lmu, const Params *p,
                     floating *blk, floating *t, floating *e, floating *A, floating *v,
                     double *zd, double *sse) noexcept nogil:
    cdef Py_ssize_t start = indptr[row], n = indptr[row + 1] - indptr[row], jj
    cdef int k = p.k, K = p.K, ld = p.ld, lda = p.lda, f, g, status
    cdef int32_t idx
    cdef floating a = <floating>p.alpha
    cdef floating mu = <floating>p.mu
    cdef floating st, xb = 0
    cdef floating *rhs = v
    cdef floating *colsum = v + lda
    cdef floating *z = v + 2 * lda
    sse[0] = 0.0
    if n == 0:
        for f in range(k):
            X[row, f] = 0
        if p.biases:
            xbias[row] = 0
        return ROW_OK
    for jj in range(n):
        idx = indices[start + jj]
        if idx < 0 or idx >= p.n_opposite:
            return ROW_BAD_INDEX
        for f in range(k):
            blk[jj * ld + f] = Y[idx, f]
        if p.biases:
            t[jj] = (<floating>values[start + jj] - mu) - ybias[idx]
        else:
            t[jj] = <floating>values[start + jj]
    memset(A, 0, <size_t>lda * lda * sizeof(floating))
    row_gram(p.isa, blk, n, ld, A, lda, p.chunk)
    st = row_rhs(p.isa, blk, n, ld, t, rhs, colsum if p.biases else NULL)
    # precision alpha Y^T Y + Lam and right-hand side alpha Y^T t + Lam m (upper triangle)
    for f in range(k):
        for g in range(f, k):
            A[f * lda + g] = a * A[f * lda + g] + Lam[f, g]
        rhs[f] = a * rhs[f] + Lmu[f]
    if p.biases:
        for f in range(k):
            A[f * lda + k] = a * colsum[f] + Lam[f, k]
        A[k * lda + k] = a * <floating>n + Lam[k, k]
        rhs[k] = a * st + Lmu[k]
    status = row_cholesky(p.isa, A, K, lda, rhs)
    if status != 0:
        return ROW_NOT_PD
    # z <- U^-1 z by back substitution on the factor A now holds (row j: U[j, j:])
    # keyed by the global row: a shard draws the same normals as the whole matrix
    _normals(p.seed, p.sweep, p.side, p.row_offset + row, K, zd)
    for f in range(K):
        z[f] = <floating>zd[f]
    for f in range(K - 1, -1, -1):
        if floating is float:
            z[f] = (z[f] - mf_als_dot_f32(A + f * lda + f + 1, z + f + 1, K - f - 1)) / \
                A[f * lda + f]
        else:
            z[f] = (z[f] - mf_als_dot_f64(A + f * lda + f + 1, z + f + 1, K - f - 1)) / \
                A[f * lda + f]
    for f in range(K):
        rhs[f] = rhs[f] + z[f]
    for f in range(k):
        X[row, f] = rhs[f]
    if p.biases:
        xb = rhs[k]
        xbias[row] = xb
    if p.want_sse:
        # the residual kernel reads whole ld-long rows: zero the entries past k
        for f in range(k, ld):
            rhs[f] = 0
        sse[0] = row_residual(p.isa, blk, n, ld, t, rhs, xb, e, <floating *>NULL,
                              <floating *>NULL)
    return ROW_OK


# --------------------------------------------------------------------------- the sweep
cdef Py_ssize_t _half_sweep(const int64_t[::1] indptr, const int32_t[::1] indices,
                            const float[::1] values, const floating[:, ::1] Y,
                            const floating[::1] ybias, floating[:, ::1] X,
                            floating[::1] xbias, const floating[:, ::1] Lam,
                            const floating[::1] Lmu, const Params *p, unsigned char *base,
                            size_t per_thread, int64_t rows, double[::1] row_sse,
                            unsigned char *status, int n_threads) noexcept nogil:
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, row, n_bad = 0
    cdef mf_rows_scratch sc
    cdef double sse
    cdef int code
    with parallel(num_threads=n_threads):
        # this thread's slice of the fit's scratch (RowScratch), reused for every row
        sc = mf_rows_scratch_at(base, threadid(), per_thread, p.k, rows, sizeof(floating))
        for row in prange(n_rows, schedule='dynamic', chunksize=2):
            sse = 0.0
            code = _sample_row(row, indptr, indices, values, Y, ybias, X, xbias, Lam, Lmu, p,
                               <floating *>sc.blk, <floating *>sc.t, <floating *>sc.e,
                               <floating *>sc.A, <floating *>sc.v, sc.z, &sse)
            status[row] = <unsigned char>code
            if p.want_sse:
                row_sse[row] = sse
            if code != ROW_OK:
                n_bad += 1
    return n_bad


def sample_half(const int64_t[::1] indptr, const int32_t[::1] indices,
                const float[::1] values, const floating[:, ::1] Y, const floating[::1] ybias,
                floating[:, ::1] X, floating[::1] xbias, const floating[:, ::1] Lam,
                const floating[::1] Lmu, double alpha, double mu, uint64_t seed,
                int64_t sweep, int side, double[::1] row_sse, int n_threads, int isa=0,
                object scratch=None, int64_t row_offset=0):
    """Draw every row of ``X`` (and ``xbias``) from its conditional given ``Y``/``ybias``.

    ``Lam`` (K x K, upper triangle read) and ``Lmu`` (K) are the prior precision and
    precision times mean, K = k + 1 with biases (the bias last), k without (empty
    ``ybias``/``xbias``). ``row_sse``, if not empty, receives each row's sum of squared
    residuals under the new draw. Returns ``(first_row, code)``: ``(-1, 0)`` on success,
    else the first row whose precision was not positive definite (code 1); bad indices
    raise ``ValueError``. ``isa`` is the instruction-set path of the row kernels (0
    baseline, 1 avx2, 2 avx512), ``scratch`` a ``RowScratch`` to reuse (None: one is made).
    ``row_offset``: the global index of the first row, when the rows are a shard (rows
    ``row_offset .. row_offset + n_rows - 1`` of the whole side): row ``r`` draws the normals
    of global row ``row_offset + r``, so a shard's rows equal those rows of a whole-side call.
    The returned row is local (0 .. n_rows - 1).
    """
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, row, max_n = 0, n_bad
    cdef Params p
    cdef unsigned char[::1] status
    cdef int64_t lo, rows
    cdef unsigned char *base
    cdef size_t per_thread
    if n_rows < 0:
        raise ValueError("indptr must have at least one entry (n_rows + 1)")
    if X.shape[0] != n_rows:
        raise ValueError(f"X has {X.shape[0]} rows but indptr describes {n_rows}")
    if Y.shape[1] != X.shape[1]:
        raise ValueError(f"X and Y must have the same number of factors, got {X.shape[1]} "
                         f"and {Y.shape[1]}")
    if indices.shape[0] != values.shape[0]:
        raise ValueError("indices and values must have the same length")
    p.biases = ybias.shape[0] > 0 or xbias.shape[0] > 0
    if p.biases and (ybias.shape[0] != Y.shape[0] or xbias.shape[0] != X.shape[0]):
        raise ValueError("with biases, ybias must have one entry per row of Y and xbias one "
                         "per row of X (pass empty arrays for both without biases)")
    p.k = <int>X.shape[1]
    p.K = p.k + (1 if p.biases else 0)
    if Lam.shape[0] != p.K or Lam.shape[1] != p.K or Lmu.shape[0] != p.K:
        raise ValueError(f"Lam must be {p.K} x {p.K} and Lmu of length {p.K}")
    p.want_sse = row_sse.shape[0] > 0
    if p.want_sse and row_sse.shape[0] != n_rows:
        raise ValueError("row_sse must have one entry per row (or be empty)")
    if not (alpha > 0):
        raise ValueError(f"alpha (noise precision) must be > 0, got {alpha}")
    if side != 0 and side != 1:
        raise ValueError(f"side must be 0 (users) or 1 (items), got {side}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if row_offset < 0:
        raise ValueError(f"row_offset must be >= 0, got {row_offset}")
    lo = indptr[0]
    for row in range(n_rows):
        if indptr[row + 1] < indptr[row]:
            lo = -1
            break
        if indptr[row + 1] - indptr[row] > max_n:
            max_n = indptr[row + 1] - indptr[row]
    if lo < 0 or indptr[n_rows] > indices.shape[0]:
        raise ValueError("indptr must be non-decreasing, start >= 0 and end within indices")
    p.ld = mf_als_ld(p.k)
    p.lda = mf_als_ld(p.k + 1)
    p.chunk = max(8, GRAM_CHUNK_BYTES // (p.ld * <int>sizeof(floating)))
    p.mu = mu
    p.alpha = alpha
    p.seed = seed
    p.sweep = sweep
    p.side = side
    p.row_offset = row_offset
    p.n_opposite = Y.shape[0]
    check_isa(isa)
    p.isa = isa
    if scratch is None:
        scratch = RowScratch(p.k, max_n, sizeof(floating), n_threads)
    base = scratch_base(scratch, p.k, max_n, sizeof(floating), n_threads, &per_thread, &rows)
    status = bytearray(max(n_rows, 1))
    with nogil:
        n_bad = _half_sweep(indptr, indices, values, Y, ybias, X, xbias, Lam, Lmu, &p, base,
                            per_thread, rows, row_sse, &status[0], n_threads)
    if n_bad:
        return first_bad_row(status, Y.shape[0])
    return -1, 0
