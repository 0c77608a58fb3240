# cython: language_level=3
"""Implicit-feedback ALS half-steps (Hu, Koren and Volinsky 2008) on the dense ALS kernels.

Row u (a user, or an item in the item half-step) has observed entries j with values v_j > 0,
confidence c_j = 1 + alpha v_j and preference 1; every other opposite row has confidence 1
and preference 0. With the opposite factors Y fixed its new row minimises

    sum_i c_ui (p_ui - y_i . x)^2 + reg |x|^2,

whose normal equations are

    (G + reg I + sum_j (c_j - 1) y_j y_j^T) x = sum_j c_j y_j,        G = Y^T Y.

The Gramian G is shared by every row of the half-step: :func:`gramian` forms it once, in
parallel over fixed blocks of rows whose partial sums are added in block order, so its bits
do not depend on the thread count. Each row then adds only its observed entries. The row
gathers w_j y_j with w_j = sqrt(c_j - 1) = sqrt(alpha v_j) into a contiguous block B and
the targets t_j = c_j / w_j, so that B^T B = sum_j (c_j - 1) y_j y_j^T and B^T t =
sum_j c_j y_j: the Gram tiles, right-hand side, dot products and Cholesky solve of the
explicit ALS kernels (_als.h) then serve unchanged, and CG's products B^T (t - B x) and
B^T (B d) take one sweep over B each (mf_als_sweep, beside them in _als.h). The exact solver
forms the k x k matrix and solves it by Cholesky, O(n_u k^2 + k^3) per row; conjugate
gradient (Takacs, Pilaszy and Tikk, RecSys 2011), warm-started from the current row, applies
it as G d + B^T (B d) + reg d, O(n_u k + k^2) per step.

Every sum inside a row is taken in an order fixed by the source (see _als.h), and rows are
independent, so a half-step is bit-identical for any thread count.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport sqrt
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy

from mfkit.models._als import RowScratch

from mfkit.models._rows cimport (check_isa, mf_als_alloc, mf_als_free, mf_als_ld,
                                 mf_prefetch_row_read, mf_rows_scratch, mf_rows_scratch_at,
                                 row_cholesky, row_dot, row_dots, row_gram, row_rhs, row_sweep,
                                 scratch_base, first_bad_row)

cdef enum:
    SOLVER_CHOLESKY = 0
    SOLVER_CG = 1
    ROW_OK = 0
    ROW_NOT_PD = 1
    ROW_BAD_INDEX = 2
    PREFETCH_AHEAD = 16
    # bytes of gathered rows per Gram pass (stays in L1 while the tiles sweep it)
    GRAM_CHUNK_BYTES = 32768
    # the Gramian's partial sums: at most this many blocks of at least GRAMIAN_MIN_ROWS rows
    GRAMIAN_BLOCKS = 64
    GRAMIAN_MIN_ROWS = 256


cdef struct Params:
    int isa          # instruction-set path of the row kernels (_isa.h)
    int k            # factors
    int ld           # row stride of gathered blocks, of G and of the normal matrix
    int cg_steps
    int chunk        # rows per Gram pass
    int want_loss
    double alpha
    double reg
    Py_ssize_t n_opposite


# --------------------------------------------------------------------------- the Gramian
cdef void _gramian_block(int isa, const floating[:, ::1] Y, Py_ssize_t lo, Py_ssize_t hi,
                         int ld, int chunk, floating *buf, floating *out) noexcept nogil:
    """out += Y[lo:hi]^T Y[lo:hi] (upper block triangle), a pass of ``chunk`` rows at a
    time copied into the padded layout the Gram tiles read."""
    cdef Py_ssize_t c0 = lo, m, i
    cdef int k = <int>Y.shape[1]
    while c0 < hi:
        m = min(<Py_ssize_t>chunk, hi - c0)
        for i in range(m):
            memcpy(buf + i * ld, &Y[c0 + i, 0], k * sizeof(floating))
        row_gram(isa, buf, m, ld, out, ld, chunk)
        c0 += m


cdef int _gramian(int isa, const floating[:, ::1] Y, floating *G, int ld,
                  int n_threads) noexcept nogil:
    """G (ld x ld, zero padded, both triangles) = Y^T Y. Returns 0, or 1 without memory."""
    cdef Py_ssize_t n = Y.shape[0], rows, n_blocks, b
    cdef int chunk = max(8, GRAM_CHUNK_BYTES // (ld * <int>sizeof(floating)))
    cdef int r, c, failed = 0
    cdef int *fail = &failed  # written through a pointer: shared, not lastprivate, in prange
    cdef size_t sq = <size_t>ld * ld
    cdef floating *parts
    cdef floating *buf = NULL
    cdef floating acc
    rows = max(<Py_ssize_t>GRAMIAN_MIN_ROWS, (n + GRAMIAN_BLOCKS - 1) // GRAMIAN_BLOCKS)
    n_blocks = max(<Py_ssize_t>1, (n + rows - 1) // rows)
    parts = <floating *>mf_als_alloc(<size_t>n_blocks * sq * sizeof(floating))
    if parts == NULL:
        return 1
    with parallel(num_threads=n_threads):
        buf = <floating *>mf_als_alloc(<size_t>chunk * ld * sizeof(floating))
        for b in prange(n_blocks, schedule='dynamic', chunksize=1):
            if buf == NULL:
                fail[0] = 1
            else:
                _gramian_block(isa, Y, b * rows, min(n, (b + 1) * rows), ld, chunk, buf,
                               parts + b * sq)
        mf_als_free(buf)
    if failed:
        mf_als_free(parts)
        return 1
    # block sums in block order, then the lower triangle mirrored from the upper one
    for r in prange(ld, num_threads=n_threads, schedule='static'):
        for c in range(r, ld):
            acc = 0
            for b in range(n_blocks):
                acc = acc + parts[b * sq + <size_t>r * ld + c]
            G[<size_t>r * ld + c] = acc
            G[<size_t>c * ld + r] = acc
    mf_als_free(parts)
    return 0


def gramian(const floating[:, ::1] Y, floating[:, ::1] G, int n_threads, int isa=0):
    """Write ``Y^T Y`` into ``G`` (``(ld, ld)`` with ``ld`` = k rounded up to 16, padding
    zero, both triangles), summed over fixed row blocks in block order, on the
    instruction-set path ``isa`` (0 baseline, 1 avx2, 2 avx512)."""
    cdef int ld = mf_als_ld(<int>Y.shape[1]), status
    if G.shape[0] != ld or G.shape[1] != ld:
        raise ValueError(f"G must have shape ({ld}, {ld}) for k={Y.shape[1]}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    check_isa(isa)
    with nogil:
        status = _gramian(isa, Y, &G[0, 0], ld, n_threads)
    if status:
        raise MemoryError("could not allocate the Gramian's partial sums")


def ld_of(int k):
    """Row stride of the kernels' padded k-vectors (k rounded up to 16)."""
    return mf_als_ld(k)


# --------------------------------------------------------------------------- one row
cdef int _gather(Py_ssize_t start, Py_ssize_t n, const int32_t[::1] indices,
                 const float[::1] values, const floating[:, ::1] Y, const Params *p,
                 floating *blk, floating *t) noexcept nogil:
    """blk[j] = sqrt(alpha v_j) y_j (n x ld) and t[j] = (1 + alpha v_j) / sqrt(alpha v_j)."""
    cdef Py_ssize_t jj, ahead
    cdef int32_t idx
    cdef int k = p.k, ld = p.ld, f
    cdef floating av, w
    cdef floating alpha = <floating>p.alpha
    cdef floating *dst
    cdef const floating *src
    for jj in range(n):
        ahead = jj + PREFETCH_AHEAD
        if ahead < n:
            idx = indices[start + ahead]
            if 0 <= idx < p.n_opposite:
                mf_prefetch_row_read(&Y[idx, 0], <int>(k * sizeof(floating)))
        idx = indices[start + jj]
        if idx < 0 or idx >= p.n_opposite:
            return ROW_BAD_INDEX
        av = alpha * <floating>values[start + jj]
        w = sqrt(av)
        dst = blk + jj * ld
        src = &Y[idx, 0]
        for f in range(k):
            dst[f] = w * src[f]
        t[jj] = (1 + av) / w
    return ROW_OK


cdef double _row_loss(Py_ssize_t start, Py_ssize_t n, const float[::1] values,
                      const floating *x, const floating *G, const Params *p,
                      const floating *blk, const floating *t, floating *u,
                      floating *gx) noexcept nogil:
    """The row's share of the objective with its new x: x^T G x + reg |x|^2 plus, per
    observed entry, c_j (1 - s_j)^2 - s_j^2 = c_j - 2 t_j u_j + u_j^2 with u_j = w_j s_j."""
    cdef double loss = 0.0, c
    cdef Py_ssize_t jj
    cdef floating alpha = <floating>p.alpha
    row_dots(p.isa, blk, n, p.ld, x, 0, u)
    for jj in range(n):
        c = <double>(1 + alpha * <floating>values[start + jj])
        loss += c - 2.0 * <double>t[jj] * <double>u[jj] + <double>u[jj] * <double>u[jj]
    row_dots(p.isa, G, p.k, p.ld, x, 0, gx)
    loss += <double>row_dot(gx, x, p.k) + p.reg * <double>row_dot(x, x, p.k)
    return loss


cdef int _cholesky_row(Py_ssize_t row, const int64_t[::1] indptr, const int32_t[::1] indices,
                       const float[::1] values, const floating[:, ::1] Y, floating[:, ::1] X,
                       const floating *G, const Params *p, floating *blk, floating *t,
                       floating *e, floating *A, floating *v, double *loss) noexcept nogil:
    cdef Py_ssize_t start = indptr[row], n = indptr[row + 1] - indptr[row]
    cdef int k = p.k, ld = p.ld, f, status
    cdef floating *rhs = v
    cdef floating *gx = v + ld
    cdef floating reg = <floating>p.reg
    status = _gather(start, n, indices, values, Y, p, blk, t)
    if status != ROW_OK:
        return status
    memcpy(A, G, <size_t>ld * ld * sizeof(floating))
    for f in range(k):
        A[f * ld + f] += reg
    row_gram(p.isa, blk, n, ld, A, ld, p.chunk)
    row_rhs(p.isa, blk, n, ld, t, rhs, <floating *>NULL)
    status = row_cholesky(p.isa, A, k, ld, rhs)
    if status != 0:
        return ROW_NOT_PD
    for f in range(k, ld):
        rhs[f] = 0
    for f in range(k):
        X[row, f] = rhs[f]
    if p.want_loss:
        loss[0] = _row_loss(start, n, values, rhs, G, p, blk, t, e, gx)
    return ROW_OK


cdef int _cg_row(Py_ssize_t row, const int64_t[::1] indptr, const int32_t[::1] indices,
                 const float[::1] values, const floating[:, ::1] Y, floating[:, ::1] X,
                 const floating *G, const Params *p, floating *blk, floating *t,
                 floating *e, floating *v, double *loss) noexcept nogil:
    cdef Py_ssize_t start = indptr[row], n = indptr[row + 1] - indptr[row]
    cdef int k = p.k, ld = p.ld, f, _step, status
    cdef floating *x = v
    cdef floating *r = x + ld
    cdef floating *d = r + ld
    cdef floating *ad = d + ld
    cdef floating *gd = ad + ld
    cdef floating reg = <floating>p.reg, rr, rr_new, dad, step, beta
    status = _gather(start, n, indices, values, Y, p, blk, t)
    if status != ROW_OK:
        return status
    for f in range(k):
        x[f] = X[row, f]
    # r = b - A x = B^T (t - B x) - G x - reg x
    row_sweep(p.isa, blk, n, ld, x, t, e, r)
    row_dots(p.isa, G, k, ld, x, 0, gd)
    for f in range(k):
        r[f] = r[f] - gd[f] - reg * x[f]
        d[f] = r[f]
    rr = row_dot(r, r, k)
    for _step in range(p.cg_steps):
        if not (rr > 0):
            break
        row_sweep(p.isa, blk, n, ld, d, <floating *>NULL, e, ad)
        row_dots(p.isa, G, k, ld, d, 0, gd)
        for f in range(k):
            ad[f] = ad[f] + gd[f] + reg * d[f]
        dad = row_dot(d, ad, k)
        if not (dad > 0):
            break
        step = rr / dad
        for f in range(k):
            x[f] = x[f] + step * d[f]
            r[f] = r[f] - step * ad[f]
        rr_new = row_dot(r, r, k)
        beta = rr_new / rr
        for f in range(k):
            d[f] = r[f] + beta * d[f]
        rr = rr_new
    for f in range(k):
        X[row, f] = x[f]
    if p.want_loss:
        loss[0] = _row_loss(start, n, values, x, G, p, blk, t, e, gd)
    return ROW_OK


# --------------------------------------------------------------------------- the sweep
cdef Py_ssize_t _half_step(int solver, const int64_t[::1] indptr, const int32_t[::1] indices,
                           const float[::1] values, const floating[:, ::1] Y,
                           floating[:, ::1] X, const floating *G, const Params *p,
                           unsigned char *base, size_t per_thread, int64_t rows,
                           double[::1] row_loss, unsigned char *status,
                           int n_threads) noexcept nogil:
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, row, n_bad = 0
    cdef mf_rows_scratch sc
    cdef double loss
    cdef int code, f
    with parallel(num_threads=n_threads):
        # this thread's slice of the fit's scratch (RowScratch), reused for every row
        sc = mf_rows_scratch_at(base, threadid(), per_thread, p.k, rows, sizeof(floating))
        for row in prange(n_rows, schedule='dynamic', chunksize=4):
            loss = 0.0
            if indptr[row + 1] == indptr[row]:
                # nothing observed: the minimiser of x^T (G + reg I) x is 0
                for f in range(p.k):
                    X[row, f] = 0
                code = ROW_OK
            elif solver == SOLVER_CHOLESKY:
                code = _cholesky_row(row, indptr, indices, values, Y, X, G, p,
                                     <floating *>sc.blk, <floating *>sc.t, <floating *>sc.e,
                                     <floating *>sc.A, <floating *>sc.v, &loss)
            else:
                code = _cg_row(row, indptr, indices, values, Y, X, G, p, <floating *>sc.blk,
                               <floating *>sc.t, <floating *>sc.e, <floating *>sc.v, &loss)
            status[row] = <unsigned char>code
            if p.want_loss:
                row_loss[row] = loss
            if code != ROW_OK:
                n_bad += 1
    return n_bad


def half_step(int solver, const int64_t[::1] indptr, const int32_t[::1] indices,
              const float[::1] values, const floating[:, ::1] Y, floating[:, ::1] X,
              const floating[:, ::1] G, double alpha, double reg, int cg_steps,
              double[::1] row_loss, int n_threads, int isa=0, object scratch=None):
    """Solve every row of ``X`` (CSR ``indptr``/``indices``/``values`` over the rows of
    ``Y``) with ``Y`` and its Gramian ``G`` (from :func:`gramian`) fixed. ``solver`` 0 is
    Cholesky, 1 is ``cg_steps`` conjugate-gradient steps from the current ``X``. A
    non-empty ``row_loss`` receives each row's share of the objective (see _row_loss).
    Returns ``(first_bad_row, code)``, ``(-1, 0)`` on success; code 1: not positive
    definite. Bad indices raise ``ValueError``. ``isa`` is the instruction-set path (0
    baseline, 1 avx2, 2 avx512), ``scratch`` a ``RowScratch`` to reuse (None: one is made)."""
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, row, max_n = 0, n_bad
    cdef Params p
    cdef int64_t lo = 0
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
    p.k = <int>X.shape[1]
    p.ld = mf_als_ld(p.k)
    if G.shape[0] != p.ld or G.shape[1] != p.ld:
        raise ValueError(f"G must have shape ({p.ld}, {p.ld}) for k={p.k}")
    if indices.shape[0] != values.shape[0]:
        raise ValueError("indices and values must have the same length")
    if solver != SOLVER_CHOLESKY and solver != SOLVER_CG:
        raise ValueError(f"solver must be 0 (Cholesky) or 1 (CG), got {solver}")
    if cg_steps < 0:
        raise ValueError(f"cg_steps must be >= 0, got {cg_steps}")
    if not (alpha > 0) or not (reg >= 0):
        raise ValueError("alpha must be > 0 and reg >= 0")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    p.want_loss = row_loss.shape[0] > 0
    if p.want_loss and row_loss.shape[0] != n_rows:
        raise ValueError("row_loss must have one entry per row (or be empty)")
    with nogil:
        lo = indptr[0]
        for row in range(n_rows):
            if indptr[row + 1] < indptr[row]:
                lo = -1
                break
            max_n = max(max_n, indptr[row + 1] - indptr[row])
    if lo < 0 or indptr[n_rows] > indices.shape[0]:
        raise ValueError("indptr must be non-decreasing, start >= 0 and end within indices")
    p.cg_steps = cg_steps
    p.chunk = max(8, GRAM_CHUNK_BYTES // (p.ld * <int>sizeof(floating)))
    p.alpha = alpha
    p.reg = reg
    p.n_opposite = Y.shape[0]
    check_isa(isa)
    p.isa = isa
    if scratch is None:
        scratch = RowScratch(p.k, max_n, sizeof(floating), n_threads)
    base = scratch_base(scratch, p.k, max_n, sizeof(floating), n_threads, &per_thread, &rows)
    status = bytearray(max(n_rows, 1))
    with nogil:
        n_bad = _half_step(solver, indptr, indices, values, Y, X, &G[0, 0], &p, base,
                           per_thread, rows, row_loss, &status[0], n_threads)
    if n_bad:
        return first_bad_row(status, Y.shape[0])
    return -1, 0
