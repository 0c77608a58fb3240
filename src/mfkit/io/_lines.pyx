# cython: language_level=3
"""Whole lines in a byte buffer: where to cut it into chunks that each start a line, how
many lines each chunk holds (the rows the tokenizer must have room for), how many newlines
a range holds (line numbers for error messages), and moving parsed rows together.

The parse engine calls these around ``_tokenize.parse_block``; they know nothing of fields.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memchr, memmove

import numpy as np

cdef enum:
    # ranges smaller than this are handled by one thread
    _PARALLEL_MIN = 1 << 20

PARALLEL_MIN = _PARALLEL_MIN


cdef int64_t count_nl(const unsigned char *b, int64_t p, int64_t e) noexcept nogil:
    """Number of newline bytes in [p, e); a branch-free loop the compiler vectorises."""
    cdef int64_t n = 0, j, k, stop
    cdef unsigned char acc
    j = p
    while j < e:
        # a byte counter cannot overflow within 255 bytes
        stop = j + 255 if e - j > 255 else e
        acc = 0
        for k in range(j, stop):
            acc += b[k] == 10
        n += acc
        j = stop
    return n


cdef int64_t count_lines_c(const unsigned char *b, int64_t p, int64_t e) noexcept nogil:
    """Lines in [p, e): newlines, plus one for a last line without a newline."""
    if e <= p:
        return 0
    return count_nl(b, p, e) + (0 if b[e - 1] == 10 else 1)


def count_newlines(const unsigned char[::1] buf, Py_ssize_t start, Py_ssize_t end,
                   int n_threads=1):
    """Number of b'\\n' bytes in buf[start:end]."""
    cdef int64_t n = 0
    cdef const unsigned char *b = &buf[0] if buf.shape[0] > 0 else NULL
    cdef int nt = max(1, min(n_threads, 64)) if end - start >= _PARALLEL_MIN else 1, th
    cdef int64_t span = end - start
    if start < 0 or end > buf.shape[0] or start > end:
        raise ValueError("count_newlines: range outside the buffer")
    with nogil:
        for th in prange(nt, schedule="static", chunksize=1, num_threads=nt):
            n += count_nl(b, start + span * th // nt, start + span * (th + 1) // nt)
    return n


def count_chunks(const unsigned char[::1] buf, list cuts, int n_threads):
    """Lines in each chunk buf[cuts[k]:cuts[k+1]] (the row capacity each chunk needs)."""
    cdef Py_ssize_t n_chunks = len(cuts) - 1, k
    cdef const unsigned char *b = &buf[0] if buf.shape[0] > 0 else NULL
    if n_chunks < 1:
        return []
    if cuts[0] < 0 or cuts[n_chunks] > buf.shape[0]:
        raise ValueError("count_chunks: cuts outside the buffer")
    starts_a = np.asarray(cuts[:n_chunks], dtype=np.int64)
    ends_a = np.asarray(cuts[1:], dtype=np.int64)
    out_a = np.zeros(n_chunks, dtype=np.int64)
    cdef int64_t[::1] starts = starts_a
    cdef int64_t[::1] ends = ends_a
    cdef int64_t[::1] out = out_a
    with nogil:
        for k in prange(n_chunks, schedule="static", chunksize=1, num_threads=n_threads):
            out[k] = count_lines_c(b, starts[k], ends[k])
    return out_a.tolist()


def split_points(const unsigned char[::1] buf, Py_ssize_t start, Py_ssize_t end, int n):
    """Up to n + 1 cut points start = c0 < c1 < ... = end, each just after a newline."""
    cdef list cuts = [start]
    cdef Py_ssize_t j, pos, last = start
    cdef const unsigned char *nl
    cdef const unsigned char *b = &buf[0] if buf.shape[0] > 0 else NULL
    for j in range(1, n):
        pos = start + (end - start) * j // n
        if pos <= last:
            continue
        nl = <const unsigned char *>memchr(b + pos, 10, <size_t>(end - pos))
        if nl == NULL:
            break
        pos = (nl - b) + 1
        if pos >= end:
            break
        if pos > last:
            cuts.append(pos)
            last = pos
    cuts.append(end)
    return cuts


def move_rows(a, Py_ssize_t src, Py_ssize_t dst, Py_ssize_t n):
    """a[dst:dst+n] = a[src:src+n] for a 1-d contiguous array, overlap allowed."""
    cdef unsigned char[::1] raw
    cdef Py_ssize_t w
    if n <= 0 or src == dst:
        return
    w = a.itemsize
    if src < 0 or dst < 0 or src + n > a.shape[0] or dst + n > a.shape[0]:
        raise ValueError("move_rows: range outside the array")
    raw = a.view(np.uint8)
    with nogil:
        memmove(&raw[dst * w], &raw[src * w], <size_t>(n * w))
