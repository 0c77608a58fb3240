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
from cython.parallel cimport parallel, prange
from libc.math cimport cos, log, sin, sqrt
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memset

import numpy as np

from mfkit._core._common cimport splitmix64

cdef extern from "_als.h" nogil:
    int mf_als_ld(int k)
    void *mf_als_alloc(size_t nbytes)
    void mf_als_free(void *p)
    float mf_als_dot_f32(const float *a, const float *b, int k)
    double mf_als_dot_f64(const double *a, const double *b, int k)
    void mf_als_gram_f32(const float *Y, int n, int ld, float *A, int lda)
    void mf_als_gram_f64(const double *Y, int n, int ld, double *A, int lda)
    float mf_als_rhs_f32(const float *Y, int n, int ld, const float *t, float *rhs,
                         float *colsum)
    double mf_als_rhs_f64(const double *Y, int n, int ld, const double *t, double *rhs,
                          double *colsum)
    double mf_als_residual_f32(const float *Y, int n, int ld, const float *t, const float *x,
                               float xb, float *e, float *g, float *gb)
    double mf_als_residual_f64(const double *Y, int n, int ld, const double *t,
                               const double *x, double xb, double *e, double *g, double *gb)
    int mf_als_cholesky_f32(float *A, int K, int lda, float *b)
    int mf_als_cholesky_f64(double *A, int K, int lda, double *b)

cdef enum:
    ROW_OK = 0
    ROW_NOT_PD = 1
    ROW_BAD_INDEX = 2
    ROW_NO_MEMORY = 3
    # bytes of gathered rows per Gram pass (as in _als.pyx)
    GRAM_CHUNK_BYTES = 32768

cdef double TWO_PI = 6.283185307179586


cdef struct Params:
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
    cdef Py_ssize_t start = indptr[row], n = indptr[row + 1] - indptr[row], jj, c0, m
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
    c0 = 0
    while c0 < n:
        m = min(<Py_ssize_t>p.chunk, n - c0)
        if floating is float:
            mf_als_gram_f32(blk + c0 * ld, <int>m, ld, A, lda)
        else:
            mf_als_gram_f64(blk + c0 * ld, <int>m, ld, A, lda)
        c0 += m
    if floating is float:
        st = mf_als_rhs_f32(blk, <int>n, ld, t, rhs, colsum if p.biases else NULL)
    else:
        st = mf_als_rhs_f64(blk, <int>n, ld, t, rhs, colsum if p.biases else NULL)
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
    if floating is float:
        status = mf_als_cholesky_f32(A, K, lda, rhs)
    else:
        status = mf_als_cholesky_f64(A, K, lda, rhs)
    if status != 0:
        return ROW_NOT_PD
    # z <- U^-1 z by back substitution on the factor A now holds (row j: U[j, j:])
    _normals(p.seed, p.sweep, p.side, row, K, zd)
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
        if floating is float:
            sse[0] = mf_als_residual_f32(blk, <int>n, ld, t, rhs, xb, e, NULL, NULL)
        else:
            sse[0] = mf_als_residual_f64(blk, <int>n, ld, t, rhs, xb, e, NULL, NULL)
    return ROW_OK


# --------------------------------------------------------------------------- the sweep
cdef Py_ssize_t _half_sweep(const int64_t[::1] indptr, const int32_t[::1] indices,
                            const float[::1] values, const floating[:, ::1] Y,
                            const floating[::1] ybias, floating[:, ::1] X,
                            floating[::1] xbias, const floating[:, ::1] Lam,
                            const floating[::1] Lmu, const Params *p, Py_ssize_t max_n,
                            double[::1] row_sse, unsigned char *status,
                            int n_threads) noexcept nogil:
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, row, n_bad = 0
    cdef floating *blk = NULL
    cdef floating *tv = NULL
    cdef floating *ev = NULL
    cdef floating *A = NULL
    cdef floating *v = NULL
    cdef double *zd = NULL
    cdef double sse
    cdef int code
    cdef size_t blk_bytes = <size_t>max_n * p.ld * sizeof(floating)
    cdef size_t t_bytes = <size_t>max_n * sizeof(floating)
    cdef size_t a_bytes = <size_t>p.lda * p.lda * sizeof(floating)
    cdef size_t v_bytes = <size_t>3 * p.lda * sizeof(floating)
    cdef size_t z_bytes = <size_t>p.lda * sizeof(double)
    with parallel(num_threads=n_threads):
        # per-thread scratch, allocated once and reused for every row the thread draws
        blk = <floating *>mf_als_alloc(blk_bytes)
        tv = <floating *>mf_als_alloc(t_bytes)
        ev = <floating *>mf_als_alloc(t_bytes)
        A = <floating *>mf_als_alloc(a_bytes)
        v = <floating *>mf_als_alloc(v_bytes)
        zd = <double *>mf_als_alloc(z_bytes)
        for row in prange(n_rows, schedule='dynamic', chunksize=2):
            sse = 0.0
            if blk == NULL or tv == NULL or ev == NULL or A == NULL or v == NULL or zd == NULL:
                code = ROW_NO_MEMORY
            else:
                code = _sample_row(row, indptr, indices, values, Y, ybias, X, xbias, Lam, Lmu,
                                   p, blk, tv, ev, A, v, zd, &sse)
            status[row] = <unsigned char>code
            if p.want_sse:
                row_sse[row] = sse
            if code != ROW_OK:
                n_bad += 1
        mf_als_free(blk)
        mf_als_free(tv)
        mf_als_free(ev)
        mf_als_free(A)
        mf_als_free(v)
        mf_als_free(zd)
    return n_bad


def sample_half(const int64_t[::1] indptr, const int32_t[::1] indices,
                const float[::1] values, const floating[:, ::1] Y, const floating[::1] ybias,
                floating[:, ::1] X, floating[::1] xbias, const floating[:, ::1] Lam,
                const floating[::1] Lmu, double alpha, double mu, uint64_t seed,
                int64_t sweep, int side, double[::1] row_sse, int n_threads):
    """Draw every row of ``X`` (and ``xbias``) from its conditional given ``Y``/``ybias``.

    ``Lam`` (K x K, upper triangle read) and ``Lmu`` (K) are the prior precision and
    precision times mean, K = k + 1 with biases (the bias last), k without (empty
    ``ybias``/``xbias``). ``row_sse``, if not empty, receives each row's sum of squared
    residuals under the new draw. Returns ``(first_row, code)``: ``(-1, 0)`` on success,
    else the first row whose precision was not positive definite (code 1); bad indices
    raise ``ValueError``.
    """
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, row, max_n = 0, n_bad, first = -1
    cdef Params p
    cdef unsigned char[::1] status
    cdef int64_t lo
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
    p.n_opposite = Y.shape[0]
    status = bytearray(max(n_rows, 1))
    with nogil:
        n_bad = _half_sweep(indptr, indices, values, Y, ybias, X, xbias, Lam, Lmu, &p,
                            max(max_n, 1), row_sse, &status[0], n_threads)
    if n_bad:
        for row in range(n_rows):
            if status[row] != ROW_OK:
                first = row
                break
        if status[first] == ROW_NO_MEMORY:
            raise MemoryError("could not allocate the sampler's scratch space "
                              f"({max_n} x {p.ld} per thread)")
        if status[first] == ROW_BAD_INDEX:
            raise ValueError(f"row {first} refers to an opposite row outside [0, {Y.shape[0]})")
        return first, int(status[first])
    return -1, 0
