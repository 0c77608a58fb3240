# cython: language_level=3
"""SVD++ epochs (Koren 2008, "Factorization meets the neighborhood") by per-user accumulation.

The model predicts r_ui ~ mu + b_u + b_i + q_i . (p_u + z_u) with the implicit term
z_u = |N(u)|^-1/2 sum_{j in N(u)} y_j over the items N(u) the user rated in training.
Updated one rating at a time, every y_j of N(u) moves at every rating of u, so the plain
update costs O(|N(u)| k) per rating (Surprise's SVDpp). Here the ratings are visited user by
user, and a user's turn costs O(|N(u)| k):

    z    = |N(u)|^-1/2 sum_j y_j                          (once, at the start of the turn)
    for each rating (u, i, r) of the user, in storage order:
        e    = r - (mu + b_u + b_i + q_i . (p_u + z)),  g = psi(e)
        b_u += lr (g - reg_bias b_u),  b_i += lr (g - reg_bias b_i)
        a   += g q_i                                       (old q_i)
        p_u += lr (g q_i - reg p_u)
        q_i += lr (g (p_u + z) - reg q_i)                  (old p_u, q_i on the right)
    for each j in N(u):                                    (once, at the end of the turn)
        y_j  = (y_j + lr |N(u)|^-1/2 a) / (1 + lr reg |N(u)|)

The last line is the user's accumulated gradient on y_j (the |N(u)| ratings' error terms
and their |N(u)| L2 terms) taken as one step, the L2 part implicitly (proximal), so it
cannot overshoot for users with many ratings. An epoch is therefore O(ratings x k). With
AdaGrad accumulators each row (p_u, q_i, y_j) and each bias has its own step lr / sqrt(G),
G growing by the mean squared coordinate of the row's gradient (as in `_sgd`).

The sweep is serial (one thread walks the users in the order given); the effective user
factors p_u + z_u that prediction uses are computed afterwards in parallel over users, each
row's sum in storage order, so neither depends on the thread count.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs, sqrt
from libc.stdint cimport int32_t, int64_t, uint64_t

import numpy as np

from mfkit._core._common cimport bounded, shuffle_i64
from mfkit._core._simd cimport mf_dot_f32, mf_dot_f64

cdef packed struct Rating:
    int32_t u
    int32_t i
    float r


cdef inline floating _psi(floating e, int loss, floating delta) noexcept nogil:
    """Influence function of the loss (0 squared, 1 Huber, 2 absolute)."""
    if loss == 0:
        return e
    if loss == 1:
        if e > delta:
            return delta
        if e < -delta:
            return -delta
        return e
    if e > 0:
        return 1
    if e < 0:
        return -1
    return 0


cdef Py_ssize_t _sweep(const Rating *recs, const int64_t *indptr, const int64_t *order,
                       Py_ssize_t n_order, floating *P, floating *Q, floating *Y,
                       floating *bu, floating *bi, int k, floating mu, floating lr,
                       floating reg, floating reg_bias, bint biases, int loss, floating delta,
                       floating *Gp, floating *Gq, floating *Gy, floating *Gbu, floating *Gbi,
                       floating *work, double *sse_out) noexcept nogil:
    """The users order[0:n_order] in turn. Gp == NULL: plain steps. `work` holds 3 k
    scratch values. Returns -1, or the record position of the first non-finite residual."""
    cdef floating *z = work
    cdef floating *pe = work + k
    cdef floating *acc = work + 2 * k
    cdef floating inv_k = (<floating>1) / k
    cdef bint adagrad = Gp != NULL
    cdef Py_ssize_t t, m, a, b, n
    cdef int f
    cdef int32_t u, i, j
    cdef floating s, pred, e, g, bias, gb, lp, lq, lbu, lbi, ly, pf, qf, dp, dq, d, sp, sq
    cdef floating shrink, ns
    cdef floating *p
    cdef floating *q
    cdef floating *y
    cdef double sse = 0.0
    for t in range(n_order):
        u = <int32_t>order[t]
        a = indptr[u]
        b = indptr[u + 1]
        n = b - a
        if n == 0:
            continue
        s = (<floating>1) / sqrt(<floating>n)
        for f in range(k):
            z[f] = 0
            acc[f] = 0
        for m in range(a, b):
            y = Y + <Py_ssize_t>recs[m].i * k
            for f in range(k):
                z[f] = z[f] + y[f]
        p = P + <Py_ssize_t>u * k
        for f in range(k):
            z[f] = s * z[f]
            pe[f] = p[f] + z[f]
        for m in range(a, b):
            i = recs[m].i
            q = Q + <Py_ssize_t>i * k
            if floating is float:
                pred = mu + mf_dot_f32(pe, q, k)
            else:
                pred = mu + mf_dot_f64(pe, q, k)
            if biases:
                pred = pred + bu[u] + bi[i]
            e = <floating>recs[m].r - pred
            if not (fabs(e) < 1e30):
                sse_out[0] = sse
                return m
            sse += <double>e * e
            g = _psi(e, loss, delta)
            if adagrad:
                lp = lr / sqrt(Gp[u])
                lq = lr / sqrt(Gq[i])
            else:
                lp = lr
                lq = lr
            if biases:
                if adagrad:
                    lbu = lr / sqrt(Gbu[u])
                    lbi = lr / sqrt(Gbi[i])
                else:
                    lbu = lr
                    lbi = lr
                bias = bu[u]
                gb = g - reg_bias * bias
                bu[u] = bias + lbu * gb
                if adagrad:
                    Gbu[u] = Gbu[u] + gb * gb
                bias = bi[i]
                gb = g - reg_bias * bias
                bi[i] = bias + lbi * gb
                if adagrad:
                    Gbi[i] = Gbi[i] + gb * gb
            if adagrad:
                sp = 0
                sq = 0
                for f in range(k):
                    pf = p[f]
                    qf = q[f]
                    acc[f] = acc[f] + g * qf
                    dp = g * qf - reg * pf
                    dq = g * pe[f] - reg * qf
                    p[f] = pf + lp * dp
                    q[f] = qf + lq * dq
                    pe[f] = p[f] + z[f]
                    sp = sp + dp * dp
                    sq = sq + dq * dq
                Gp[u] = Gp[u] + sp * inv_k
                Gq[i] = Gq[i] + sq * inv_k
            else:
                for f in range(k):
                    pf = p[f]
                    qf = q[f]
                    acc[f] = acc[f] + g * qf
                    p[f] = pf + lp * (g * qf - reg * pf)
                    q[f] = qf + lq * (g * pe[f] - reg * qf)
                    pe[f] = p[f] + z[f]
        ns = <floating>n
        for m in range(a, b):
            j = recs[m].i
            y = Y + <Py_ssize_t>j * k
            if adagrad:
                ly = lr / sqrt(Gy[j])
                sp = 0
                for f in range(k):
                    d = s * acc[f] - reg * ns * y[f]
                    sp = sp + d * d
                Gy[j] = Gy[j] + sp * inv_k
            else:
                ly = lr
            shrink = (<floating>1) / (1 + ly * reg * ns)
            for f in range(k):
                y[f] = (y[f] + ly * s * acc[f]) * shrink
    sse_out[0] = sse
    return -1


cdef floating *_opt_ptr(floating[::1] a) noexcept:
    if a is None or a.shape[0] == 0:
        return NULL
    return &a[0]


cdef void _check_layout(const Rating[::1] recs, const int64_t[::1] indptr,
                        Py_ssize_t n_users, Py_ssize_t n_items) except *:
    """indptr spans recs by user; every record's user is its segment's and its item is
    a valid row."""
    cdef Py_ssize_t u, m, nnz = recs.shape[0]
    cdef bint bad = False
    if indptr.shape[0] != n_users + 1:
        raise ValueError(f"indptr must have n_users + 1 = {n_users + 1} entries")
    if indptr[0] != 0 or indptr[n_users] != nnz:
        raise ValueError("indptr must start at 0 and end at the number of records")
    with nogil:
        for u in range(n_users):
            if indptr[u + 1] < indptr[u]:
                bad = True
                break
            for m in range(indptr[u], indptr[u + 1]):
                if recs[m].u != u or recs[m].i < 0 or recs[m].i >= n_items:
                    bad = True
                    break
            if bad:
                break
    if bad:
        raise ValueError("records must be grouped by user as indptr says, with item indices "
                         "in range")


def svdpp_epoch(const Rating[::1] recs, const int64_t[::1] indptr, const int64_t[::1] order,
                floating[:, ::1] P, floating[:, ::1] Q, floating[:, ::1] Y,
                floating[::1] bu, floating[::1] bi, double mu, double lr, double reg,
                double reg_bias, bint biases, int loss=0, double delta=1.0,
                floating[::1] Gp=None, floating[::1] Gq=None, floating[::1] Gy=None,
                floating[::1] Gbu=None, floating[::1] Gbi=None):
    """One SVD++ pass: the users in `order` (each at most once), each user's records
    recs[indptr[u]:indptr[u + 1]] in storage order, by the update of the module docstring.

    `P` holds the users' own factors p_u (not p_u + z_u), `Y` the implicit item factors.
    `loss` is 0 (squared), 1 (Huber, threshold `delta`) or 2 (absolute). Giving the AdaGrad
    accumulators Gp, Gq, Gy (and Gbu, Gbi with biases) switches to row-adaptive steps.
    Returns (sum of squared residuals seen, record position of the first non-finite residual
    or -1).
    """
    cdef Py_ssize_t n_users = P.shape[0], n_items = Q.shape[0], t
    cdef int k = P.shape[1]
    cdef double sse = 0.0
    cdef Py_ssize_t bad
    if Q.shape[1] != k or Y.shape[1] != k or Y.shape[0] != n_items or k == 0:
        raise ValueError("P, Q and Y must have the same k > 0 columns, Q and Y one row per "
                         "item")
    if biases and (bu.shape[0] != n_users or bi.shape[0] != n_items):
        raise ValueError("bias arrays must match the factor rows")
    if loss not in (0, 1, 2) or (loss == 1 and not delta > 0):
        raise ValueError("loss must be 0, 1 or 2 (and delta > 0 for Huber)")
    if Gp is not None:
        if (Gq is None or Gy is None or Gp.shape[0] != n_users or Gq.shape[0] != n_items
                or Gy.shape[0] != n_items):
            raise ValueError("AdaGrad accumulators Gp, Gq, Gy must have one entry per row")
        if biases and (Gbu is None or Gbi is None or Gbu.shape[0] != n_users
                       or Gbi.shape[0] != n_items):
            raise ValueError("AdaGrad bias accumulators must have one entry per bias")
    elif Gq is not None or Gy is not None or Gbu is not None or Gbi is not None:
        raise ValueError("AdaGrad accumulators must all be given, or none")
    _check_layout(recs, indptr, n_users, n_items)
    seen = np.zeros(n_users, dtype=np.uint8)
    cdef unsigned char[::1] seen_v = seen
    for t in range(order.shape[0]):
        if order[t] < 0 or order[t] >= n_users or seen_v[order[t]]:
            raise ValueError("order must list distinct user indices")
        seen_v[order[t]] = 1
    if recs.shape[0] == 0 or order.shape[0] == 0:
        return 0.0, -1
    work_arr = np.zeros(3 * k, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] work = work_arr
    cdef floating *pbu = _opt_ptr(bu)
    cdef floating *pbi = _opt_ptr(bi)
    cdef floating *gp = _opt_ptr(Gp)
    cdef floating *gq = _opt_ptr(Gq)
    cdef floating *gy = _opt_ptr(Gy)
    cdef floating *gbu = _opt_ptr(Gbu)
    cdef floating *gbi = _opt_ptr(Gbi)
    with nogil:
        bad = _sweep(&recs[0], &indptr[0], &order[0], order.shape[0], &P[0, 0], &Q[0, 0],
                     &Y[0, 0], pbu, pbi, k, <floating>mu, <floating>lr, <floating>reg,
                     <floating>reg_bias, biases, loss, <floating>delta, gp, gq, gy, gbu, gbi,
                     &work[0], &sse)
    return sse, bad


def effective_user_factors(const Rating[::1] recs, const int64_t[::1] indptr,
                           const floating[:, ::1] P, const floating[:, ::1] Y,
                           floating[:, ::1] out, int n_threads):
    """out[u] = P[u] + |N(u)|^-1/2 sum_{j in N(u)} Y[j] (the sum in storage order), in
    parallel over users; a user without records gets P[u]."""
    cdef Py_ssize_t n_users = P.shape[0], u, m
    cdef int k = P.shape[1], f
    cdef floating s
    cdef const floating *y
    if out.shape[0] != n_users or out.shape[1] != k or Y.shape[1] != k:
        raise ValueError("out must have the shape of P, and Y its columns")
    if n_threads < 1:
        raise ValueError("n_threads must be >= 1")
    _check_layout(recs, indptr, n_users, Y.shape[0])
    if n_users == 0 or k == 0:
        return
    cdef floating *po = &out[0, 0]
    cdef const floating *pP = &P[0, 0]
    cdef const floating *pY = &Y[0, 0]
    cdef const Rating *pr = &recs[0] if recs.shape[0] else NULL
    with nogil:
        for u in prange(n_users, num_threads=n_threads, schedule='dynamic', chunksize=64):
            for f in range(k):
                po[u * k + f] = 0
            for m in range(indptr[u], indptr[u + 1]):
                y = pY + <Py_ssize_t>pr[m].i * k
                for f in range(k):
                    po[u * k + f] = po[u * k + f] + y[f]
            if indptr[u + 1] > indptr[u]:
                s = (<floating>1) / sqrt(<floating>(indptr[u + 1] - indptr[u]))
            else:
                s = 0
            for f in range(k):
                po[u * k + f] = pP[u * k + f] + s * po[u * k + f]


def shuffle_users(Rating[::1] recs, const int64_t[::1] indptr, int64_t[::1] order,
                  uint64_t seed):
    """The seeded visiting order of one epoch, in place: `order` is permuted by a
    splitmix64 Fisher-Yates shuffle from `seed`, then each user's records (users in index
    order) by the same continuing stream."""
    cdef Py_ssize_t n_users = indptr.shape[0] - 1, u, j, r
    cdef uint64_t state = seed
    cdef Rating tmp
    if indptr[0] != 0 or indptr[n_users] != recs.shape[0]:
        raise ValueError("indptr must start at 0 and end at the number of records")
    for u in range(n_users):
        if indptr[u + 1] < indptr[u]:
            raise ValueError("indptr must not decrease")
    with nogil:
        if order.shape[0] > 1:
            shuffle_i64(&order[0], order.shape[0], &state)
        for u in range(n_users):
            j = indptr[u + 1] - 1
            while j > indptr[u]:
                r = indptr[u] + <Py_ssize_t>bounded(&state, <uint64_t>(j - indptr[u] + 1))
                tmp = recs[j]
                recs[j] = recs[r]
                recs[r] = tmp
                j -= 1
