# cython: language_level=3
"""ALS half-steps: solve every row of one side with the other side held fixed.

A half-step takes a block of rows in CSR form (``indptr`` may start anywhere inside
``indices``/``values``, so a shard of a larger matrix is just a slice of its ``indptr``), the
fixed opposite factors ``Y`` and biases ``ybias``, and writes the block's new rows into
``X``/``xbias``. For row u with ratings r_uj on opposite rows j (n_u of them) it minimises

    sum_j (t_uj - y_j . x_u - b_u)^2 + c_u (reg |x_u|^2 + reg_bias b_u^2 + prior |x_u - x0_u|^2)

with t_uj = r_uj - mu - ybias_j and c_u = n_u (weighted, ALS-WR) or 1. Without biases the
b_u term and ybias are absent. The solution satisfies the augmented normal equations

    [Y^T Y + c(reg+prior) I    Y^T 1      ] [x]   [Y^T t + c prior x0]
    [1^T Y                     n + c reg_b] [b] = [sum t             ]

solved exactly (Cholesky) or approximately by a few conjugate-gradient steps warm-started
from the current row (Takacs, Pilaszy and Tikk, "Applications of the conjugate gradient
method for implicit feedback collaborative filtering", RecSys 2011). A row without ratings
gets the minimiser of its penalty alone: x = prior / (reg + prior) x0 (zero without a
prior), b = 0.

Rows are independent: ``prange`` hands them out dynamically, and each thread reads the row's
opposite factor rows in place through its index list (_als_direct.h): a conjugate-gradient
step is one pass over them (each row's dot product and its share of Y^T s together, eight
rows at a time), and the Gram tiles sweep chunks of them copied into the thread's scratch (a
slice of the fit's :class:`RowScratch`) while the next chunk, and the next row's first
factor rows, are prefetched. The float32 Cholesky half-step hands rows out in groups of
eight and solves a group's systems together, one per vector lane (_als_batch.h), each with
the operations, in the order, the one-system kernel applies. Every sum inside a row is
taken in a fixed order, the order of
the gathered-block kernels of _als.h, so the result is bit-identical for any thread count on
each instruction-set path ``isa``, and the same bits as those kernels gave; the avx2 and
avx512 paths (fused multiply-adds) agree with each other and differ from the baseline in
the last bits (see _als.h).
"""
cimport cython
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memset

import numpy as np

from mfkit.models._rows cimport (check_isa, mf_als_ld, mf_als_prefetch, mf_rows_scratch,
                                 mf_rows_scratch_at, mf_rows_scratch_bytes, row_cholesky,
                                 MFKIT_ALS_BATCH, mf_als_batch_pays, mf_als_cholesky_batch_f32,
                                 mf_rows_batch_a, mf_rows_batch_bv, mf_rows_batch_v,
                                 mf_rows_batch_w_bytes,
                                 row_dot, row_gram_ptr, row_pass, row_rhs_ptr, scratch_base,
                                 first_bad_row)

cdef enum:
    SOLVER_CHOLESKY = 0
    SOLVER_CG = 1
    # row status codes
    ROW_OK = 0
    ROW_NOT_PD = 1
    ROW_BAD_INDEX = 2
    ROW_EMPTY = 3    # (internal: an empty row, solved while its system would be built)
    # ratings ahead whose factor rows are prefetched while gathering
    PREFETCH_AHEAD = 16
    # bytes of factor rows per Gram pass (stay in L1 while the tiles sweep them)
    GRAM_CHUNK_BYTES = 16384
    # most rows per Gram pass (the pass's row pointers sit on the stack)
    MAX_CHUNK = 256
    # factor rows of the next row prefetched while this one is solved
    NEXT_AHEAD = 64
    # a row whose factor rows take more bytes than this is prefetched on every CG pass
    LONG_ROW = 262144


cdef struct Params:
    int isa          # instruction-set path of the row kernels (_isa.h)
    int k            # factors
    int ld           # row stride of the gathered block (k rounded up to 16)
    int lda          # row stride of the normal matrix (k + 1 rounded up to 16)
    int biases
    int weighted
    int has_prior
    int want_sse
    int cg_steps
    int chunk        # rows per Gram pass
    double mu
    double reg
    double reg_bias
    double prior
    Py_ssize_t n_opposite


# --------------------------------------------------------------------------- row pieces
cdef inline void _copy(floating *dst, const floating *src, int k) noexcept nogil:
    # an inline loop: a memcpy call per factor row costs more than the copy itself
    cdef int f
    for f in range(k):
        dst[f] = src[f]


cdef void _empty_row(Py_ssize_t row, floating[:, ::1] X, floating[::1] xbias,
                     const floating[:, ::1] X0, const Params *p) noexcept nogil:
    cdef int f
    cdef floating w
    if p.has_prior and p.prior > 0:
        w = <floating>(p.prior / (p.reg + p.prior))
        for f in range(p.k):
            X[row, f] = w * X0[row, f]
    else:
        for f in range(p.k):
            X[row, f] = 0
    if p.biases:
        xbias[row] = 0


cdef int _check_row(Py_ssize_t start, Py_ssize_t n, const int32_t[::1] indices,
                    const floating[:, ::1] Y, const Params *p) noexcept nogil:
    """ROW_BAD_INDEX if an index of the row is outside Y, else ROW_OK; prefetches the
    factor rows the first pass reads first."""
    cdef Py_ssize_t jj
    cdef int32_t idx
    for jj in range(n):
        idx = indices[start + jj]
        if idx < 0 or idx >= p.n_opposite:
            return ROW_BAD_INDEX
    for jj in range(min(n, <Py_ssize_t>PREFETCH_AHEAD)):
        mf_als_prefetch(&Y[indices[start + jj], 0], p.k * <int>sizeof(floating), 1)
    return ROW_OK


cdef void _prefetch_next(Py_ssize_t row, const int64_t[::1] indptr, const int32_t[::1] indices,
                         const floating[:, ::1] Y, const Params *p) noexcept nogil:
    """Prefetch (into L2) the first factor rows of the next row, which this thread will
    likely solve next: their misses then overlap this row's arithmetic."""
    cdef Py_ssize_t jj, start, n
    cdef int32_t idx
    if row + 1 >= indptr.shape[0] - 1:
        return
    start = indptr[row + 1]
    n = min(<Py_ssize_t>(indptr[row + 2] - start), <Py_ssize_t>NEXT_AHEAD)
    for jj in range(n):
        idx = indices[start + jj]
        if 0 <= idx < p.n_opposite:
            mf_als_prefetch(&Y[idx, 0], p.k * <int>sizeof(floating), 0)


cdef inline floating *_ybias_ptr(const floating[::1] ybias, const Params *p) noexcept nogil:
    return <floating *>&ybias[0] if p.biases else NULL


cdef double _sse(Py_ssize_t start, Py_ssize_t n, const int32_t[::1] indices,
                 const float[::1] values, const floating[:, ::1] Y, const floating[::1] ybias,
                 const floating *x, floating xb, const Params *p,
                 floating *lines) noexcept nogil:
    """Sum of squared residuals of the row with its new values x (ld entries, only
    multiplied by the zero padding of the rows beyond k) and xb."""
    return row_pass(p.isa, &Y[0, 0], p.k, p.ld, &indices[start], &values[start], n,
                    <floating>p.mu, _ybias_ptr(ybias, p), x, xb, 1, <floating *>NULL,
                    <floating *>NULL, lines, n * p.k * <Py_ssize_t>sizeof(floating) > LONG_ROW)


cdef int _cholesky_build(Py_ssize_t row, const int64_t[::1] indptr,
                         const int32_t[::1] indices, const float[::1] values,
                         const floating[:, ::1] Y, const floating[::1] ybias,
                         floating[:, ::1] X, floating[::1] xbias, const floating[:, ::1] X0,
                         const Params *p, void *blk_, void *t_, void *A_,
                         void *v_) noexcept nogil:
    """Builds the row's augmented normal equations in A_ (lda x lda) and v_ (right-hand
    side, then the column sums): ROW_OK. An empty row is solved here (ROW_EMPTY); a row with
    a bad index is ROW_BAD_INDEX."""
    cdef Py_ssize_t start = indptr[row], n = indptr[row + 1] - indptr[row], c0, m, jj, j
    cdef int k = p.k, ld = p.ld, lda = p.lda, K = p.k + (1 if p.biases else 0), f, status
    cdef floating *blk = <floating *>blk_
    cdef floating *t = <floating *>t_
    cdef floating *A = <floating *>A_
    cdef floating *rhs = <floating *>v_
    cdef floating *colsum = rhs + lda
    cdef floating cw, dreg, st = 0
    cdef floating mu = <floating>p.mu
    cdef const floating *ptrs[MAX_CHUNK]
    cdef int32_t idx
    if n == 0:
        _empty_row(row, X, xbias, X0, p)
        return ROW_EMPTY
    status = _check_row(start, n, indices, Y, p)
    if status != ROW_OK:
        return status
    memset(A, 0, <size_t>max(K, ld) * lda * sizeof(floating))
    memset(rhs, 0, <size_t>(2 * lda) * sizeof(floating))
    # the Gram tiles and Y^T t chunk by chunk, the next chunk's rows prefetched into L2 by
    # the tiles meanwhile: rows of whole 16-float lines (k == ld; the factors are 64-byte
    # aligned) are read in place, the others copied into zero-padded lines of the scratch.
    # Either way the chunk stays in L1 while the tiles sweep it. (Reading in place once
    # stalled the multiply-adds on the misses; with the prefetch it is the faster way:
    # 10M ratings, k=64, one thread on a Zen 4 core, the Cholesky iteration 1.64-1.73 s ->
    # 1.46-1.63 s together with the diagonal-aligned AVX-512 tiles.)
    c0 = 0
    while c0 < n:
        m = min(<Py_ssize_t>p.chunk, n - c0)
        for jj in range(m):
            j = start + c0 + jj
            idx = indices[j]
            if k == ld:
                ptrs[jj] = &Y[idx, 0]
            else:
                _copy(blk + jj * ld, &Y[idx, 0], k)
                ptrs[jj] = blk + jj * ld
            if p.biases:
                t[c0 + jj] = (<floating>values[j] - mu) - ybias[idx]
            else:
                t[c0 + jj] = <floating>values[j]
            st = st + t[c0 + jj]
        # the next chunk's rows are prefetched by the tiles, a share per band of rows
        row_gram_ptr(p.isa, ptrs, m, ld, A, lda, &Y[0, 0], &indices[start] + c0 + m,
                     max(0, min(c0 + 2 * m, n) - (c0 + m)), k)
        row_rhs_ptr(p.isa, ptrs, m, ld, t + c0, rhs, colsum if p.biases else NULL)
        c0 += m
    cw = <floating>n if p.weighted else 1
    dreg = cw * <floating>(p.reg + p.prior)
    for f in range(k):
        A[f * lda + f] += dreg
    if p.has_prior and p.prior > 0:
        for f in range(k):
            rhs[f] += (cw * <floating>p.prior) * X0[row, f]
    if p.biases:
        # the bias column of the augmented system (only the upper triangle is read)
        for f in range(k):
            A[f * lda + k] = colsum[f]
        A[k * lda + k] = <floating>n + cw * <floating>p.reg_bias
        rhs[k] = st
    _prefetch_next(row, indptr, indices, Y, p)
    return ROW_OK


cdef void _cholesky_finish(Py_ssize_t row, const int64_t[::1] indptr,
                           const int32_t[::1] indices, const float[::1] values,
                           const floating[:, ::1] Y, const floating[::1] ybias,
                           floating[:, ::1] X, floating[::1] xbias, const Params *p,
                           const floating *x, void *blk_, double *sse) noexcept nogil:
    """Stores the row's solution x (the solved right-hand side) and its residual sum."""
    cdef Py_ssize_t start = indptr[row], n = indptr[row + 1] - indptr[row]
    cdef int f, k = p.k
    for f in range(k):
        X[row, f] = x[f]
    if p.biases:
        xbias[row] = x[k]
    if p.want_sse:
        sse[0] = _sse(start, n, indices, values, Y, ybias, x, x[k] if p.biases else 0, p,
                      <floating *>blk_)


cdef int _cholesky_row(Py_ssize_t row, const int64_t[::1] indptr, const int32_t[::1] indices,
                       const float[::1] values, const floating[:, ::1] Y,
                       const floating[::1] ybias, floating[:, ::1] X, floating[::1] xbias,
                       const floating[:, ::1] X0, const Params *p, void *blk_,
                       void *t_, void *A_, void *v_, double *sse) noexcept nogil:
    """One row built and solved on its own (float64, and float32 where batching does not
    pay: mf_als_batch_pays)."""
    cdef int status = _cholesky_build(row, indptr, indices, values, Y, ybias, X, xbias, X0,
                                      p, blk_, t_, A_, v_)
    sse[0] = 0.0
    if status == ROW_EMPTY:
        return ROW_OK
    if status != ROW_OK:
        return status
    if row_cholesky(p.isa, <floating *>A_, p.k + (1 if p.biases else 0), p.lda,
                    <floating *>v_) != 0:
        return ROW_NOT_PD
    _cholesky_finish(row, indptr, indices, values, Y, ybias, X, xbias, p, <floating *>v_,
                     blk_, sse)
    return ROW_OK


cdef Py_ssize_t _cholesky_batch(Py_ssize_t row0, Py_ssize_t row1, const int64_t[::1] indptr,
                                const int32_t[::1] indices, const float[::1] values,
                                const float[:, ::1] Y, const float[::1] ybias,
                                float[:, ::1] X, float[::1] xbias, const float[:, ::1] X0,
                                const Params *p, mf_rows_scratch *sc, double[::1] row_sse,
                                unsigned char *status) noexcept nogil:
    """Rows row0 .. row1 - 1 (at most MFKIT_ALS_BATCH): each system built in its own slot,
    then all solved together, one per vector lane (_als_batch.h: the bits of the
    one-system kernel). Returns the number of bad rows."""
    cdef float *As[MFKIT_ALS_BATCH]
    cdef float *bs[MFKIT_ALS_BATCH]
    cdef Py_ssize_t rows[MFKIT_ALS_BATCH]
    cdef int lane_status[MFKIT_ALS_BATCH]
    cdef int nsys = 0, code, ln
    cdef Py_ssize_t row, n_bad = 0
    cdef double sse
    for row in range(row0, row1):
        As[nsys] = <float *>mf_rows_batch_a(sc.batch, p.k, sizeof(float), nsys)
        bs[nsys] = <float *>mf_rows_batch_v(sc.batch, p.k, sizeof(float), nsys)
        code = _cholesky_build(row, indptr, indices, values, Y, ybias, X, xbias, X0, p,
                               sc.blk, sc.t, As[nsys], bs[nsys])
        if code == ROW_OK:
            rows[nsys] = row
            nsys += 1
            continue
        status[row] = <unsigned char>(ROW_OK if code == ROW_EMPTY else code)
        if p.want_sse:
            row_sse[row] = 0.0
        if code != ROW_EMPTY:
            n_bad += 1
    if nsys == 0:
        return n_bad
    mf_als_cholesky_batch_f32(p.isa, As, bs, nsys, p.k + (1 if p.biases else 0), p.lda,
                              sc.batch, mf_rows_batch_bv(sc.batch, p.k), lane_status)
    for ln in range(nsys):
        row = rows[ln]
        sse = 0.0
        if lane_status[ln] != 0:
            status[row] = ROW_NOT_PD
            n_bad += 1
        else:
            _cholesky_finish(row, indptr, indices, values, Y, ybias, X, xbias, p, bs[ln],
                             sc.blk, &sse)
            status[row] = ROW_OK
        if p.want_sse:
            row_sse[row] = sse
    return n_bad


cdef int _cg_row(Py_ssize_t row, const int64_t[::1] indptr, const int32_t[::1] indices,
                 const float[::1] values, const floating[:, ::1] Y, const floating[::1] ybias,
                 floating[:, ::1] X, floating[::1] xbias, const floating[:, ::1] X0,
                 const Params *p, void *blk_, void *v_, double *sse) noexcept nogil:
    cdef Py_ssize_t start = indptr[row], n = indptr[row + 1] - indptr[row]
    cdef int k = p.k, ld = p.ld, lda = p.lda, f, _step, status, pf
    cdef bint biases = p.biases, has_prior = p.has_prior and p.prior > 0
    cdef floating *lines = <floating *>blk_
    cdef floating *x = <floating *>v_
    cdef floating *r = x + lda
    cdef floating *d = r + lda
    cdef floating *ad = d + lda
    cdef floating xb = 0, rb = 0, db = 0, adb = 0
    cdef floating cw, dreg, dregb, cprior, rr, rr_new, dad, alpha, beta
    cdef const floating *Yp
    cdef const floating *yb
    cdef const int32_t *idx
    cdef const float *vals
    sse[0] = 0.0
    if n == 0:
        _empty_row(row, X, xbias, X0, p)
        return ROW_OK
    status = _check_row(start, n, indices, Y, p)
    if status != ROW_OK:
        return status
    Yp = &Y[0, 0]
    yb = _ybias_ptr(ybias, p)
    idx = &indices[start]
    vals = &values[start]
    # rows too long to stay in cache between passes are prefetched on every pass
    pf = n * k * <Py_ssize_t>sizeof(floating) > LONG_ROW
    cw = <floating>n if p.weighted else 1
    dreg = cw * <floating>(p.reg + p.prior)
    dregb = cw * <floating>p.reg_bias
    cprior = cw * <floating>p.prior
    for f in range(k):
        x[f] = X[row, f]
    if biases:
        xb = xbias[row]
    # r = b - A x = Y^T (t - Y x - xb) - dreg x + cprior x0   (and its bias entry)
    row_pass(p.isa, Yp, k, ld, idx, vals, n, <floating>p.mu, yb, x, xb, 1, r, &rb, lines, 1)
    for f in range(k):
        r[f] = r[f] - dreg * x[f]
    if has_prior:
        for f in range(k):
            r[f] = r[f] + cprior * X0[row, f]
    if biases:
        rb = rb - dregb * xb
    else:
        rb = 0
    for f in range(k):
        d[f] = r[f]
    db = rb
    rr = row_dot(r, r, k) + rb * rb
    _prefetch_next(row, indptr, indices, Y, p)
    for _step in range(p.cg_steps):
        if not (rr > 0):
            break
        # s = Y d + db and A d = Y^T s (+ sum s), one read of each factor row
        row_pass(p.isa, Yp, k, ld, idx, vals, n, 0, yb, d, db, 0, ad, &adb, lines, pf)
        for f in range(k):
            ad[f] = ad[f] + dreg * d[f]
        if biases:
            adb = adb + dregb * db
        else:
            adb = 0
        dad = row_dot(d, ad, k) + db * adb
        if not (dad > 0):
            break
        alpha = rr / dad
        for f in range(k):
            x[f] = x[f] + alpha * d[f]
            r[f] = r[f] - alpha * ad[f]
        xb = xb + alpha * db
        rb = rb - alpha * adb
        rr_new = row_dot(r, r, k) + rb * rb
        beta = rr_new / rr
        for f in range(k):
            d[f] = r[f] + beta * d[f]
        db = rb + beta * db
        rr = rr_new
    for f in range(k):
        X[row, f] = x[f]
    if biases:
        xbias[row] = xb
    if p.want_sse:
        sse[0] = _sse(start, n, indices, values, Y, ybias, x, xb, p, lines)
    return ROW_OK


# --------------------------------------------------------------------------- scratch
@cython.auto_pickle(False)
cdef class RowScratch:
    """Per-thread scratch of the row kernels (ALS, implicit ALS, Bayesian MF) for one fit.

    ``RowScratch(k, rows, itemsize, n_threads)`` holds, for each of ``n_threads`` threads,
    room for a row of up to ``rows`` entries with ``k`` factors of ``itemsize`` bytes (4 or
    8): the gathered opposite rows, targets, residuals, the normal matrix and small vectors
    (layout in _als.h). A fit makes one and passes it to every half-step, so no half-step
    allocates; a half-step given none makes its own. The buffer starts zeroed and the kernels
    keep the padding they rely on zero, so reusing it never changes a result.
    """
    cdef readonly int k
    cdef readonly int itemsize
    cdef readonly int n_threads
    cdef readonly Py_ssize_t rows
    cdef readonly object buffer

    def __init__(self, int k, Py_ssize_t rows, int itemsize, int n_threads):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if itemsize not in (4, 8):
            raise ValueError(f"itemsize must be 4 (float32) or 8 (float64), got {itemsize}")
        if n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")
        self.k, self.itemsize, self.n_threads = k, itemsize, n_threads
        self.rows = max(rows, 1)
        cdef size_t per = mf_rows_scratch_bytes(k, self.rows, itemsize)
        raw = np.zeros(per * n_threads + 64, dtype=np.uint8)
        off = (-raw.ctypes.data) % 64
        self.buffer = raw[off:off + per * n_threads]

    @property
    def nbytes(self):
        """Bytes of scratch for all threads."""
        return self.buffer.nbytes


def max_row_length(const int64_t[::1] indptr):
    """The largest ``indptr[r + 1] - indptr[r]`` (0 for no rows)."""
    cdef Py_ssize_t r, m = 0
    with nogil:
        for r in range(indptr.shape[0] - 1):
            m = max(m, <Py_ssize_t>(indptr[r + 1] - indptr[r]))
    return m


# --------------------------------------------------------------------------- the sweep
cdef Py_ssize_t _half_step(int solver, const int64_t[::1] indptr, const int32_t[::1] indices,
                           const float[::1] values, const floating[:, ::1] Y,
                           const floating[::1] ybias, floating[:, ::1] X, floating[::1] xbias,
                           const floating[:, ::1] X0, const Params *p, unsigned char *base,
                           size_t per_thread, int64_t rows, double[::1] row_sse,
                           unsigned char *status, int n_threads) noexcept nogil:
    """Solve every row; status[row] gets the row's code. Returns the number of bad rows."""
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, row, n_bad = 0
    cdef mf_rows_scratch sc
    cdef double sse
    cdef int code
    cdef Py_ssize_t group, n_groups = (n_rows + MFKIT_ALS_BATCH - 1) // MFKIT_ALS_BATCH
    if floating is float:
        if solver == SOLVER_CHOLESKY and mf_als_batch_pays(p.isa, p.k + (p.biases != 0)):
            # float32 Cholesky: the rows in groups of eight, each group's systems solved
            # together (a row's bits do not depend on the rows it is grouped with)
            with parallel(num_threads=n_threads):
                sc = mf_rows_scratch_at(base, threadid(), per_thread, p.k, rows,
                                        sizeof(floating))
                for group in prange(n_groups, schedule='dynamic', chunksize=1):
                    n_bad += _cholesky_batch(group * MFKIT_ALS_BATCH,
                                             min(n_rows, (group + 1) * MFKIT_ALS_BATCH),
                                             indptr, indices, values, Y, ybias, X, xbias,
                                             X0, p, &sc, row_sse, status)
            return n_bad
    with parallel(num_threads=n_threads):
        # this thread's slice of the fit's scratch, reused for every row it solves
        sc = mf_rows_scratch_at(base, threadid(), per_thread, p.k, rows, sizeof(floating))
        for row in prange(n_rows, schedule='dynamic', chunksize=2):
            sse = 0.0
            if solver == SOLVER_CHOLESKY:
                code = _cholesky_row(row, indptr, indices, values, Y, ybias, X, xbias, X0, p,
                                     sc.blk, sc.t, sc.A, sc.v, &sse)
            else:
                code = _cg_row(row, indptr, indices, values, Y, ybias, X, xbias, X0, p, sc.blk,
                               sc.v, &sse)
            status[row] = <unsigned char>code
            if p.want_sse:
                row_sse[row] = sse
            if code != ROW_OK:
                n_bad += 1
    return n_bad


cdef _run(int solver, const int64_t[::1] indptr, const int32_t[::1] indices,
          const float[::1] values, const floating[:, ::1] Y, const floating[::1] ybias,
          floating[:, ::1] X, floating[::1] xbias, const floating[:, ::1] X0,
          double mu, double reg, double reg_bias, double prior, bint weighted, int cg_steps,
          double[::1] row_sse, int n_threads, int isa, object scratch):
    """Checks shapes cheaply, solves, and reports (first bad row, its status code)."""
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, row, max_n = 0, n_bad
    cdef Params p
    cdef int64_t lo, hi
    cdef unsigned char[::1] status
    cdef unsigned char *base
    cdef size_t per_thread
    cdef int64_t rows
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
    p.has_prior = X0.shape[0] > 0
    if p.has_prior and (X0.shape[0] != X.shape[0] or X0.shape[1] != X.shape[1]):
        raise ValueError(f"prior rows must have the shape of X {tuple(X.shape)[:2]}")
    p.want_sse = row_sse.shape[0] > 0
    if p.want_sse and row_sse.shape[0] != n_rows:
        raise ValueError("row_sse must have one entry per row (or be empty)")
    if cg_steps < 0:
        raise ValueError(f"cg_steps must be >= 0, got {cg_steps}")
    if not (reg >= 0 and reg_bias >= 0 and prior >= 0):
        raise ValueError("regularization weights must be >= 0")
    if reg + prior <= 0:
        raise ValueError("regularization + prior_regularization must be > 0")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    with nogil:
        lo = indptr[0] if n_rows >= 0 else 0
        for row in range(n_rows):
            hi = indptr[row + 1]
            if hi < indptr[row]:
                lo = -1
                break
            if hi - indptr[row] > max_n:
                max_n = hi - indptr[row]
    if lo < 0 or indptr[n_rows] > indices.shape[0]:
        raise ValueError("indptr must be non-decreasing, start >= 0 and end within indices")
    p.k = <int>X.shape[1]
    p.ld = mf_als_ld(p.k)
    p.lda = mf_als_ld(p.k + 1)
    p.weighted = weighted
    p.cg_steps = cg_steps
    p.chunk = min(<int>MAX_CHUNK, max(8, GRAM_CHUNK_BYTES // (p.ld * <int>sizeof(floating))))
    p.mu = mu
    p.reg = reg
    p.reg_bias = reg_bias
    p.prior = prior
    p.n_opposite = Y.shape[0]
    check_isa(isa)
    p.isa = isa
    if scratch is None:
        scratch = RowScratch(p.k, max_n, sizeof(floating), n_threads)
    base = scratch_base(scratch, p.k, max_n, sizeof(floating), n_threads, &per_thread, &rows)
    status = bytearray(max(n_rows, 1))
    with nogil:
        n_bad = _half_step(solver, indptr, indices, values, Y, ybias, X, xbias, X0, &p, base,
                           per_thread, rows, row_sse, &status[0], n_threads)
    if n_bad:
        return first_bad_row(status, Y.shape[0])
    return -1, 0


def cholesky_half_step(const int64_t[::1] indptr, const int32_t[::1] indices,
                       const float[::1] values, const floating[:, ::1] Y,
                       const floating[::1] ybias, floating[:, ::1] X, floating[::1] xbias,
                       const floating[:, ::1] X0, double mu, double reg, double reg_bias,
                       double prior, bint weighted, double[::1] row_sse, int n_threads,
                       int isa=0, object scratch=None):
    """Exact half-step: each row's augmented normal equations solved by Cholesky.

    Empty ``ybias``/``xbias`` mean no biases; an empty ``X0`` means no prior; an empty
    ``row_sse`` skips the per-row residual sums. Returns ``(first_row, code)``: ``(-1, 0)``
    on success, else the first row whose system was not positive definite (code 1); bad
    indices raise ``ValueError``. ``isa`` is the instruction-set path (0 baseline, 1 avx2,
    2 avx512; see _als.h), ``scratch`` a :class:`RowScratch` to reuse (None: one is made).
    """
    return _run(SOLVER_CHOLESKY, indptr, indices, values, Y, ybias, X, xbias, X0, mu, reg,
                reg_bias, prior, weighted, 0, row_sse, n_threads, isa, scratch)


def cg_half_step(const int64_t[::1] indptr, const int32_t[::1] indices,
                 const float[::1] values, const floating[:, ::1] Y, const floating[::1] ybias,
                 floating[:, ::1] X, floating[::1] xbias, const floating[:, ::1] X0,
                 double mu, double reg, double reg_bias, double prior, bint weighted,
                 int cg_steps, double[::1] row_sse, int n_threads, int isa=0,
                 object scratch=None):
    """Inexact half-step: ``cg_steps`` conjugate-gradient steps per row, warm-started from
    the current ``X``/``xbias`` (read and overwritten). Arguments and result as in
    :func:`cholesky_half_step`."""
    return _run(SOLVER_CG, indptr, indices, values, Y, ybias, X, xbias, X0, mu, reg, reg_bias,
                prior, weighted, cg_steps, row_sse, n_threads, isa, scratch)


def solve_systems(float[:, :, ::1] A, float[:, ::1] b, int isa=0, bint batched=True):
    """Cholesky solves of the float32 systems ``A[s] x = b[s]`` (upper triangles read; ``b``
    overwritten by the solutions), eight at a time through the batched kernel of the
    Cholesky half-step, or one at a time through the one-system kernel
    (``batched=False``). Returns each system's status: 0, or j + 1 when its j-th pivot is not
    positive (its row of ``b`` is then left alone). For tests of the kernels."""
    cdef Py_ssize_t n = A.shape[0], g
    cdef int K = <int>A.shape[1], lda, ln, nsys
    if A.shape[2] != K or b.shape[0] != n or b.shape[1] != K:
        raise ValueError(f"A must be (n, K, K) and b (n, K), got {tuple(A.shape)[:3]} and "
                         f"{tuple(b.shape)[:2]}")
    if K < 1:
        raise ValueError("systems must have at least one unknown")
    check_isa(isa)
    lda = mf_als_ld(K)
    cdef object As_buf = np.zeros((MFKIT_ALS_BATCH, lda, lda), np.float32)
    cdef object bs_buf = np.zeros((MFKIT_ALS_BATCH, lda), np.float32)
    cdef object w_buf = np.zeros(mf_rows_batch_w_bytes(K - 1) // 4 + 16, np.float32)
    cdef float[:, :, ::1] As_v = As_buf
    cdef float[:, ::1] bs_v = bs_buf
    cdef float[::1] w_v = w_buf
    cdef float *As[MFKIT_ALS_BATCH]
    cdef float *bs[MFKIT_ALS_BATCH]
    cdef int st[MFKIT_ALS_BATCH]
    cdef size_t off = (-<size_t>&w_v[0]) % 64 // 4
    cdef float *W = &w_v[off]
    status = np.zeros(n, np.int32)
    cdef int[::1] st_v = status
    for ln in range(MFKIT_ALS_BATCH):
        As[ln] = &As_v[ln, 0, 0]
        bs[ln] = &bs_v[ln, 0]
    for g in range(0, n, MFKIT_ALS_BATCH):
        nsys = <int>min(<Py_ssize_t>MFKIT_ALS_BATCH, n - g)
        for ln in range(nsys):
            As_v[ln, :K, :K] = A[g + ln]
            bs_v[ln, :K] = b[g + ln]
        if batched:
            mf_als_cholesky_batch_f32(isa, As, bs, nsys, K, lda, W,
                                      mf_rows_batch_bv(W, K - 1), st)
        else:
            for ln in range(nsys):
                st[ln] = row_cholesky(isa, As[ln], K, lda, bs[ln])
        for ln in range(nsys):
            st_v[g + ln] = st[ln]
            if st[ln] == 0:
                b[g + ln, :] = bs_v[ln, :K]
    return status
