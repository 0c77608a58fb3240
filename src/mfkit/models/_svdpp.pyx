# cython: language_level=3
"""SVD++ epochs (Koren 2008, "Factorization meets the neighborhood"), parallel and
bit-reproducible for any thread count.

The model predicts r_ui ~ mu + b_u + b_i + q_i . (p_u + z_u) with the implicit term
z_u = |N(u)|^-1/2 sum_{j in N(u)} y_j over the items N(u) the user rated in training.
Updated one rating at a time with fresh y (Surprise's SVDpp), every rating re-forms z_u and
moves all |N(u)| rows y_j: O(|N(u)| k) per rating, and every rating writes rows shared with
every other user, so no two ratings can run at once. Here the users are split into C chunks
(fixed per fit, about equal rating counts) and users and items into B groups; the records
are stored block by block (`build_layout`): block (c * B + s) * B + g holds the ratings of
the chunk-c users of user group g on the items of item group (g + s) mod B. An epoch visits
the chunks in a seeded order; for each chunk c:

1. Rating pass, stratified (Gemulla et al. 2011, as the plain SGD's parallel epoch): the
   chunk's B strata in a seeded order, the B blocks of a stratum concurrently, each
   shuffled (seeded) and swept by one thread. In the first stratum the thread of block g
   first forms z_u from the current y and clears a_u for the chunk's users of group g. For
   each record (u, i, r), with z_u held fixed (it is exact: no y moves during this pass):

       e    = r - (mu + b_u + b_i + q_i . (p_u + z_u)),  g = psi(e)
       b_u += lr (g - reg_bias b_u),  b_i += lr (g - reg_bias b_i)
       a_u += g q_i                                        (old q_i)
       p_u += lr (g q_i - reg p_u)
       q_i += lr (g (p_u + z_u) - reg q_i)                 (old p_u, q_i on the right)

   A block writes p_u, b_u, a_u and z_u of its user group and q_i, b_i of its item group
   only, and reads the y, which nobody writes in this pass: the blocks of a stratum touch
   disjoint memory. a_u collects all the user's error terms of the epoch (a user belongs to
   one chunk), however its ratings fall into blocks.
2. Implicit pass, in parallel over the B item groups: the thread of item group h walks the
   blocks (c, s, (h - s) mod B) in the chunk's strata order and, for each record (u, j),
   gives y_j the step of u's turn

       y_j = (y_j + lr |N(u)|^-1/2 a_u) / (1 + lr reg |N(u)|)

   (user u's accumulated gradient on y_j: |N(u)| error terms and |N(u)| L2 terms, the L2
   part implicit, so it cannot overshoot for users with many ratings). It writes only the
   y_j of its group and reads the finished a_u.

Each y_j thus moves once per rater and epoch, by that rater's whole-turn gradient, as in a
serial per-user sweep, so an epoch is O(ratings x k); the difference is that the users of
one chunk all see the y of the chunk's start. One chunk per user would be the serial sweep;
one chunk for everybody diverges on real data (the steps of a popular item's many raters
pile up unseen), so C grows with the coupling the chunk's users put on the y (see
`mfkit.models.sgd.svdpp_chunks`). The threads synchronise B + 1 times per chunk. After the
epoch `effective_user_factors` forms p_u + z_u for prediction, in parallel over users.

Every step is a fixed sequence of floating-point operations given the data, the seed, B
and C, whatever the number of threads or their timing; the loss is summed per block and
then in block order. With AdaGrad accumulators each row (p_u, q_i, y_j) and each bias has
its own step lr / sqrt(G), G growing by the mean squared coordinate of the row's gradient
(as in `_sgd`).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs, sqrt
from libc.stdint cimport int32_t, int64_t, uint64_t

import numpy as np

from mfkit._core._common cimport bounded, shuffle_i64, splitmix64

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


cdef inline floating _dot_sum(const floating *q, const floating *p, const floating *z,
                              int k) noexcept nogil:
    """q . (p + z) in eight partial sums combined in a fixed order (vectorisable without
    reassociation, the same bits for any vector width)."""
    cdef floating acc[8]
    cdef int f = 0, j
    for j in range(8):
        acc[j] = 0
    while f + 8 <= k:
        for j in range(8):
            acc[j] = acc[j] + q[f + j] * (p[f + j] + z[f + j])
        f += 8
    j = 0
    while f < k:
        acc[j] = acc[j] + q[f] * (p[f] + z[f])
        f += 1
        j += 1
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))


cdef void _shuffle(Rating *recs, Py_ssize_t n, uint64_t seed) noexcept nogil:
    """Fisher-Yates shuffle of recs[0:n] driven by splitmix64 from `seed`."""
    cdef Py_ssize_t j = n - 1, r
    cdef uint64_t state = seed
    cdef Rating tmp
    while j > 0:
        r = <Py_ssize_t>bounded(&state, <uint64_t>(j + 1))
        tmp = recs[j]
        recs[j] = recs[r]
        recs[r] = tmp
        j -= 1


cdef Py_ssize_t _sweep(const Rating *recs, Py_ssize_t n, floating *P, floating *Q,
                       const floating *Z, floating *A, floating *bu, floating *bi, int k,
                       floating mu, floating lr, floating reg, floating reg_bias, bint biases,
                       int loss, floating delta, floating *Gp, floating *Gq, floating *Gbu,
                       floating *Gbi, double *sse_out) noexcept nogil:
    """The rating-pass update over recs[0:n] in order. Gp == NULL: plain steps. Returns -1,
    or the position of the first record whose residual was not finite."""
    cdef floating inv_k = (<floating>1) / k
    cdef bint adagrad = Gp != NULL
    cdef Py_ssize_t t
    cdef int f
    cdef int32_t u, i
    cdef floating pred, e, g, bias, gb, lp, lq, lbu, lbi, pf, qf, dp, dq, sp, sq
    cdef floating *p
    cdef floating *q
    cdef floating *a
    cdef const floating *z
    cdef double sse = 0.0
    for t in range(n):
        u = recs[t].u
        i = recs[t].i
        p = P + <Py_ssize_t>u * k
        q = Q + <Py_ssize_t>i * k
        z = Z + <Py_ssize_t>u * k
        a = A + <Py_ssize_t>u * k
        pred = mu + _dot_sum(q, p, z, k)
        if biases:
            pred = pred + bu[u] + bi[i]
        e = <floating>recs[t].r - pred
        if not (fabs(e) < 1e30):
            sse_out[0] = sse
            return t
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
                a[f] = a[f] + g * qf
                dp = g * qf - reg * pf
                dq = g * (pf + z[f]) - reg * qf
                p[f] = pf + lp * dp
                q[f] = qf + lq * dq
                sp = sp + dp * dp
                sq = sq + dq * dq
            Gp[u] = Gp[u] + sp * inv_k
            Gq[i] = Gq[i] + sq * inv_k
        else:
            for f in range(k):
                pf = p[f]
                qf = q[f]
                a[f] = a[f] + g * qf
                p[f] = pf + lp * (g * qf - reg * pf)
                q[f] = qf + lq * (g * (pf + z[f]) - reg * qf)
    sse_out[0] = sse
    return -1


cdef floating *_opt_ptr(floating[::1] a) noexcept:
    if a is None or a.shape[0] == 0:
        return NULL
    return &a[0]


cdef bint _bad_csr(const int64_t[::1] indptr, const int32_t[::1] indices,
                   Py_ssize_t n_cols) noexcept nogil:
    cdef Py_ssize_t r, m, n_rows = indptr.shape[0] - 1
    if n_rows < 0 or indptr[0] != 0 or indptr[n_rows] != indices.shape[0]:
        return True
    for r in range(n_rows):
        if indptr[r + 1] < indptr[r]:
            return True
        for m in range(indptr[r], indptr[r + 1]):
            if indices[m] < 0 or indices[m] >= n_cols:
                return True
    return False


def build_layout(const int64_t[::1] indptr, const int32_t[::1] indices,
                 const float[::1] values, const int32_t[::1] user_chunk,
                 const int32_t[::1] user_group, const int32_t[::1] item_group, int C, int B,
                 Rating[::1] out, int64_t[::1] offsets):
    """Scatter CSR ratings into `out` block by block (a stable counting sort).

    Block b = (c * B + s) * B + g holds the ratings of the users of chunk c in user group g
    on the items of item group (g + s) mod B; so chunk c is the contiguous run of its B
    strata, and the B blocks of a stratum share no user and no item. `offsets` (length
    C*B*B + 1) receives the block boundaries.
    """
    cdef Py_ssize_t n_users = indptr.shape[0] - 1, nnz = indices.shape[0]
    cdef Py_ssize_t nb = <Py_ssize_t>C * B * B, u, j, blk
    cdef int32_t gu, gi, cu, n_items = item_group.shape[0]
    cdef int s
    cdef bint bad = False
    if B < 1 or C < 1:
        raise ValueError("B and C must be >= 1")
    if (user_group.shape[0] != n_users or user_chunk.shape[0] != n_users
            or values.shape[0] != nnz or out.shape[0] != nnz):
        raise ValueError("inconsistent CSR, group, chunk or output sizes")
    if n_users < 0 or offsets.shape[0] != nb + 1 or indptr[0] != 0 or indptr[n_users] != nnz:
        raise ValueError("offsets must have C*B*B + 1 entries and indptr must span the ratings")
    pos_arr = np.zeros(nb + 1, dtype=np.int64)
    cdef int64_t[::1] pos = pos_arr
    with nogil:
        for u in range(n_users):
            gu = user_group[u]
            cu = user_chunk[u]
            if (gu < 0 or gu >= B or cu < 0 or cu >= C or indptr[u + 1] < indptr[u]
                    or indptr[u + 1] > nnz):
                bad = True
                break
            for j in range(indptr[u], indptr[u + 1]):
                if indices[j] < 0 or indices[j] >= n_items:
                    bad = True
                    break
                gi = item_group[indices[j]]
                if gi < 0 or gi >= B:
                    bad = True
                    break
                s = gi - gu
                if s < 0:
                    s = s + B
                pos[(<Py_ssize_t>cu * B + s) * B + gu + 1] += 1
            if bad:
                break
        if not bad:
            for blk in range(nb):
                pos[blk + 1] += pos[blk]
            for blk in range(nb + 1):
                offsets[blk] = pos[blk]
            for u in range(n_users):
                gu = user_group[u]
                cu = user_chunk[u]
                for j in range(indptr[u], indptr[u + 1]):
                    gi = item_group[indices[j]]
                    s = gi - gu
                    if s < 0:
                        s = s + B
                    blk = (<Py_ssize_t>cu * B + s) * B + gu
                    out[pos[blk]].u = <int32_t>u
                    out[pos[blk]].i = indices[j]
                    out[pos[blk]].r = values[j]
                    pos[blk] += 1
    if bad:
        raise ValueError("group or chunk index out of range or CSR index out of bounds")


def epoch_plan(uint64_t seed, int C, int B):
    """The seeded plan of one epoch: (chunk_order, strata, block_seeds).

    All from one splitmix64 stream started at `seed`, in this order: `chunk_order` (int64,
    length C), a Fisher-Yates permutation of 0..C-1; `strata` (int64, C x B flattened), for
    each chunk c = 0..C-1 in turn a Fisher-Yates permutation of 0..B-1 (the order of chunk
    c's strata); `block_seeds` (uint64, length C*B*B), the next C*B*B outputs, the seed of
    the in-block shuffle of block b (numbered as in `build_layout`).
    """
    if B < 1 or C < 1:
        raise ValueError("B and C must be >= 1")
    order_arr = np.arange(C, dtype=np.int64)
    strata_arr = np.tile(np.arange(B, dtype=np.int64), C)
    seeds_arr = np.empty(<Py_ssize_t>C * B * B, dtype=np.uint64)
    cdef int64_t[::1] order = order_arr
    cdef int64_t[::1] strata = strata_arr
    cdef uint64_t[::1] seeds = seeds_arr
    cdef uint64_t state = seed
    cdef Py_ssize_t c, b
    with nogil:
        shuffle_i64(&order[0], C, &state)
        for c in range(C):
            shuffle_i64(&strata[c * B], B, &state)
        for b in range(<Py_ssize_t>C * B * B):
            seeds[b] = splitmix64(&state)
    return order_arr, strata_arr, seeds_arr


cdef void _implicit_terms(const int32_t *users, Py_ssize_t n, const int64_t *indptr,
                          const int32_t *items, const floating *Y, floating *Z, floating *A,
                          int k) noexcept nogil:
    """z_u = |N(u)|^-1/2 sum_j y_j (storage order) and a_u = 0 for the listed users."""
    cdef Py_ssize_t t, m
    cdef int32_t u
    cdef int f
    cdef floating s
    cdef floating *z
    cdef const floating *y
    for t in range(n):
        u = users[t]
        z = Z + <Py_ssize_t>u * k
        for f in range(k):
            z[f] = 0
            A[<Py_ssize_t>u * k + f] = 0
        for m in range(indptr[u], indptr[u + 1]):
            y = Y + <Py_ssize_t>items[m] * k
            for f in range(k):
                z[f] = z[f] + y[f]
        if indptr[u + 1] > indptr[u]:
            s = (<floating>1) / sqrt(<floating>(indptr[u + 1] - indptr[u]))
        else:
            s = 0
        for f in range(k):
            z[f] = s * z[f]


cdef void _implicit_steps(const Rating *recs, Py_ssize_t n, const int64_t *indptr,
                          const floating *A, floating *Y, int k, floating lr, floating reg,
                          floating *Gy) noexcept nogil:
    """For each record (u, j) in order: y_j = (y_j + lr n_u^-1/2 a_u) / (1 + lr reg n_u)."""
    cdef floating inv_k = (<floating>1) / k
    cdef Py_ssize_t t
    cdef int32_t u, j
    cdef int f
    cdef floating ns, s, ly, d, sp, shrink
    cdef floating *y
    cdef const floating *a
    for t in range(n):
        u = recs[t].u
        j = recs[t].i
        ns = <floating>(indptr[u + 1] - indptr[u])
        s = (<floating>1) / sqrt(ns)
        a = A + <Py_ssize_t>u * k
        y = Y + <Py_ssize_t>j * k
        if Gy != NULL:
            ly = lr / sqrt(Gy[j])
            sp = 0
            for f in range(k):
                d = s * a[f] - reg * ns * y[f]
                sp = sp + d * d
            Gy[j] = Gy[j] + sp * inv_k
        else:
            ly = lr
        shrink = (<floating>1) / (1 + ly * reg * ns)
        for f in range(k):
            y[f] = (y[f] + ly * s * a[f]) * shrink


def svdpp_epoch(Rating[::1] recs, const int64_t[::1] offsets, const int64_t[::1] chunk_ptr,
                const int32_t[::1] chunk_users, const int64_t[::1] indptr,
                const int32_t[::1] indices, const int64_t[::1] chunk_order,
                const int64_t[::1] strata, const uint64_t[::1] block_seeds, bint shuffle,
                int n_threads, floating[:, ::1] P, floating[:, ::1] Q, floating[:, ::1] Y,
                floating[:, ::1] Z, floating[:, ::1] A, floating[::1] bu, floating[::1] bi,
                double mu, double lr, double reg, double reg_bias, bint biases, int loss=0,
                double delta=1.0, floating[::1] Gp=None, floating[::1] Gq=None,
                floating[::1] Gy=None, floating[::1] Gbu=None, floating[::1] Gbi=None):
    """One SVD++ epoch over records laid out by `build_layout` (C chunks, B groups), by the
    plan of `epoch_plan`; the passes of the module docstring.

    `chunk_users[chunk_ptr[c*B + g]:chunk_ptr[c*B + g + 1]]` lists the users of chunk c in
    user group g (each user once in all); (`indptr`,
    `indices`) is the rating pattern by user (CSR, the same ratings as `recs`). `P` holds
    the users' own factors p_u, `Y` the implicit item factors, `Z` and `A` are scratch (one
    row per user: the implicit terms and the accumulated error terms). `loss` is 0
    (squared), 1 (Huber, threshold `delta`) or 2 (absolute); giving the AdaGrad accumulators
    Gp, Gq, Gy (and Gbu, Gbi with biases) switches to row-adaptive steps. The result does
    not depend on `n_threads`. Returns (sum of squared residuals seen, -1 or the first block
    index with a non-finite residual).
    """
    cdef Py_ssize_t C = chunk_order.shape[0], B, nb, ci, si, g, blk, a, m, t
    cdef Py_ssize_t n = recs.shape[0], n_users = P.shape[0], n_items = Q.shape[0]
    cdef int k = P.shape[1]
    cdef int64_t c, s
    cdef double sse = 0.0
    cdef Py_ssize_t status = -1
    cdef bint bad = False
    if C < 1 or strata.shape[0] % C != 0:
        raise ValueError("strata must hold C x B entries for the C = len(chunk_order) chunks")
    B = strata.shape[0] // C
    nb = C * B * B
    if k == 0 or Q.shape[1] != k or Y.shape[1] != k or Z.shape[1] != k or A.shape[1] != k:
        raise ValueError("P, Q, Y, Z and A must have the same k > 0 columns")
    if Y.shape[0] != n_items or Z.shape[0] != n_users or A.shape[0] != n_users:
        raise ValueError("Y must have one row per item, Z and A one row per user")
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
    if offsets.shape[0] != nb + 1 or block_seeds.shape[0] != nb:
        raise ValueError("offsets must have C*B*B + 1 and block_seeds C*B*B entries")
    if offsets[0] != 0 or offsets[nb] != n:
        raise ValueError("offsets must start at 0 and end at the number of records")
    for blk in range(nb):
        if offsets[blk + 1] < offsets[blk]:
            raise ValueError("offsets must not decrease")
    if (chunk_ptr.shape[0] != C * B + 1 or chunk_ptr[0] != 0
            or chunk_ptr[C * B] != chunk_users.shape[0]):
        raise ValueError("chunk_ptr must have C*B + 1 entries spanning chunk_users")
    for ci in range(C * B):
        if chunk_ptr[ci + 1] < chunk_ptr[ci]:
            raise ValueError("chunk_ptr must not decrease")
    seen_arr = np.zeros(C, dtype=np.int64)
    cdef int64_t[::1] seen = seen_arr
    for ci in range(C):
        if chunk_order[ci] < 0 or chunk_order[ci] >= C or seen[chunk_order[ci]]:
            raise ValueError("chunk_order must be a permutation of 0..C-1")
        seen[chunk_order[ci]] = 1
    # strata row c is a permutation when each value 0..B-1 is marked with c + 1 once
    stamp_arr = np.zeros(B, dtype=np.int64)
    cdef int64_t[::1] stamp = stamp_arr
    for ci in range(C):
        for si in range(B):
            s = strata[ci * B + si]
            if s < 0 or s >= B or stamp[s] == ci + 1:
                raise ValueError("each chunk's strata must be a permutation of 0..B-1")
            stamp[s] = ci + 1
    if n_threads < 1:
        raise ValueError("n_threads must be >= 1")
    with nogil:
        bad = _bad_csr(indptr, indices, n_items) or indptr.shape[0] != n_users + 1
        if not bad:
            for t in range(chunk_users.shape[0]):
                if chunk_users[t] < 0 or chunk_users[t] >= n_users:
                    bad = True
                    break
        if not bad:
            for t in range(n):
                if (recs[t].u < 0 or recs[t].u >= n_users or recs[t].i < 0
                        or recs[t].i >= n_items):
                    bad = True
                    break
    if bad:
        raise ValueError("indptr/indices must be the ratings by user and chunk_users and the "
                         "records must index rows of the factors")
    if n == 0:
        return 0.0, -1
    cdef floating *pP = &P[0, 0]
    cdef floating *pQ = &Q[0, 0]
    cdef floating *pY = &Y[0, 0]
    cdef floating *pZ = &Z[0, 0]
    cdef floating *pA = &A[0, 0]
    cdef floating *pbu = _opt_ptr(bu)
    cdef floating *pbi = _opt_ptr(bi)
    cdef floating *gp = _opt_ptr(Gp)
    cdef floating *gq = _opt_ptr(Gq)
    cdef floating *gy = _opt_ptr(Gy)
    cdef floating *gbu = _opt_ptr(Gbu)
    cdef floating *gbi = _opt_ptr(Gbi)
    cdef const int64_t *pind = &indptr[0]
    cdef const int32_t *pitems = &indices[0]
    cdef const int32_t *pcu = &chunk_users[0] if chunk_users.shape[0] else NULL
    sse_arr = np.zeros(nb, dtype=np.float64)
    bad_arr = np.full(nb, -1, dtype=np.intp)
    cdef double[::1] sse_b = sse_arr
    cdef Py_ssize_t[::1] bad_b = bad_arr
    cdef double *psse = &sse_b[0]
    cdef Py_ssize_t *pbad = &bad_b[0]
    cdef Rating *base = &recs[0]
    cdef Py_ssize_t u0, h
    with nogil:
        for ci in range(C):
            c = chunk_order[ci]
            # 1. the chunk's ratings, stratum by stratum; in the first stratum each block
            # first forms z_u (from the current y) and clears a_u for its users
            for si in range(B):
                s = strata[c * B + si]
                for g in prange(B, num_threads=n_threads, schedule='dynamic', chunksize=1):
                    if si == 0:
                        u0 = chunk_ptr[c * B + g]
                        _implicit_terms(pcu + u0, chunk_ptr[c * B + g + 1] - u0, pind,
                                        pitems, pY, pZ, pA, k)
                    blk = (c * B + s) * B + g
                    a = offsets[blk]
                    m = offsets[blk + 1] - a
                    if m > 0:
                        if shuffle:
                            _shuffle(base + a, m, block_seeds[blk])
                        pbad[blk] = _sweep(base + a, m, pP, pQ, pZ, pA, pbu, pbi, k,
                                           <floating>mu, <floating>lr, <floating>reg,
                                           <floating>reg_bias, biases, loss,
                                           <floating>delta, gp, gq, gbu, gbi, psse + blk)
                for blk in range((c * B + s) * B, (c * B + s) * B + B):
                    if pbad[blk] >= 0:
                        status = blk
                        break
                if status >= 0:
                    break
            if status >= 0:
                break
            # 2. the chunk users' accumulated steps on their y_j: item group h takes the
            # blocks (c, s, (h - s) mod B) for s in the chunk's strata order
            for h in prange(B, num_threads=n_threads, schedule='dynamic', chunksize=1):
                for si in range(B):
                    s = strata[c * B + si]
                    blk = (c * B + s) * B + (h - s + B) % B
                    a = offsets[blk]
                    m = offsets[blk + 1] - a
                    if m > 0:
                        _implicit_steps(base + a, m, pind, pA, pY, k, <floating>lr,
                                        <floating>reg, gy)
        for blk in range(nb):
            sse += psse[blk]
    return sse, status


def effective_user_factors(const int64_t[::1] indptr, const int32_t[::1] indices,
                           const floating[:, ::1] P, const floating[:, ::1] Y,
                           floating[:, ::1] out, int n_threads):
    """out[u] = P[u] + |N(u)|^-1/2 sum of Y[j] over j in indices[indptr[u]:indptr[u + 1]]
    (summed in that order), in parallel over users; a user without ratings gets P[u]."""
    cdef Py_ssize_t n_users = P.shape[0], u, m
    cdef int k = P.shape[1], f
    cdef floating s
    cdef const floating *y
    cdef bint bad
    if out.shape[0] != n_users or out.shape[1] != k or Y.shape[1] != k:
        raise ValueError("out must have the shape of P, and Y its columns")
    if indptr.shape[0] != n_users + 1:
        raise ValueError("indptr must have n_users + 1 entries")
    if n_threads < 1:
        raise ValueError("n_threads must be >= 1")
    with nogil:
        bad = _bad_csr(indptr, indices, Y.shape[0])
    if bad:
        raise ValueError("indptr/indices must be a CSR of the ratings with item indices in "
                         "range of Y")
    if n_users == 0 or k == 0:
        return
    cdef floating *po = &out[0, 0]
    cdef const floating *pP = &P[0, 0]
    cdef const floating *pY = &Y[0, 0]
    cdef const int32_t *pitems = &indices[0] if indices.shape[0] else NULL
    with nogil:
        for u in prange(n_users, num_threads=n_threads, schedule='dynamic', chunksize=64):
            for f in range(k):
                po[u * k + f] = 0
            for m in range(indptr[u], indptr[u + 1]):
                y = pY + <Py_ssize_t>pitems[m] * k
                for f in range(k):
                    po[u * k + f] = po[u * k + f] + y[f]
            if indptr[u + 1] > indptr[u]:
                s = (<floating>1) / sqrt(<floating>(indptr[u + 1] - indptr[u]))
            else:
                s = 0
            for f in range(k):
                po[u * k + f] = pP[u * k + f] + s * po[u * k + f]
