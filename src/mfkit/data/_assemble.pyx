# cython: language_level=3
"""From parsed columns to the CSR container: id mapping and a stable counting sort.

* ``dense_map``: integer ids spanning a modest range are mapped through a lookup table
  (O(n + range), no sort); the ids come out sorted, like ``numpy.unique``.
* ``csr_order``: the permutation that orders ratings by (user, item), found with two stable
  counting-sort passes (item, then user: an LSD radix sort), O(n + n_users + n_items).
  Input already in (user, item) order (MovieLens files) needs no permutation at all; input
  already in item order (Netflix files) needs one pass.
* ``bucket_scatter``, ``bucket_keys``, ``bucket_rows``: the same order for ratings in any
  order, moving the columns themselves instead of building a permutation and gathering
  through it (random reads of every column). Users are cut into buckets of ``2**shift``
  consecutive users (a few hundred buckets); each column in turn is placed by bucket (a
  stable counting pass over per-thread shares, whose counts ``csr_counts`` takes in its
  pass: few write streams, so it runs at memory speed whatever the input order), the user
  within its bucket and the item packed in one 32-bit key; then each bucket, small enough
  for the cache, is put in (user, item) order in place by an LSD radix sort of its keys
  (with the position as the tie-break). The result equals the stable sort for any thread
  count.
"""
from cython.parallel cimport parallel, prange
from libc.math cimport fabsf, isfinite
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

import numpy as np


cdef extern from *:
    """
    /* a byte flag set from several threads: a relaxed atomic store (a plain store on x86) */
    static inline void mf_set_flag(unsigned char *p) {
    #if defined(__GNUC__) || defined(__clang__)
        /* read first: a line that is only read stays shared between the cores' caches */
        if (!__atomic_load_n(p, __ATOMIC_RELAXED))
            __atomic_store_n(p, (unsigned char)1, __ATOMIC_RELAXED);
    #else
        *(volatile unsigned char *)p = 1;
    #endif
    }
    """
    void mf_set_flag(unsigned char *p) noexcept nogil


ctypedef fused id_t:
    int32_t
    int64_t


def dense_map(const id_t[::1] ids, int64_t lo, int64_t hi, int n_threads, out=None):
    """(sorted distinct ids int64, index of each id int32) for ids in [lo, hi]. ``out``: an
    int32 array of len(ids) for the indices (it may be ``ids`` itself)."""
    cdef Py_ssize_t n = ids.shape[0]
    cdef int64_t span = hi - lo + 1, v, k = 0
    if span <= 0 or span > 2_000_000_000:
        raise ValueError("dense_map: id range is empty or too wide")
    seen_a = np.zeros(span, dtype=np.uint8)
    table_a = np.empty(span, dtype=np.int32)
    cdef unsigned char[::1] seen = seen_a
    cdef int32_t[::1] table = table_a
    cdef int bad = 0, nt = max(1, min(n_threads, 64)), th
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32) if out is None else out
    with nogil:
        for th in prange(nt, schedule="static", chunksize=1, num_threads=nt):
            bad += _mark_share(&ids[0], n * th // nt, n * (th + 1) // nt, lo, span, &seen[0])
    if bad:
        raise ValueError("dense_map: an id lies outside [lo, hi]")
    with nogil:
        for v in range(span):
            if seen[v]:
                table[v] = <int32_t>k
                k += 1
            else:
                table[v] = -1
    del seen_a
    uniq_a = np.empty(k, dtype=np.int64)
    idx_a = np.empty(n, dtype=np.int32) if out is None else out
    if idx_a.dtype != np.int32 or idx_a.shape[0] != n:
        raise ValueError("dense_map: out must be an int32 array as long as ids")
    cdef int64_t[::1] uniq = uniq_a
    cdef int32_t[::1] idx = idx_a
    with nogil:
        for v in range(span):
            if table[v] >= 0:
                uniq[table[v]] = v + lo
        for th in prange(nt, schedule="static", chunksize=1, num_threads=nt):
            _index_share(&ids[0], n * th // nt, n * (th + 1) // nt, lo, &table[0], &idx[0])
    return uniq_a, idx_a


# The per-thread loops of dense_map take raw pointers: inside OpenMP's outlined body the
# memoryviews' data pointers would be reloaded at every id (the flag store may alias them).
cdef int _mark_share(const id_t *ids, Py_ssize_t a, Py_ssize_t b, int64_t lo, int64_t span,
                     unsigned char *seen) noexcept nogil:
    """Flag the ids of ids[a:b] in seen; the number of ids outside [lo, lo + span)."""
    cdef Py_ssize_t j
    cdef int64_t v
    cdef int bad = 0
    for j in range(a, b):
        v = ids[j] - lo
        if v < 0 or v >= span:
            bad += 1
        else:
            mf_set_flag(&seen[v])
    return bad


cdef void _index_share(const id_t *ids, Py_ssize_t a, Py_ssize_t b, int64_t lo,
                       const int32_t *table, int32_t *idx) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(a, b):
        idx[j] = table[ids[j] - lo]


cdef void _check_share(const int32_t[::1] u, const int32_t[::1] i, Py_ssize_t lo_j,
                       Py_ssize_t hi_j, Py_ssize_t n_users, Py_ssize_t n_items,
                       unsigned char *flags) noexcept nogil:
    """flags[0]: an index out of range; flags[1]: not in (user, item) order; flags[2]: not
    in item order, over ratings [lo_j, hi_j) (each compared with the one before it)."""
    cdef Py_ssize_t j
    cdef int bad = 0, not_ui = 0, not_i = 0
    cdef int32_t a, b, pa, pb
    # 32-bit unsigned compares (a negative index wraps above any bound): the loop vectorises
    cdef Py_ssize_t top = (<Py_ssize_t>1) << 31  # above any int32 index
    cdef uint32_t nu = <uint32_t>(n_users if n_users < top else top)
    cdef uint32_t ni = <uint32_t>(n_items if n_items < top else top)
    for j in range(lo_j, hi_j):
        bad |= (<uint32_t>u[j] >= nu) | (<uint32_t>i[j] >= ni)
    if lo_j == 0:
        lo_j = 1
    for j in range(lo_j, hi_j):
        a = u[j]
        b = i[j]
        pa = u[j - 1]
        pb = i[j - 1]
        not_ui |= (a < pa) | ((a == pa) & (b < pb))
        not_i |= b < pb
    flags[0] = bad != 0
    flags[1] = not_ui != 0
    flags[2] = not_i != 0


cdef void _count_share(const int32_t[::1] u, Py_ssize_t lo_j, Py_ssize_t hi_j,
                       int64_t *counts) noexcept nogil:
    """counts[x + 1] += number of ratings of user x among [lo_j, hi_j). Runs of eight equal
    users (input in user order) are counted at once, which spares a chain of increments of
    one counter."""
    cdef Py_ssize_t j = lo_j, k
    cdef int32_t x
    while j + 8 <= hi_j:
        x = u[j]
        if (u[j + 1] == x) & (u[j + 2] == x) & (u[j + 3] == x) & (u[j + 4] == x) \
                & (u[j + 5] == x) & (u[j + 6] == x) & (u[j + 7] == x):
            counts[x + 1] += 8
        else:
            for k in range(j, j + 8):
                counts[u[k] + 1] += 1
        j += 8
    while j < hi_j:
        counts[u[j] + 1] += 1
        j += 1


cdef int _share_threads(Py_ssize_t n, Py_ssize_t table, int n_threads) noexcept:
    """Threads for a pass that splits n ratings into per-thread shares, each thread keeping
    a table of `table` counters: one below 65536 ratings, or when the tables would outweigh
    the ratings."""
    cdef int nt = max(1, min(n_threads, 64))
    if n < 1 << 16 or <int64_t>table * nt > 8 * <int64_t>n + (1 << 20):
        return 1
    return nt


def csr_counts(const int32_t[::1] u, const int32_t[::1] i, Py_ssize_t n_users,
               Py_ssize_t n_items, int n_threads=1, int shift=-1):
    """(indptr int64, in (user, item) order, in item order, bucket starts) of ratings given
    as user and item indices; a ValueError if an index is out of range. With ``shift`` >= 0
    and ratings out of order, ``bucket starts`` (int64 [threads, buckets]) gives where each
    thread's share of each bucket (users ``b << shift`` to ``(b + 1) << shift``) begins in
    the bucket placement (``bucket_scatter``); None otherwise."""
    cdef Py_ssize_t n = u.shape[0], j, lo_j, hi_j, x, x1, nb, b
    cdef int64_t off, c
    cdef int nt = _share_threads(n, n_users, n_threads), th
    cdef bint sorted_ui = True, sorted_i = True
    if i.shape[0] != n:
        raise ValueError("csr_order: users and items differ in length")
    # each thread counts its share of the ratings per user and checks its share's order
    counts_a = np.zeros((nt, n_users + 1), dtype=np.int64)
    flags_a = np.zeros((nt, 3), dtype=np.uint8)  # out of range, not (u, i) sorted, not i sorted
    cdef int64_t[:, ::1] counts = counts_a
    cdef unsigned char[:, ::1] flags = flags_a
    with nogil:
        for th in prange(nt, schedule="static", chunksize=1, num_threads=nt):
            lo_j = n * th // nt
            hi_j = n * (th + 1) // nt
            _check_share(u, i, lo_j, hi_j, n_users, n_items, &flags[th, 0])
            if not flags[th, 0]:
                _count_share(u, lo_j, hi_j, &counts[th, 0])
    if flags_a[:, 0].any():
        raise ValueError("csr_order: index out of range")
    sorted_ui = not flags_a[:, 1].any()
    sorted_i = not flags_a[:, 2].any()
    pos_a = None
    cdef int64_t[:, ::1] pos
    if shift >= 0 and not sorted_ui:
        if shift > 30:
            raise ValueError("csr_counts: shift must be at most 30")
        nb = (n_users + (1 << shift) - 1) >> shift
        pos_a = np.zeros((nt, max(nb, 1)), dtype=np.int64)
        pos = pos_a
        with nogil:
            for th in range(nt):
                for b in range(nb):
                    x1 = min((b + 1) << shift, n_users)
                    c = 0
                    for x in range(b << shift, x1):
                        c = c + counts[th, x + 1]
                    pos[th, b] = c
            off = 0
            for b in range(nb):
                for th in range(nt):
                    c = pos[th, b]
                    pos[th, b] = off
                    off = off + c
    indptr_a = counts_a.sum(axis=0) if nt > 1 else counts_a[0]
    del counts_a
    cdef int64_t[::1] indptr = indptr_a
    with nogil:
        for j in range(n_users):
            indptr[j + 1] += indptr[j]
    return indptr_a, sorted_ui, sorted_i, pos_a


def csr_order(const int32_t[::1] u, const int32_t[::1] i, Py_ssize_t n_users,
              Py_ssize_t n_items, int n_threads=1):
    """(indptr int64, perm or None): ``perm`` (int32 below 2**31 ratings, else int64) orders
    ratings by (user, item), stably (ties keep input order); ``None`` when the input is
    already in that order."""
    cdef Py_ssize_t n = u.shape[0]
    cdef int nt = _share_threads(n, n_users, n_threads)
    indptr_a, sorted_ui, sorted_i, _ = csr_counts(u, i, n_users, n_items, n_threads)
    if sorted_ui:
        return indptr_a, None
    # an LSD radix sort: stably by item (unless already in item order), then by user;
    # positions are int32 when they fit (half the memory of the permutation)
    pdt = np.int32 if n < 2**31 else np.int64
    perm_a = np.empty(n, dtype=pdt)
    if sorted_i:
        _stable_pass(u, None, perm_a, n_users, nt)
    else:
        p1_a = np.empty(n, dtype=pdt)
        _stable_pass(i, None, p1_a, n_items, nt)
        _stable_pass(u, p1_a, perm_a, n_users, nt)
        del p1_a
    return indptr_a, perm_a


ctypedef fused pos_t:
    int32_t
    int64_t


def _stable_pass(const int32_t[::1] keys, src_a, pos_t[::1] dst, Py_ssize_t n_keys, int nt):
    """One stable counting-sort pass: dst lists the positions src (the identity if None)
    lists, ordered by their key. Each thread counts and places a contiguous share of src;
    a thread's ratings of a key go after those of the threads before it, which keeps the
    pass stable for any thread count."""
    cdef Py_ssize_t n = dst.shape[0], t, lo_t, hi_t
    cdef int64_t k, off, c
    cdef int th
    cdef bint ident = src_a is None
    cdef const pos_t[::1] src = np.zeros(1, dtype=np.asarray(dst).dtype) if ident else src_a
    nt = _share_threads(n, n_keys, nt)
    pos_a = np.zeros((nt, n_keys), dtype=np.int64)
    cdef int64_t[:, ::1] pos = pos_a
    with nogil:
        for th in prange(nt, schedule="static", chunksize=1, num_threads=nt):
            lo_t = n * th // nt
            hi_t = n * (th + 1) // nt
            for t in range(lo_t, hi_t):
                pos[th, keys[t if ident else src[t]]] += 1
        off = 0
        for k in range(n_keys):
            for th in range(nt):
                c = pos[th, k]
                pos[th, k] = off
                off = off + c
        for th in prange(nt, schedule="static", chunksize=1, num_threads=nt):
            lo_t = n * th // nt
            hi_t = n * (th + 1) // nt
            for t in range(lo_t, hi_t):
                k = t if ident else src[t]
                dst[pos[th, keys[k]]] = <pos_t>k
                pos[th, keys[k]] += 1


def first_duplicate(const int64_t[::1] indptr, const int32_t[::1] indices, int n_threads=1):
    """(number of repeated (row, column) pairs, CSR position of the first repeat or -1)."""
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, r, r0, r1
    cdef int64_t j, count, first
    cdef int nt = _share_threads(indices.shape[0], 0, n_threads), th
    counts_a = np.zeros(nt, dtype=np.int64)
    firsts_a = np.full(nt, -1, dtype=np.int64)
    cdef int64_t[::1] counts = counts_a
    cdef int64_t[::1] firsts = firsts_a
    with nogil:
        for th in prange(nt, schedule="static", chunksize=1, num_threads=nt):
            r0 = n_rows * th // nt
            r1 = n_rows * (th + 1) // nt
            count = 0
            first = -1
            for r in range(r0, r1):
                for j in range(indptr[r] + 1, indptr[r + 1]):
                    if indices[j] == indices[j - 1]:
                        if first < 0:
                            first = j
                        count = count + 1
            counts[th] = count
            firsts[th] = first
    found = firsts_a[firsts_a >= 0]
    return int(counts_a.sum()), int(found[0]) if len(found) else -1


ctypedef fused gathered:
    float
    double
    int32_t
    int64_t


def take(const gathered[::1] a, const pos_t[::1] perm, int n_threads):
    """a[perm] with a parallel gather (same dtype as a; perm int32 or int64)."""
    cdef Py_ssize_t n = perm.shape[0], j
    out_a = np.empty(n, dtype=np.asarray(a).dtype)
    cdef gathered[::1] out = out_a
    with nogil:
        for j in prange(n, schedule="static", num_threads=n_threads):
            out[j] = a[perm[j]]
    return out_a


cdef int _row_fault(const int64_t[::1] indptr, const int32_t[::1] indices,
                    const float[::1] values, bint with_values, Py_ssize_t r, int64_t n_cols,
                    int64_t *where) noexcept nogil:
    """The fault of row r and its position (the slow path, run on a faulty row only)."""
    cdef int64_t j
    cdef int32_t c, prev = -1
    for j in range(indptr[r], indptr[r + 1]):
        c = indices[j]
        if c < 0 or c >= n_cols:
            where[0] = j
            return 1
        if c <= prev:
            where[0] = j
            return 2
        prev = c
    if with_values:
        for j in range(indptr[r], indptr[r + 1]):
            if not isfinite(values[j]):
                where[0] = j
                return 3
    return 0


cdef int _check_rows(const int64_t[::1] indptr, const int32_t[::1] indices,
                     const float[::1] values, bint with_values, Py_ssize_t r0, Py_ssize_t r1,
                     int64_t n_cols, int64_t *where) noexcept nogil:
    """The first fault among rows [r0, r1): 1 a column index outside [0, n_cols), 2 columns
    not strictly increasing within a row (unsorted or repeated), 3 a value not finite; 0
    when there is none. ``where[0]`` gets the CSR position of the fault. Each row is
    scanned without branches (the loops vectorise); a faulty row is scanned again."""
    cdef Py_ssize_t r
    cdef int64_t j, a, b
    cdef int bad
    # 32-bit unsigned compares: a negative index wraps above any bound
    cdef uint32_t nc = <uint32_t>(n_cols if n_cols < (<int64_t>1 << 31) else (<int64_t>1 << 31))
    cdef float big = 3.4028234663852886e38  # FLT_MAX: |v| <= big fails for NaN and inf
    for r in range(r0, r1):
        a = indptr[r]
        b = indptr[r + 1]
        if b <= a:
            continue
        bad = <uint32_t>indices[a] >= nc
        for j in range(a + 1, b):
            bad |= (<uint32_t>indices[j] >= nc) | (indices[j] <= indices[j - 1])
        if with_values:
            for j in range(a, b):
                bad |= not (fabsf(values[j]) <= big)
        if bad:
            return _row_fault(indptr, indices, values, with_values, r, n_cols, where)
    return 0


def check_csr(const int64_t[::1] indptr, const int32_t[::1] indices, values, int64_t n_cols,
              int n_threads=1):
    """``(fault, position)`` of a CSR structure whose row pointer is already known to be
    valid (starts at 0, never decreases, ends at ``len(indices)``): fault 0 none, 1 a column
    index out of range, 2 columns not strictly increasing within a row, 3 a non-finite value
    (``values``: float32 of the same length, or None to skip that check). Parallel over rows;
    the fault reported is the first row's with one, whatever the thread count."""
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, r0, r1
    cdef int nt = _share_threads(indices.shape[0], 0, n_threads), th
    cdef bint with_values = values is not None
    cdef const float[::1] vals = (np.zeros(1, dtype=np.float32) if values is None
                                  else values)
    if n_rows < 0 or indptr[n_rows] != indices.shape[0]:
        raise ValueError("check_csr: indptr does not end at len(indices)")
    if with_values and vals.shape[0] != indices.shape[0]:
        raise ValueError("check_csr: values and indices differ in length")
    faults_a = np.zeros(nt, dtype=np.int32)
    where_a = np.zeros(nt, dtype=np.int64)
    cdef int32_t[::1] faults = faults_a
    cdef int64_t[::1] where = where_a
    with nogil:
        for th in prange(nt, schedule="static", chunksize=1, num_threads=nt):
            r0 = n_rows * th // nt
            r1 = n_rows * (th + 1) // nt
            faults[th] = _check_rows(indptr, indices, vals, with_values, r0, r1, n_cols,
                                     &where[th])
    for th in range(nt):  # shares are in row order: the first faulty share has the first fault
        if faults_a[th]:
            return int(faults_a[th]), int(where_a[th])
    return 0, -1


# --------------------------------------------------------------------------- bucket placement
ctypedef fused word_t:
    uint32_t
    uint64_t


cdef int _bit_length(uint64_t x) noexcept nogil:
    cdef int b = 0
    while x:
        b += 1
        x >>= 1
    return b


cdef int _scatter_share(const word_t *col, const int32_t *u, int shift, Py_ssize_t a,
                        Py_ssize_t b, const int64_t *start, Py_ssize_t nb,
                        word_t *out) noexcept nogil:
    """Place col[a:b] by the bucket of its user, from the share's start of each bucket; -1
    if the cursor table could not be allocated."""
    cdef int64_t *cur = <int64_t *>malloc((nb if nb else 1) * sizeof(int64_t))
    cdef Py_ssize_t j
    cdef int32_t k
    if cur == NULL:
        return -1
    memcpy(cur, start, nb * sizeof(int64_t))
    for j in range(a, b):
        k = u[j] >> shift
        out[cur[k]] = col[j]
        cur[k] += 1
    free(cur)
    return 0


cdef int _keys_share(const int32_t *u, const int32_t *items, int shift, int item_bits,
                     Py_ssize_t a, Py_ssize_t b, const int64_t *start, Py_ssize_t nb,
                     uint32_t *out) noexcept nogil:
    """Place the keys (user within its bucket, item) of ratings [a, b) by bucket, like
    _scatter_share."""
    cdef int64_t *cur = <int64_t *>malloc((nb if nb else 1) * sizeof(int64_t))
    cdef Py_ssize_t j
    cdef int32_t k
    cdef uint32_t low = (<uint32_t>1 << shift) - 1
    if cur == NULL:
        return -1
    memcpy(cur, start, nb * sizeof(int64_t))
    for j in range(a, b):
        k = u[j] >> shift
        out[cur[k]] = ((<uint32_t>u[j] & low) << item_bits) | <uint32_t>items[j]
        cur[k] += 1
    free(cur)
    return 0


cdef object _check_placement(Py_ssize_t n, Py_ssize_t n_u, out_a, dtype):
    if n_u != n:
        raise ValueError("bucket placement: the column and the users differ in length")
    out_a = np.empty(n, dtype=dtype) if out_a is None else out_a
    if out_a.dtype != dtype or out_a.shape != (n,) or not out_a.flags.c_contiguous:
        raise ValueError("bucket placement: out must have the column's dtype and length")
    return out_a


def bucket_scatter(const word_t[::1] col, const int32_t[::1] u, int shift,
                   const int64_t[:, ::1] pos, out=None):
    """col placed by the bucket ``u >> shift`` of each rating's user, stably (``pos`` from
    ``csr_counts`` with the same shift; its thread count is kept), into ``out`` (an array of
    col's dtype and length that does not overlap it; a new one if None). 32- or 64-bit
    words: pass other dtypes as a view."""
    cdef Py_ssize_t n = col.shape[0], nb = pos.shape[1]
    cdef int nt = pos.shape[0], th, bad = 0
    out_a = _check_placement(n, u.shape[0], out, np.asarray(col).dtype)
    if n == 0:
        return out_a
    cdef word_t[::1] out_v = out_a
    with nogil:
        for th in prange(nt, schedule="static", chunksize=1, num_threads=nt):
            bad += _scatter_share(&col[0], &u[0], shift, n * th // nt, n * (th + 1) // nt,
                                  &pos[th, 0], nb, &out_v[0])
    if bad:
        raise MemoryError("bucket_scatter: no memory for a cursor table")
    return out_a


def bucket_keys(const int32_t[::1] u, const int32_t[::1] i, int shift, int item_bits,
                const int64_t[:, ::1] pos, out=None):
    """The keys ``(u mod 2**shift) << item_bits | i`` (uint32; ``shift + item_bits`` at most
    32, every item below ``2**item_bits``) placed like ``bucket_scatter`` places a column."""
    cdef Py_ssize_t n = i.shape[0], nb = pos.shape[1]
    cdef int nt = pos.shape[0], th, bad = 0
    if shift < 0 or item_bits < 0 or shift + item_bits > 32:
        raise ValueError("bucket_keys: shift + item_bits must be at most 32")
    out_a = _check_placement(n, u.shape[0], out, np.dtype(np.uint32))
    if n == 0:
        return out_a
    cdef uint32_t[::1] out_v = out_a
    with nogil:
        for th in prange(nt, schedule="static", chunksize=1, num_threads=nt):
            bad += _keys_share(&u[0], &i[0], shift, item_bits, n * th // nt,
                               n * (th + 1) // nt, &pos[th, 0], nb, &out_v[0])
    if bad:
        raise MemoryError("bucket_keys: no memory for a cursor table")
    return out_a


cdef void _permute_keyed(char *col, size_t width, const uint64_t *words, int64_t m,
                         char *buf) noexcept nogil:
    """col[0:m] = col[positions in the low halves of words[0:m]], through buf."""
    cdef int64_t x
    cdef uint32_t *c4
    cdef uint32_t *b4
    cdef uint64_t *c8
    cdef uint64_t *b8
    if width == 4:
        c4 = <uint32_t *>col
        b4 = <uint32_t *>buf
        for x in range(m):
            b4[x] = c4[<uint32_t>words[x]]
    else:
        c8 = <uint64_t *>col
        b8 = <uint64_t *>buf
        for x in range(m):
            b8[x] = c8[<uint32_t>words[x]]
    memcpy(col, buf, m * width)


cdef uint64_t *_sort_bucket(const uint32_t *keys, int64_t m, int lo_bit, int hi_bit,
                            int radix_bits, uint64_t *w1, uint64_t *w2,
                            int32_t *hist) noexcept nogil:
    """Sort the words (key << 32 | position) of keys[0:m] stably by the key's bits
    [lo_bit, hi_bit) (an LSD radix sort, passes of at most radix_bits bits; a pass whose
    digit is the same for all is skipped, and the first pass made builds the words as it
    places them); returns the buffer, w1 or w2, that holds them."""
    cdef int bits = hi_bit - lo_bit, passes = 0, width = 1, p, shift
    cdef uint32_t mask = 1, key
    cdef int64_t k, a, c, x
    cdef uint64_t w
    cdef uint64_t *src = w1
    cdef uint64_t *dst = w2
    cdef uint64_t *tmp
    cdef int32_t *h
    cdef bint built = False
    if bits > 0:
        passes = (bits + radix_bits - 1) // radix_bits
        width = (bits + passes - 1) // passes
        mask = (<uint32_t>1 << width) - 1
        for k in range(passes << width):
            hist[k] = 0
        for k in range(m):
            key = keys[k] >> lo_bit
            hist[key & mask] += 1
            for p in range(1, passes):
                hist[(p << width) + ((key >> (p * width)) & mask)] += 1
    for p in range(passes):
        h = hist + (p << width)
        shift = lo_bit + p * width
        if h[(keys[0] >> shift) & mask] == m:
            continue  # one digit for all: the pass would change nothing
        a = 0
        for x in range((<int64_t>1) << width):
            c = h[x]
            h[x] = <int32_t>a
            a += c
        if not built:
            for k in range(m):
                key = keys[k]
                x = (key >> shift) & mask
                dst[h[x]] = (<uint64_t>key << 32) | <uint64_t>k
                h[x] += 1
            built = True
        else:
            for k in range(m):
                w = src[k]
                x = (w >> (32 + shift)) & mask
                dst[h[x]] = w
                h[x] += 1
        tmp = src
        src = dst
        dst = tmp
    if not built:  # in order already
        for k in range(m):
            src[k] = (<uint64_t>keys[k] << 32) | <uint64_t>k
    return src


def bucket_rows(uint32_t[::1] keys, const int64_t[::1] indptr, int shift, int item_bits,
                cols, int n_threads, int radix_bits=11):
    """Put each bucket of the bucket-placed ratings in (user, item) order, in place:
    ``keys`` from ``bucket_keys`` (they become the item indices), ``cols`` the other placed
    columns as writable 32- or 64-bit word arrays; ``radix_bits`` (1 to 16) the widest digit
    of a radix pass. A bucket already in item order is only sorted by user (its items are
    in input order, the order a stable placement keeps)."""
    cdef Py_ssize_t n = keys.shape[0], n_users = indptr.shape[0] - 1, nb, bk, c, x
    cdef int nt = _share_threads(n, 0, n_threads), lo_bit, ubits
    cdef int64_t r0, r1, s, m, biggest = 0
    cdef uint64_t *w1
    cdef uint64_t *w2
    cdef uint64_t *sorted_words
    cdef char *spare
    cdef int32_t *hist
    cdef uint32_t *kb
    cdef uint32_t item_mask
    cdef bint ordered
    cdef int64_t hist_len = ((32 + radix_bits - 1) // radix_bits) << radix_bits
    if not 1 <= radix_bits <= 16:
        raise ValueError("bucket_rows: radix_bits must be 1 to 16")
    if shift < 0 or item_bits < 0 or shift + item_bits > 32:
        raise ValueError("bucket_rows: shift + item_bits must be at most 32")
    if n_users < 0 or indptr[n_users] != n:
        raise ValueError("bucket_rows: indptr does not end at len(keys)")
    item_mask = <uint32_t>((<uint64_t>1 << item_bits) - 1)
    nb = (n_users + (1 << shift) - 1) >> shift
    for bk in range(nb):
        biggest = max(biggest, indptr[min((bk + 1) << shift, n_users)] - indptr[bk << shift])
    if biggest >= 2**31:
        raise ValueError("bucket_rows: a bucket holds 2**31 ratings or more")
    n_cols = len(cols)
    ptrs_a = np.zeros(max(n_cols, 1), dtype=np.uintp)
    widths_a = np.zeros(max(n_cols, 1), dtype=np.intp)
    arrays = []
    for c in range(n_cols):
        a = np.asarray(cols[c])
        if a.shape != (n,) or a.dtype.itemsize not in (4, 8) or not a.flags.c_contiguous \
                or not a.flags.writeable:
            raise ValueError("bucket_rows: columns must be writable, contiguous, as long as "
                             "keys and of 4- or 8-byte elements")
        arrays.append(a)
        ptrs_a[c] = a.ctypes.data
        widths_a[c] = a.dtype.itemsize
    cdef size_t[::1] ptrs = ptrs_a
    cdef Py_ssize_t[::1] widths = widths_a
    failed_a = np.zeros(1, dtype=np.uint8)  # a thread found no memory for its scratch
    cdef unsigned char[::1] failed = failed_a
    if n == 0:
        return
    with nogil, parallel(num_threads=nt):
        w1 = <uint64_t *>malloc(max(biggest, 1) * sizeof(uint64_t))
        w2 = <uint64_t *>malloc(max(biggest, 1) * sizeof(uint64_t))
        hist = <int32_t *>malloc(hist_len * sizeof(int32_t))
        try:
            if w1 == NULL or w2 == NULL or hist == NULL:
                failed[0] = 1
            else:
                for bk in prange(nb, schedule="dynamic", chunksize=1):
                    r0 = bk << shift
                    r1 = min(r0 + (1 << shift), n_users)
                    s = indptr[r0]
                    m = indptr[r1] - s
                    kb = &keys[0] + s
                    ordered = True
                    for x in range(1, m):
                        if (kb[x] & item_mask) < (kb[x - 1] & item_mask):
                            ordered = False
                            break
                    ubits = _bit_length(<uint64_t>(r1 - r0 - 1))
                    lo_bit = item_bits if ordered else 0
                    if m < 2 or (ordered and ubits == 0):
                        for x in range(m):  # in order already: keys become items
                            kb[x] = kb[x] & item_mask
                        continue
                    sorted_words = _sort_bucket(kb, m, lo_bit, item_bits + ubits,
                                                radix_bits, w1, w2, hist)
                    spare = <char *>(w2 if sorted_words == w1 else w1)
                    # the sorted words hold each key (high half) and where its rating was
                    # (low half): the items are written from them, the other columns
                    # gathered through them
                    for x in range(m):
                        kb[x] = <uint32_t>(sorted_words[x] >> 32) & item_mask
                    for c in range(n_cols):
                        _permute_keyed(<char *>ptrs[c] + s * widths[c], widths[c],
                                       sorted_words, m, spare)
        finally:
            free(w1)
            free(w2)
            free(hist)
    if failed_a.any():
        raise MemoryError("bucket_rows: no memory for a thread's scratch")
