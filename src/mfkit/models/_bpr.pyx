# cython: language_level=3
"""BPR epochs (Rendle, Freudenthaler, Gantner and Schmidt-Thieme, UAI 2009).

Each observed (user u, item i) is a positive; a negative item j is drawn for it and the
pairwise log-likelihood ln sigma(x_uij), x_uij = p_u . (q_i - q_j), is climbed by one
stochastic gradient step (old values on the right, z = sigma(-x_uij)):

    p_u += lr (z (q_i - q_j) - reg p_u)
    q_i += lr (z p_u - reg q_i)
    q_j += lr (-z p_u - reg q_j)

The epoch is stratified like SGD's (``_sgd_layout.build_blocks``): the interactions are stored in
B x B blocks of (user group, item group), stratum s holds the B blocks that share no user and
no item, and the blocks of a stratum run concurrently. A negative is drawn uniformly from the
items of its block's item group, so blocks stay disjoint; it is redrawn (up to MAX_TRIES
times) while it is one of u's training items, and the sample is skipped if every try was.
Each block first shuffles its records in place and then draws its negatives from one
splitmix64 stream seeded by the block's seed, swept by exactly one thread: the draws and the
result do not depend on which thread runs which block, or on the thread count.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, log1p
from libc.stdint cimport int32_t, int64_t, uint64_t

import numpy as np

from mfkit._core._common cimport bounded
from mfkit._core._simd cimport mf_dot_f32, mf_dot_f64

cdef packed struct Rating:
    int32_t u
    int32_t i
    float r

cdef enum:
    MAX_TRIES = 16


cdef inline floating _dot(const floating *a, const floating *b, int k) noexcept nogil:
    if floating is float:
        return mf_dot_f32(a, b, k)
    else:
        return mf_dot_f64(a, b, k)


cdef bint _contains(const int32_t *row, Py_ssize_t n, int32_t item) noexcept nogil:
    """Whether the sorted row[0:n] holds item (binary search)."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if row[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    return lo < n and row[lo] == item


cdef void _shuffle(Rating *recs, Py_ssize_t n, uint64_t *state) noexcept nogil:
    cdef Py_ssize_t j = n - 1, r
    cdef Rating tmp
    while j > 0:
        r = <Py_ssize_t>bounded(state, <uint64_t>(j + 1))
        tmp = recs[j]
        recs[j] = recs[r]
        recs[r] = tmp
        j -= 1


cdef void _sweep(Rating *recs, Py_ssize_t n, floating *P, floating *Q, int k,
                 const int64_t *indptr, const int32_t *indices, const int32_t *cand,
                 Py_ssize_t n_cand, floating lr, floating reg, uint64_t *state,
                 int32_t *neg_out, double *out) noexcept nogil:
    """One block: out[0] += sum of -ln sigma(x), out[1] += samples with x > 0, out[2] +=
    skipped samples."""
    cdef Py_ssize_t pos, _try
    cdef int32_t u, i, j, c
    cdef int f
    cdef floating *pu
    cdef floating *qi
    cdef floating *qj
    cdef floating x, z, puf, qif, qjf
    cdef double loss = 0.0, correct = 0.0, skipped = 0.0
    for pos in range(n):
        u = recs[pos].u
        i = recs[pos].i
        j = -1
        if n_cand > 0:
            for _try in range(MAX_TRIES):
                c = cand[bounded(state, <uint64_t>n_cand)]
                if c != i and not _contains(indices + indptr[u], indptr[u + 1] - indptr[u], c):
                    j = c
                    break
        if neg_out != NULL:
            neg_out[pos] = j
        if j < 0:
            skipped += 1
            continue
        pu = P + <Py_ssize_t>u * k
        qi = Q + <Py_ssize_t>i * k
        qj = Q + <Py_ssize_t>j * k
        x = _dot(pu, qi, k) - _dot(pu, qj, k)
        z = 1 / (1 + exp(x))
        if x > 0:
            loss += log1p(exp(-<double>x))
            correct += 1
        else:
            loss += -<double>x + log1p(exp(<double>x))
        for f in range(k):
            puf = pu[f]
            qif = qi[f]
            qjf = qj[f]
            pu[f] = puf + lr * (z * (qif - qjf) - reg * puf)
            qi[f] = qif + lr * (z * puf - reg * qif)
            qj[f] = qjf + lr * (-z * puf - reg * qjf)
    out[0] += loss
    out[1] += correct
    out[2] += skipped


def bpr_block_epoch(Rating[::1] recs, const int64_t[::1] offsets, const int64_t[::1] strata,
                    const uint64_t[::1] block_seeds, const int64_t[::1] indptr,
                    const int32_t[::1] indices, const int64_t[::1] group_ptr,
                    const int32_t[::1] group_items, floating[:, ::1] P, floating[:, ::1] Q,
                    double lr, double reg, int32_t[::1] neg_out, int n_threads):
    """One stratified BPR epoch over records laid out by ``_sgd_layout.build_blocks``.

    ``indptr``/``indices``: the users' training items (CSR, sorted rows) that negatives must
    avoid; ``group_items[group_ptr[g]:group_ptr[g + 1]]``: the items of item group g. A
    non-empty ``neg_out`` (one per record) receives each record's negative (-1: skipped),
    aligned with ``recs`` in the order the records were visited (the blocks are shuffled in
    place). Returns ``(sum of -ln sigma(x_uij), samples with x_uij > 0, skipped)``.
    """
    cdef Py_ssize_t B = strata.shape[0], nb, si, g, blk, a, m, n = recs.shape[0], j
    cdef Py_ssize_t gi, n_users = indptr.shape[0] - 1, n_items = Q.shape[0]
    cdef int k = P.shape[1]
    cdef int64_t s
    cdef uint64_t state
    nb = B * B
    if P.shape[1] != Q.shape[1]:
        raise ValueError("P and Q must have the same number of factors")
    if B < 1 or offsets.shape[0] != nb + 1 or block_seeds.shape[0] != nb:
        raise ValueError("offsets must have B*B + 1 and block_seeds B*B entries")
    if group_ptr.shape[0] != B + 1 or group_ptr[0] != 0 or group_ptr[B] != group_items.shape[0]:
        raise ValueError("group_ptr must have B + 1 entries spanning group_items")
    if offsets[0] != 0 or offsets[nb] != n:
        raise ValueError("offsets must start at 0 and end at the number of records")
    if n_users != P.shape[0] or indptr[0] != 0 or indptr[n_users] != indices.shape[0]:
        raise ValueError("indptr must have one entry per user of P plus one, spanning indices")
    if neg_out.shape[0] != 0 and neg_out.shape[0] != n:
        raise ValueError("neg_out must be empty or have one entry per record")
    if n_threads < 1:
        raise ValueError("n_threads must be >= 1")
    for blk in range(nb):
        if offsets[blk + 1] < offsets[blk]:
            raise ValueError("offsets must not decrease")
    for g in range(B):
        if group_ptr[g + 1] < group_ptr[g]:
            raise ValueError("group_ptr must not decrease")
    seen = np.zeros(B, dtype=bool)
    for si in range(B):
        if strata[si] < 0 or strata[si] >= B or seen[strata[si]]:
            raise ValueError("strata must be a permutation of 0..B-1")
        seen[strata[si]] = True
    for j in range(n):
        if not (0 <= recs[j].u < n_users and 0 <= recs[j].i < n_items):
            raise ValueError(f"record {j} names a user or item outside the factor matrices")
    for j in range(group_items.shape[0]):
        if not (0 <= group_items[j] < n_items):
            raise ValueError("group_items names an item outside Q")
    if n == 0:
        return 0.0, 0.0, 0.0
    sums_arr = np.zeros((nb, 3), dtype=np.float64)
    cdef double[:, ::1] sums = sums_arr
    cdef Rating *base = &recs[0]
    cdef floating *pP = &P[0, 0]
    cdef floating *pQ = &Q[0, 0]
    cdef int32_t *pneg = &neg_out[0] if neg_out.shape[0] > 0 else NULL
    cdef const int32_t *pind = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const int32_t *pitems = &group_items[0] if group_items.shape[0] > 0 else NULL
    with nogil:
        for si in range(B):
            s = strata[si]
            for g in prange(B, num_threads=n_threads, schedule='dynamic', chunksize=1):
                blk = s * B + g
                a = offsets[blk]
                m = offsets[blk + 1] - a
                gi = (g + s) % B
                if m > 0:
                    state = block_seeds[blk]
                    _shuffle(base + a, m, &state)
                    _sweep(base + a, m, pP, pQ, k, &indptr[0], pind, pitems + group_ptr[gi],
                           group_ptr[gi + 1] - group_ptr[gi], <floating>lr, <floating>reg,
                           &state, pneg + a if pneg != NULL else NULL, &sums[blk, 0])
    totals = sums_arr.sum(axis=0)  # fixed order: the same for every thread count
    return float(totals[0]), float(totals[1]), float(totals[2])
