# cython: language_level=3
"""Per-user ranking metrics of top-N lists against sorted sets of relevant items."""
from cython.parallel cimport prange
from libc.math cimport log2
from libc.stdint cimport int64_t


cdef inline bint _contains(const int64_t[::1] a, Py_ssize_t lo, Py_ssize_t hi,
                           int64_t x) noexcept nogil:
    """Binary search of x in the sorted slice a[lo:hi]."""
    cdef Py_ssize_t mid, end = hi
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and a[lo] == x


def ranking_per_user(const int64_t[:, ::1] rec, Py_ssize_t k,
                     const int64_t[::1] rel_indptr, const int64_t[::1] rel_indices,
                     double[:, ::1] out, int n_threads):
    """For each row u, with the first ``k`` entries of ``rec[u]`` (item indices, -1 for no
    item) and the relevant items ``rel_indices[rel_indptr[u]:rel_indptr[u + 1]]`` (sorted,
    distinct), write into ``out[u]``: precision@k, recall@k, AP@k, NDCG@k, hit (binary
    relevance; see mfkit.metrics for the definitions)."""
    cdef Py_ssize_t n_rows = rec.shape[0], u, j, lo, hi, n_rel, m
    cdef double hits, ap, dcg, idcg
    if k < 1 or k > rec.shape[1]:
        raise ValueError(f"k must be between 1 and {rec.shape[1]}, got {k}")
    if rel_indptr.shape[0] != n_rows + 1 or out.shape[0] != n_rows or out.shape[1] != 5:
        raise ValueError("rel_indptr / out do not match the rows of rec")
    if rel_indptr[0] != 0 or rel_indptr[n_rows] != rel_indices.shape[0]:
        raise ValueError("malformed relevant-item CSR")
    with nogil:
        for u in prange(n_rows, num_threads=n_threads, schedule='static'):
            lo = rel_indptr[u]
            hi = rel_indptr[u + 1]
            n_rel = hi - lo
            hits = 0.0
            ap = 0.0
            dcg = 0.0
            for j in range(k):
                if rec[u, j] >= 0 and _contains(rel_indices, lo, hi, rec[u, j]):
                    hits = hits + 1.0
                    ap = ap + hits / (j + 1.0)
                    dcg = dcg + 1.0 / log2(j + 2.0)
            idcg = 0.0
            for m in range(min(k, n_rel)):
                idcg = idcg + 1.0 / log2(m + 2.0)
            out[u, 0] = hits / k
            if n_rel > 0:
                out[u, 1] = hits / n_rel
                out[u, 2] = ap / min(k, n_rel)
                out[u, 3] = dcg / idcg
            else:
                out[u, 1] = 0.0
                out[u, 2] = 0.0
                out[u, 3] = 0.0
            out[u, 4] = 1.0 if hits > 0 else 0.0
