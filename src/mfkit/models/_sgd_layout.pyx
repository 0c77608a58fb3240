# cython: language_level=3
"""The layouts and plans of stratified SGD epochs, built once per fit or epoch.

`build_blocks` stores the ratings as packed records block by block for the record epochs
(`mfkit.models._sgd.sgd_block_epoch`, and BPR's), `row_segments` indexes the CSR rows by
item group for the row-grouped epoch (`sgd_rows_epoch`), and `epoch_schedule` draws one
epoch's visiting order of the strata and the seeds of its blocks. Each is built in parallel
runs of rows and gives the same result for any thread count.
"""
from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t, uint64_t

import numpy as np

from mfkit._core._common cimport shuffle_i64, splitmix64

cdef packed struct Rating:
    int32_t u
    int32_t i
    float r


def epoch_schedule(uint64_t seed, int B):
    """The seeded plan of one stratified epoch: (strata, block_seeds).

    `strata` (int64, length B) is the order in which the B strata are visited, a
    Fisher-Yates permutation of 0..B-1 driven by splitmix64 from `seed`; `block_seeds`
    (uint64, length B*B) are the next B*B splitmix64 outputs of the same stream, the seed
    of the in-block shuffle of block b (numbered as in `build_blocks`).
    """
    if B < 1:
        raise ValueError("B must be >= 1")
    strata_arr = np.arange(B, dtype=np.int64)
    seeds_arr = np.empty(<Py_ssize_t>B * B, dtype=np.uint64)
    cdef int64_t[::1] strata = strata_arr
    cdef uint64_t[::1] seeds = seeds_arr
    cdef uint64_t state = seed
    cdef Py_ssize_t b
    with nogil:
        shuffle_i64(&strata[0], B, &state)
        for b in range(<Py_ssize_t>B * B):
            seeds[b] = splitmix64(&state)
    return strata_arr, seeds_arr


cdef int _count_blocks(const int64_t *indptr, const int32_t *indices,
                       const int32_t *user_group, const int32_t *item_group,
                       Py_ssize_t u0, Py_ssize_t u1, Py_ssize_t nnz, int32_t n_items, int B,
                       int64_t *counts) noexcept nogil:
    """Count the ratings of users u0..u1-1 per block into counts[0:B*B]; 1 on a group or
    CSR index out of range, else 0."""
    cdef Py_ssize_t u, j
    cdef int32_t gu, gi
    cdef int s
    for u in range(u0, u1):
        gu = user_group[u]
        if gu < 0 or gu >= B or indptr[u + 1] < indptr[u] or indptr[u + 1] > nnz:
            return 1
        for j in range(indptr[u], indptr[u + 1]):
            if indices[j] < 0 or indices[j] >= n_items:
                return 1
            gi = item_group[indices[j]]
            if gi < 0 or gi >= B:
                return 1
            s = gi - gu
            if s < 0:
                s = s + B
            counts[<Py_ssize_t>s * B + gu] += 1
    return 0


cdef void _scatter_blocks(const int64_t *indptr, const int32_t *indices, const float *values,
                          const int32_t *user_group, const int32_t *item_group,
                          Py_ssize_t u0, Py_ssize_t u1, int B, int64_t *pos,
                          Rating *out) noexcept nogil:
    """Write the ratings of users u0..u1-1 at pos[block] (advanced as they go)."""
    cdef Py_ssize_t u, j, blk, at
    cdef int32_t gu
    cdef int s
    for u in range(u0, u1):
        gu = user_group[u]
        for j in range(indptr[u], indptr[u + 1]):
            s = item_group[indices[j]] - gu
            if s < 0:
                s = s + B
            blk = <Py_ssize_t>s * B + gu
            at = pos[blk]
            out[at].u = <int32_t>u
            out[at].i = indices[j]
            out[at].r = values[j]
            pos[blk] = at + 1


def build_blocks(const int64_t[::1] indptr, const int32_t[::1] indices,
                 const float[::1] values, const int32_t[::1] user_group,
                 const int32_t[::1] item_group, int B, Rating[::1] out, int64_t[::1] offsets,
                 int n_threads=1):
    """Scatter CSR ratings into `out` block by block (a counting sort, stable).

    Block b = s * B + g holds the ratings of user group g and item group (g + s) mod B,
    so stratum s (blocks s*B .. s*B + B - 1) is contiguous and its blocks share no user and
    no item; within a block the ratings keep their CSR order. `offsets` (length B*B + 1)
    receives the block boundaries. With `n_threads` > 1 the users are cut into that many
    runs of about equal rating counts, each counted and scattered by one thread into its own
    slice of every block (run t's slice after run t-1's), so the layout is the same for any
    thread count.
    """
    cdef Py_ssize_t n_users = indptr.shape[0] - 1, nnz = indices.shape[0]
    cdef Py_ssize_t nb = <Py_ssize_t>B * B, blk, t, T, run
    cdef int32_t n_items = item_group.shape[0]
    cdef int64_t total
    if B < 1:
        raise ValueError("B must be >= 1")
    if n_threads < 1:
        raise ValueError("n_threads must be >= 1")
    if user_group.shape[0] != n_users or values.shape[0] != nnz or out.shape[0] != nnz:
        raise ValueError("inconsistent CSR, group or output sizes")
    if offsets.shape[0] != nb + 1 or indptr[0] != 0 or indptr[n_users] != nnz:
        raise ValueError("offsets must have B*B + 1 entries and indptr must span the ratings")
    # one run per thread, at most one per 16k ratings, and the per-run counters within 64 MiB
    T = min(<Py_ssize_t>n_threads, max(<Py_ssize_t>1, nnz >> 14),
            max(<Py_ssize_t>1, (<Py_ssize_t>1 << 23) // (nb + 1)))
    # users u in run t: starts[t] <= u < starts[t + 1], cut where the rating count crosses t/T
    starts_arr = np.searchsorted(np.asarray(indptr), (np.arange(T + 1) * nnz) // T,
                                 side="left").astype(np.intp)
    starts_arr[0] = 0
    starts_arr[T] = n_users
    counts_arr = np.zeros(T * nb, dtype=np.int64)
    bad_arr = np.zeros(T, dtype=np.intc)
    cdef Py_ssize_t[::1] starts = starts_arr
    cdef int64_t[::1] counts = counts_arr
    cdef int[::1] bad = bad_arr
    cdef const int64_t *pind = &indptr[0]
    cdef const int32_t *pidx = NULL
    cdef const float *pval = NULL
    cdef Rating *pout = NULL
    if nnz > 0:
        pidx = &indices[0]
        pval = &values[0]
        pout = &out[0]
    cdef const int32_t *pug = NULL
    cdef const int32_t *pig = NULL
    if n_users > 0:
        pug = &user_group[0]
    if n_items > 0:
        pig = &item_group[0]
    cdef int64_t *pc = &counts[0]
    with nogil:
        for run in prange(T, num_threads=T, schedule='static', chunksize=1):
            bad[run] = _count_blocks(pind, pidx, pug, pig, starts[run], starts[run + 1], nnz,
                                     n_items, B, pc + run * nb)
    if bad_arr.any():
        raise ValueError("group index out of range or CSR index out of bounds")
    with nogil:
        # counts[t, blk] becomes the start of run t's slice of block blk
        total = 0
        for blk in range(nb):
            offsets[blk] = total
            for t in range(T):
                run = counts[t * nb + blk]
                counts[t * nb + blk] = total
                total += run
        offsets[nb] = total
        for run in prange(T, num_threads=T, schedule='static', chunksize=1):
            _scatter_blocks(pind, pidx, pval, pug, pig, starts[run], starts[run + 1], B,
                            pc + run * nb, pout)


def row_segments(const int64_t[::1] indptr, const int32_t[::1] indices,
                 const int32_t[::1] item_group, int B, int64_t[:, ::1] out, int n_threads=1):
    """The per-user, per-item-group starts of CSR rows for the row-grouped epoch.

    `item_group` (one entry per item, in 0..B-1) must not decrease with the item index
    (groups are contiguous ranges of items) and each row's items must be sorted, so the
    ratings of user u in item group g are the contiguous run
    indices[out[u, g]:out[u, g + 1]]. `out` (n_users x (B + 1), int64) receives the absolute
    CSR positions, out[u, 0] = indptr[u] and out[u, B] = indptr[u + 1]. Rows are independent,
    so the result does not depend on `n_threads`. An item index out of range, a decreasing
    `indptr` or group, or a group out of range is a ValueError.
    """
    cdef Py_ssize_t n_users = indptr.shape[0] - 1, nnz = indices.shape[0], u, g, j
    cdef Py_ssize_t n_items = item_group.shape[0]
    cdef int64_t pos, end
    cdef int bad = 0
    if B < 1:
        raise ValueError("B must be >= 1")
    if n_threads < 1:
        raise ValueError("n_threads must be >= 1")
    if n_users < 0 or out.shape[0] != n_users or out.shape[1] != B + 1:
        raise ValueError("out must have one row per user and B + 1 columns")
    if indptr[0] != 0 or indptr[n_users] != nnz:
        raise ValueError("indptr must start at 0 and end at the number of ratings")
    for j in range(n_items):
        if item_group[j] < 0 or item_group[j] >= B or (j > 0 and item_group[j] < item_group[j - 1]):
            raise ValueError("item groups must be in 0..B-1 and must not decrease with the item")
    for u in range(n_users):
        if indptr[u + 1] < indptr[u]:
            raise ValueError("indptr must not decrease")
    if n_users == 0:
        return
    with nogil:
        for u in prange(n_users, num_threads=n_threads, schedule='static'):
            pos = indptr[u]
            end = indptr[u + 1]
            out[u, 0] = pos
            for g in range(1, B + 1):
                while pos < end:
                    if indices[pos] < 0 or indices[pos] >= n_items:
                        bad = 1
                        pos = end
                        break
                    if item_group[indices[pos]] >= g:
                        break
                    pos = pos + 1
                out[u, g] = pos
            out[u, B] = end
    if bad:
        raise ValueError("CSR item index out of range")
