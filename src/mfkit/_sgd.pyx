# cython: language_level=3
"""Serial SGD epoch for biased matrix factorization (Funk SVD; Koren, Bell, Volinsky 2009).

Ratings come as packed records (user, item, rating) visited in storage order; shuffling
permutes the records themselves, so an epoch streams through memory and only the factor
rows are accessed at random (and prefetched a few ratings ahead). For each record:

    e    = r - (mu + b_u + b_i + p_u . q_i)
    b_u += lr (e - reg_bias b_u)
    b_i += lr (e - reg_bias b_i)
    p_u += lr (e q_i - reg p_u - prior (p_u - p0_u))
    q_i += lr (e p_u - reg q_i - prior (q_i - q0_i))      (old p_u, q_i on the right)
"""
from cython cimport floating
from libc.math cimport fabs
from libc.stdint cimport int32_t, uint64_t

from mfkit._common cimport bounded
from mfkit._simd cimport (mf_dot_f32, mf_dot_f64, mf_sgd_pair_f32, mf_sgd_pair_f64,
                          mf_sgd_pair_prior_f32, mf_sgd_pair_prior_f64, mf_prefetch_row)

cdef packed struct Rating:
    int32_t u
    int32_t i
    float r

cdef enum:
    PREFETCH_AHEAD = 8


cdef Py_ssize_t _epoch(const Rating[::1] recs,
                       floating[:, ::1] P, floating[:, ::1] Q, floating[::1] bu, floating[::1] bi,
                       floating mu, floating lr, floating reg, floating reg_bias, bint biases,
                       const floating[:, ::1] P0, const floating[:, ::1] Q0, floating prior,
                       bint has_prior, double *sse_out) noexcept nogil:
    """Returns -1 on success, else the position of the first rating whose residual was not
    finite (the factors up to that rating have been updated)."""
    cdef Py_ssize_t n = recs.shape[0], t, ahead
    cdef int k = P.shape[1]
    cdef int row_bytes = k * sizeof(floating)
    cdef int32_t u, i
    cdef floating pred, e, b
    cdef floating *p
    cdef floating *q
    cdef double sse = 0.0
    cdef Py_ssize_t bad = -1
    for t in range(n):
        ahead = t + PREFETCH_AHEAD
        if ahead < n:
            mf_prefetch_row(&P[recs[ahead].u, 0], row_bytes)
            mf_prefetch_row(&Q[recs[ahead].i, 0], row_bytes)
        u = recs[t].u
        i = recs[t].i
        p = &P[u, 0]
        q = &Q[i, 0]
        if floating is float:
            pred = mu + mf_dot_f32(p, q, k)
        else:
            pred = mu + mf_dot_f64(p, q, k)
        if biases:
            pred = pred + bu[u] + bi[i]
        e = <floating>recs[t].r - pred
        if not (fabs(e) < 1e30):
            bad = t
            break
        sse += <double>e * e
        if biases:
            b = bu[u]
            bu[u] = b + lr * (e - reg_bias * b)
            b = bi[i]
            bi[i] = b + lr * (e - reg_bias * b)
        if has_prior:
            if floating is float:
                mf_sgd_pair_prior_f32(p, q, &P0[u, 0], &Q0[i, 0], k, e, lr, reg, prior)
            else:
                mf_sgd_pair_prior_f64(p, q, &P0[u, 0], &Q0[i, 0], k, e, lr, reg, prior)
        else:
            if floating is float:
                mf_sgd_pair_f32(p, q, k, e, lr, reg)
            else:
                mf_sgd_pair_f64(p, q, k, e, lr, reg)
    sse_out[0] = sse
    return bad


def sgd_epoch(const Rating[::1] recs, floating[:, ::1] P, floating[:, ::1] Q,
              floating[::1] bu, floating[::1] bi, double mu, double lr, double reg,
              double reg_bias, bint biases, const floating[:, ::1] P0=None,
              const floating[:, ::1] Q0=None, double prior=0.0):
    """One SGD pass over `recs` (a RATING_DTYPE array) in storage order.

    Returns (sum of squared residuals seen, position of the first non-finite residual or -1).
    """
    cdef bint has_prior = P0 is not None
    cdef double sse = 0.0
    cdef Py_ssize_t bad
    cdef const floating[:, ::1] P0v
    cdef const floating[:, ::1] Q0v
    if Q.shape[1] != P.shape[1]:
        raise ValueError("P and Q must have the same number of columns")
    if biases and (bu.shape[0] != P.shape[0] or bi.shape[0] != Q.shape[0]):
        raise ValueError("bias arrays must match the factor rows")
    if has_prior:
        if Q0 is None or P0.shape[0] != P.shape[0] or Q0.shape[0] != Q.shape[0] \
                or P0.shape[1] != P.shape[1] or Q0.shape[1] != Q.shape[1]:
            raise ValueError("prior factors must have the shapes of the factors")
        P0v = P0
        Q0v = Q0
    else:
        P0v = P
        Q0v = Q
    with nogil:
        bad = _epoch(recs, P, Q, bu, bi, <floating>mu, <floating>lr, <floating>reg,
                     <floating>reg_bias, biases, P0v, Q0v, <floating>prior, has_prior, &sse)
    return sse, bad


def shuffle_records(Rating[::1] recs, uint64_t seed):
    """Fisher-Yates shuffle of the records driven by splitmix64 from `seed`."""
    cdef Py_ssize_t j, r
    cdef uint64_t state = seed
    cdef Rating tmp
    with nogil:
        j = recs.shape[0] - 1
        while j > 0:
            r = <Py_ssize_t>bounded(&state, <uint64_t>(j + 1))
            tmp = recs[j]
            recs[j] = recs[r]
            recs[r] = tmp
            j -= 1
