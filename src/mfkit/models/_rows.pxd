# The row kernels of _als.h, shared by the ALS, implicit-feedback ALS and Bayesian half-steps:
# each dispatched over the instruction-set paths by its first argument `isa` (0 baseline,
# 1 avx2, 2 avx512, 3 neon: the baseline body on aarch64; see _als.h for which paths give
# which bits), typed wrappers over the
# float32 / float64 versions, and the per-thread scratch every half-step of a fit reuses.
from cython cimport floating
from libc.stdint cimport int32_t, int64_t

cdef extern from "_isa.h" nogil:
    int mfkit_isa_runs(int isa)

cdef extern from "_als.h" nogil:
    int mf_als_ld(int k)
    void *mf_als_alloc(size_t nbytes)
    void mf_als_free(void *p)
    void mf_prefetch_row_read(const void *p, int nbytes)
    float mf_als_dot_f32(const float *a, const float *b, int k)
    double mf_als_dot_f64(const double *a, const double *b, int k)
    void mf_als_gram_f32(int isa, const float *Y, int n, int ld, float *A, int lda)
    void mf_als_gram_f64(int isa, const double *Y, int n, int ld, double *A, int lda)
    void mf_als_dots_f32(int isa, const float *Y, int n, int ld, const float *v, float vb,
                         float *s)
    void mf_als_dots_f64(int isa, const double *Y, int n, int ld, const double *v, double vb,
                         double *s)
    float mf_als_rhs_f32(int isa, const float *Y, int n, int ld, const float *t, float *rhs,
                         float *colsum)
    double mf_als_rhs_f64(int isa, const double *Y, int n, int ld, const double *t,
                          double *rhs, double *colsum)
    double mf_als_residual_f32(int isa, const float *Y, int n, int ld, const float *t,
                               const float *x, float xb, float *e, float *g, float *gb)
    double mf_als_residual_f64(int isa, const double *Y, int n, int ld, const double *t,
                               const double *x, double xb, double *e, double *g, double *gb)
    void mf_als_matvec_f32(int isa, const float *Y, int n, int ld, const float *d, float db,
                           float *s, float *out, float *outb)
    void mf_als_matvec_f64(int isa, const double *Y, int n, int ld, const double *d,
                           double db, double *s, double *out, double *outb)
    void mf_als_sweep_f32(int isa, const float *Y, int n, int ld, const float *v,
                          const float *t, float *s, float *out)
    void mf_als_sweep_f64(int isa, const double *Y, int n, int ld, const double *v,
                          const double *t, double *s, double *out)
    int mf_als_cholesky_f32(int isa, float *A, int K, int lda, float *b)
    int mf_als_cholesky_f64(int isa, double *A, int K, int lda, double *b)

    ctypedef struct mf_rows_scratch:
        void *blk
        void *t
        void *e
        void *A
        void *v
        double *z
        void *batch
    size_t mf_rows_scratch_bytes(int k, int64_t max_n, int itemsize)
    size_t mf_rows_batch_w_bytes(int k)
    void *mf_rows_batch_a(void *batch, int k, int itemsize, int s)
    void *mf_rows_batch_v(void *batch, int k, int itemsize, int s)
    void *mf_rows_batch_bv(void *batch, int k)
    mf_rows_scratch mf_rows_scratch_at(void *base, int tid, size_t per_thread, int k,
                                       int64_t max_n, int itemsize)


cdef extern from "_als_batch.h" nogil:
    enum: MFKIT_ALS_BATCH
    int mf_als_batch_pays(int isa, int K)
    void mf_als_cholesky_batch_f32(int isa, float *const *As, float *const *bs, int nsys,
                                   int K, int lda, void *W, void *Bv, int *status)


cdef extern from "_als_direct.h" nogil:
    void mf_als_prefetch(const void *p, int nbytes, int near)
    double mf_als_pass_f32(int isa, const float *Y, int k, int ld, const int32_t *idx,
                           const float *r, int n, float mu, const float *yb, const float *v,
                           float vb, int residual, float *out, float *outb, float *lines,
                           int pf)
    double mf_als_pass_f64(int isa, const double *Y, int k, int ld, const int32_t *idx,
                           const float *r, int n, double mu, const double *yb,
                           const double *v, double vb, int residual, double *out,
                           double *outb, double *lines, int pf)
    void mf_als_gram_ptr_f32(int isa, const float *const *rows, int n, int ld, float *A,
                             int lda, const float *Y, const int32_t *pf, int npf, int k)
    void mf_als_gram_ptr_f64(int isa, const double *const *rows, int n, int ld, double *A,
                             int lda, const double *Y, const int32_t *pf, int npf, int k)
    void mf_als_rhs_ptr_f32(int isa, const float *const *rows, int n, int ld, const float *t,
                            float *rhs, float *colsum)
    void mf_als_rhs_ptr_f64(int isa, const double *const *rows, int n, int ld,
                            const double *t, double *rhs, double *colsum)


cdef inline floating row_dot(const floating *a, const floating *b, int k) noexcept nogil:
    if floating is float:
        return mf_als_dot_f32(a, b, k)
    else:
        return mf_als_dot_f64(a, b, k)


cdef inline void row_gram(int isa, const floating *Y, Py_ssize_t n, int ld, floating *A,
                          int lda, int chunk) noexcept nogil:
    """A += Y^T Y (upper block triangle) in passes of ``chunk`` rows (same bits as one)."""
    cdef Py_ssize_t c0 = 0, m
    while c0 < n:
        m = min(<Py_ssize_t>chunk, n - c0)
        if floating is float:
            mf_als_gram_f32(isa, Y + c0 * ld, <int>m, ld, A, lda)
        else:
            mf_als_gram_f64(isa, Y + c0 * ld, <int>m, ld, A, lda)
        c0 += m


cdef inline void row_dots(int isa, const floating *Y, Py_ssize_t n, int ld, const floating *v,
                          floating vb, floating *s) noexcept nogil:
    if floating is float:
        mf_als_dots_f32(isa, Y, <int>n, ld, v, vb, s)
    else:
        mf_als_dots_f64(isa, Y, <int>n, ld, v, vb, s)


cdef inline floating row_rhs(int isa, const floating *Y, Py_ssize_t n, int ld,
                             const floating *t, floating *rhs,
                             floating *colsum) noexcept nogil:
    if floating is float:
        return mf_als_rhs_f32(isa, Y, <int>n, ld, t, rhs, colsum)
    else:
        return mf_als_rhs_f64(isa, Y, <int>n, ld, t, rhs, colsum)


cdef inline double row_residual(int isa, const floating *Y, Py_ssize_t n, int ld,
                                const floating *t, const floating *x, floating xb,
                                floating *e, floating *g, floating *gb) noexcept nogil:
    if floating is float:
        return mf_als_residual_f32(isa, Y, <int>n, ld, t, x, xb, e, g, gb)
    else:
        return mf_als_residual_f64(isa, Y, <int>n, ld, t, x, xb, e, g, gb)


cdef inline void row_matvec(int isa, const floating *Y, Py_ssize_t n, int ld,
                            const floating *d, floating db, floating *s, floating *out,
                            floating *outb) noexcept nogil:
    if floating is float:
        mf_als_matvec_f32(isa, Y, <int>n, ld, d, db, s, out, outb)
    else:
        mf_als_matvec_f64(isa, Y, <int>n, ld, d, db, s, out, outb)


cdef inline void row_sweep(int isa, const floating *Y, Py_ssize_t n, int ld,
                           const floating *v, const floating *t, floating *s,
                           floating *out) noexcept nogil:
    """s = Y v (t - Y v with t) and out = Y^T s in one pass over Y (see _als.h)."""
    if floating is float:
        mf_als_sweep_f32(isa, Y, <int>n, ld, v, t, s, out)
    else:
        mf_als_sweep_f64(isa, Y, <int>n, ld, v, t, s, out)


cdef inline double row_pass(int isa, const floating *Y, int k, int ld, const int32_t *idx,
                            const float *r, Py_ssize_t n, floating mu, const floating *yb,
                            const floating *v, floating vb, int residual, floating *out,
                            floating *outb, floating *lines, int pf) noexcept nogil:
    """One read of a row's factor rows in place (see _als_direct.h)."""
    if floating is float:
        return mf_als_pass_f32(isa, Y, k, ld, idx, r, <int>n, mu, yb, v, vb, residual, out,
                               outb, lines, pf)
    else:
        return mf_als_pass_f64(isa, Y, k, ld, idx, r, <int>n, mu, yb, v, vb, residual, out,
                               outb, lines, pf)


cdef inline void row_gram_ptr(int isa, const floating **rows, Py_ssize_t n, int ld,
                              floating *A, int lda, const floating *Y, const int32_t *pf,
                              Py_ssize_t npf, int k) noexcept nogil:
    if floating is float:
        mf_als_gram_ptr_f32(isa, rows, <int>n, ld, A, lda, Y, pf, <int>npf, k)
    else:
        mf_als_gram_ptr_f64(isa, rows, <int>n, ld, A, lda, Y, pf, <int>npf, k)


cdef inline void row_rhs_ptr(int isa, const floating **rows, Py_ssize_t n, int ld,
                             const floating *t, floating *rhs,
                             floating *colsum) noexcept nogil:
    if floating is float:
        mf_als_rhs_ptr_f32(isa, rows, <int>n, ld, t, rhs, colsum)
    else:
        mf_als_rhs_ptr_f64(isa, rows, <int>n, ld, t, rhs, colsum)


cdef inline int row_cholesky(int isa, floating *A, int K, int lda, floating *b) noexcept nogil:
    if floating is float:
        return mf_als_cholesky_f32(isa, A, K, lda, b)
    else:
        return mf_als_cholesky_f64(isa, A, K, lda, b)


cdef inline unsigned char *scratch_base(object scratch, int k, Py_ssize_t max_n, int itemsize,
                                        int n_threads, size_t *per_thread,
                                        int64_t *rows) except NULL:
    """The start of a RowScratch (mfkit.models._als) buffer checked against a half-step:
    its factors, dtype size and thread count must match and its rows cover ``max_n``."""
    cdef unsigned char[::1] buf
    if scratch.k != k or scratch.itemsize != itemsize:
        raise ValueError(f"scratch was made for k={scratch.k}, itemsize {scratch.itemsize}; "
                         f"this half-step has k={k}, itemsize {itemsize}")
    if scratch.rows < max_n or scratch.n_threads < n_threads:
        raise ValueError(f"scratch holds rows of {scratch.rows} entries for "
                         f"{scratch.n_threads} threads; this half-step needs {max_n} and "
                         f"{n_threads}: make it with RowScratch(k, rows, itemsize, n_threads)")
    per_thread[0] = mf_rows_scratch_bytes(k, scratch.rows, itemsize)
    rows[0] = scratch.rows
    buf = scratch.buffer
    if <size_t>buf.shape[0] < per_thread[0] * <size_t>n_threads or \
            (<size_t>&buf[0]) % 64 != 0:
        raise ValueError("scratch buffer is too small or not 64-byte aligned")
    return &buf[0]


cdef inline int check_isa(int isa) except -1:
    """ValueError unless ``isa`` is a path this CPU runs (a wrong one would crash)."""
    if not mfkit_isa_runs(isa):
        runs = [j for j in range(4) if mfkit_isa_runs(j)]
        raise ValueError(f"isa={isa} is not a kernel path this CPU offers (one of {runs}); "
                         "pass mfkit._core.isa.isa_level()")
    return 0


cdef inline tuple first_bad_row(const unsigned char[::1] status, Py_ssize_t n_opposite):
    """(row, status) of the first row a half-step could not solve, after a kernel reported
    failures in ``status`` (the row codes of the row models: 0 solved, 1 not positive
    definite, 2 an opposite index outside [0, n_opposite), which is a ValueError)."""
    cdef Py_ssize_t row
    for row in range(status.shape[0]):
        if status[row] != 0:
            if status[row] == 2:
                raise ValueError(f"row {row} refers to an opposite row outside [0, {n_opposite})")
            return row, int(status[row])
    return -1, 0
