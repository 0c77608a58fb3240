# cython: language_level=3
"""From parsed columns to the CSR container: id mapping and a stable counting sort.

* ``dense_map``: integer ids spanning a modest range are mapped through a lookup table
  (O(n + range), no sort); the ids come out sorted, like ``numpy.unique``.
* ``csr_order``: the permutation that orders ratings by (user, item), found with two stable
  counting-sort passes (item, then user: an LSD radix sort), O(n + n_users + n_items).
  Input already in (user, item) order (MovieLens files) needs no permutation at all; input
  already in item order (Netflix files) needs one pass.
"""
from cython.parallel cimport prange
from libc.math cimport fabsf, isfinite
from libc.stdint cimport int32_t, int64_t, uint32_t

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


def csr_order(const int32_t[::1] u, const int32_t[::1] i, Py_ssize_t n_users,
              Py_ssize_t n_items, int n_threads=1):
    """(indptr int64, perm or None): ``perm`` (int32 below 2**31 ratings, else int64) orders
    ratings by (user, item), stably (ties keep input order); ``None`` when the input is
    already in that order."""
    cdef Py_ssize_t n = u.shape[0], j, lo_j, hi_j
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
    indptr_a = counts_a.sum(axis=0) if nt > 1 else counts_a[0]
    del counts_a
    cdef int64_t[::1] indptr = indptr_a
    with nogil:
        for j in range(n_users):
            indptr[j + 1] += indptr[j]
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
