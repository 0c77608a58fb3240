# cython: language_level=3
"""Closed-form ridge solve of new users' factors against fixed item factors (fold-in).

For a user with ratings r_ui on items i in I_u, with x = [p_u, b_u] and a_i = [q_i, 1]
(biased model) or x = p_u and a_i = q_i (unbiased):

    (sum_i a_i a_i^T + diag(lam, ..., lam, lam_b)) x = sum_i (r_ui - mu - b_i) a_i

where lam (factors) and lam_b (the bias, last diagonal entry) are multiplied by |I_u| in
the weighted (ALS-WR) form. The normal equations are built and solved in double
precision with a Cholesky factorisation, one user per task.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc


cdef inline double _row_dot(const double *a, const double *b, Py_ssize_t n) noexcept nogil:
    cdef double s = 0.0
    cdef Py_ssize_t m
    for m in range(n):
        s += a[m] * b[m]
    return s


cdef int _cholesky_solve(double *A, double *b, Py_ssize_t d) noexcept nogil:
    """Solve A x = b for symmetric positive definite A (lower triangle used, overwritten
    by its Cholesky factor); x overwrites b. Returns 0, or -1 if A is not positive
    definite."""
    cdef Py_ssize_t i, j, m
    cdef double s
    for j in range(d):
        s = A[j * d + j]
        for m in range(j):
            s -= A[j * d + m] * A[j * d + m]
        if not (s > 0.0):
            return -1
        s = sqrt(s)
        A[j * d + j] = s
        for i in range(j + 1, d):
            A[i * d + j] -= _row_dot(&A[i * d], &A[j * d], j)
            A[i * d + j] /= s
    for i in range(d):  # L y = b
        b[i] = (b[i] - _row_dot(&A[i * d], b, i)) / A[i * d + i]
    i = d - 1
    while i >= 0:  # L^T x = y
        s = b[i]
        for m in range(i + 1, d):
            s -= A[m * d + i] * b[m]
        b[i] = s / A[i * d + i]
        i -= 1
    return 0


cdef int _solve_user(const floating[:, ::1] Q, const floating[::1] bi, double mu,
                     const int32_t *items, const float *ratings, Py_ssize_t n_r,
                     double lam, double lam_b, bint biased, bint weighted,
                     double *A, double *a, double *b, floating *p_out,
                     floating *bu_out) noexcept nogil:
    cdef Py_ssize_t k = Q.shape[1], d = k + 1 if biased else k, j, f, g
    cdef double t, scale
    cdef int32_t i
    for f in range(d * d):
        A[f] = 0.0
    for f in range(d):
        b[f] = 0.0
    for j in range(n_r):
        i = items[j]
        for f in range(k):
            a[f] = Q[i, f]
        if biased:
            a[k] = 1.0
            t = (<double>ratings[j] - mu) - <double>bi[i]
        else:
            t = ratings[j]
        for f in range(d):
            b[f] += t * a[f]
            for g in range(f + 1):
                A[f * d + g] += a[f] * a[g]
    scale = <double>n_r if weighted else 1.0
    for f in range(k):
        A[f * d + f] += lam * scale
    if biased:
        A[k * d + k] += lam_b * scale
    if _cholesky_solve(A, b, d) != 0:
        return -1
    for f in range(k):
        p_out[f] = <floating>b[f]
    bu_out[0] = <floating>b[k] if biased else 0
    return 0


def fold_in_users(const floating[:, ::1] Q, const floating[::1] bi, double mu,
                  const int64_t[::1] indptr, const int32_t[::1] indices,
                  const float[::1] ratings, double lam, double lam_b, bint biased,
                  bint weighted, floating[:, ::1] P_out, floating[::1] bu_out,
                  int n_threads):
    """Solve every CSR row's ridge system (module docstring) into ``P_out`` / ``bu_out``.

    Rows without ratings get zero factors and bias. Returns -1, or the first row whose
    system was not positive definite (only possible with zero regularization).
    """
    cdef Py_ssize_t n_users = indptr.shape[0] - 1, k = Q.shape[1], d, u, f
    cdef double *A
    cdef double *a
    cdef double *b
    if P_out.shape[0] != n_users or P_out.shape[1] != k or bu_out.shape[0] != n_users:
        raise ValueError("P_out / bu_out do not match the rows and factors")
    if biased and bi.shape[0] != Q.shape[0]:
        raise ValueError("bi must have one entry per item for a biased model")
    if (indptr[0] != 0 or indptr[n_users] != indices.shape[0]
            or ratings.shape[0] != indices.shape[0]):
        raise ValueError("malformed CSR rows")
    for u in range(indices.shape[0]):
        if indices[u] < 0 or indices[u] >= Q.shape[0]:
            raise ValueError(f"item index {indices[u]} is out of range")
    import numpy as np
    status_arr = np.zeros(n_users, dtype=np.int8)  # 1: not positive definite, 2: no memory
    cdef signed char[::1] status = status_arr
    d = k + 1 if biased else k
    with nogil, parallel(num_threads=n_threads):
        A = <double *> malloc(sizeof(double) * (d * d + 2 * d))
        a = A + d * d if A != NULL else NULL
        b = a + d if A != NULL else NULL
        try:
            for u in prange(n_users, schedule='dynamic', chunksize=16):
                if A == NULL:
                    status[u] = 2
                elif indptr[u + 1] == indptr[u]:
                    for f in range(k):
                        P_out[u, f] = 0
                    bu_out[u] = 0
                elif _solve_user(Q, bi, mu, &indices[indptr[u]], &ratings[indptr[u]],
                                 indptr[u + 1] - indptr[u], lam, lam_b, biased, weighted,
                                 A, a, b, &P_out[u, 0], &bu_out[u]) != 0:
                    status[u] = 1
        finally:
            free(A)
    if (status_arr == 2).any():
        raise MemoryError("fold_in: cannot allocate per-thread scratch")
    bad = np.flatnonzero(status_arr)
    return -1 if len(bad) == 0 else int(bad[0])
