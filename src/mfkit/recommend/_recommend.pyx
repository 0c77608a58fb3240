# cython: language_level=3
"""Top-N selection: score blocks of query rows against packed item panels, keep the best n.

Each parallel task takes a block of query rows. For one chunk of item panels at a time
(sized to stay in the L2 cache) it scores four rows against one panel of 16 items in
registers (``mf_score4_*`` in _recommend.h) and feeds the 64 scores straight into each
row's running top-n list, which lives in the output arrays. No users x items score matrix
is ever formed and nothing is sorted in full: a candidate costs one comparison against the
row's current n-th best score unless it beats it.

Order: higher score first; equal scores keep the lower item index first (candidates are
visited in increasing item index and a new one must beat the n-th best strictly).

Paths (``isa``): the baseline scores each tile exactly; avx2 and avx512 score it with fused
multiply-adds and use that only to pick candidates (with a bound on the rounding
difference), rescoring each candidate exactly before it enters a list (see _recommend.h).
Every path returns the same lists, ids and scores, bit-identical to ``predict()``, and each
is bit-identical for any ``n_threads``.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport fabs, sqrt
from libc.stdint cimport int32_t, int64_t

import numpy as np

cdef extern from "_recommend.h" nogil:
    const int MFKIT_PANEL
    int mf_score4_select_f32(const float *p0, const float *p1, const float *p2,
                             const float *p3, const float *panel, int k, const double *add,
                             const double *base, const double *thresh, int wide,
                             float *tile, double *s)
    int mf_score4_select_f64(const double *p0, const double *p1, const double *p2,
                             const double *p3, const double *panel, int k,
                             const double *add, const double *base, const double *thresh,
                             int wide, double *tile, double *s)
    int mf_have_avx512()
    int mf_score8_filter_f32(int isa, const float *const *p, const float *panel, int k,
                             const double *add, const double *qn, const double *base,
                             const double *pn, const double *thresh, float *tile, double *s)
    int mf_score8_filter_f64(int isa, const double *const *p, const double *panel, int k,
                             const double *add, const double *qn, const double *base,
                             const double *pn, const double *thresh, double *tile, double *s)
    double mf_rescore_f32(const float *p, const float *panel, int w, int k)
    double mf_rescore_f64(const double *p, const double *panel, int w, int k)
    double mf_topn_margin(int k, int itemsize)
    int mf_topn_have_filter()

cdef extern from "_isa.h" nogil:
    int mfkit_cpu_isa()

cdef double REL = 8.881784197001252e-16  # MFKIT_TOPN_REL, 2^-50

cdef enum:
    PANEL = 16  # items per packed panel (MFKIT_PANEL)
    GROUP = 8  # query rows scored together (two 4-row tiles on the baseline)

# queries per parallel task and item panels per cache chunk
cdef Py_ssize_t BLOCK_ROWS = 64
cdef Py_ssize_t CHUNK_BYTES = 256 * 1024


def panel_width():
    """Items per packed panel (the layout :func:`pack_items` produces)."""
    return MFKIT_PANEL


cdef inline int _score4_select(const floating *p0, const floating *p1,
                               const floating *p2, const floating *p3, const floating *panel, int k,
                               const double *add, const double *base, const double *thresh,
                               int wide, floating *tile, double *s) noexcept nogil:
    if floating is float:
        return mf_score4_select_f32(p0, p1, p2, p3, panel, k, add, base, thresh, wide, tile, s)
    else:
        return mf_score4_select_f64(p0, p1, p2, p3, panel, k, add, base, thresh, wide, tile, s)


cdef inline int _filter8(int isa, const floating **p, const floating *panel, int k,
                         const double *add, const double *qn, const double *base,
                         const double *pn, const double *thresh, floating *tile,
                         double *s) noexcept nogil:
    if floating is float:
        return mf_score8_filter_f32(isa, p, panel, k, add, qn, base, pn, thresh, tile, s)
    else:
        return mf_score8_filter_f64(isa, p, panel, k, add, qn, base, pn, thresh, tile, s)


cdef inline double _rescore(const floating *p, const floating *panel, int w,
                            int k) noexcept nogil:
    if floating is float:
        return mf_rescore_f32(p, panel, w, k)
    else:
        return mf_rescore_f64(p, panel, w, k)


cdef inline void _insert(double *scores, int64_t *items, Py_ssize_t n, double s,
                         int64_t item) noexcept nogil:
    """Put (s, item) into the sorted top-n list, dropping the last entry; entries with an
    equal score stay ahead of the newcomer."""
    cdef Py_ssize_t pos = n - 1
    while pos > 0 and scores[pos - 1] < s:
        scores[pos] = scores[pos - 1]
        items[pos] = items[pos - 1]
        pos -= 1
    scores[pos] = s
    items[pos] = item


cdef void _topn_block(const floating[:, ::1] P, const int64_t[::1] rows,
                      const floating[:, ::1] panels, const int64_t[::1] cand,
                      const double[::1] item_add, const double[::1] row_add,
                      const int64_t[::1] seen_indptr, const int32_t[::1] seen_indices,
                      const int64_t[::1] seen_row, int64_t[::1] seen_pos,
                      int64_t[:, ::1] out_items, double[:, ::1] out_scores,
                      Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t chunk_panels,
                      int wide, int isa, const double[::1] item_margin) noexcept nogil:
    cdef floating tile[GROUP * PANEL]
    cdef double s[GROUP * PANEL]
    cdef double base[GROUP]
    cdef double thresh[GROUP]
    cdef double pn[GROUP]
    cdef double acc, sc
    cdef Py_ssize_t n = out_items.shape[1]
    cdef Py_ssize_t n_panels = panels.shape[0]
    cdef int k = P.shape[1], f
    cdef bint has_seen = seen_row.shape[0] > 0
    cdef Py_ssize_t c0, c1, g, pnl, uu, w, q, sp, send, ng
    cdef const floating *prow[GROUP]
    cdef int mask
    cdef int64_t item
    cdef double *srow
    cdef int64_t *irow

    for q in range(q0, q1):
        if has_seen and seen_row[q] >= 0:
            seen_pos[q] = seen_indptr[seen_row[q]]
    c0 = 0
    while c0 < n_panels:
        c1 = min(c0 + chunk_panels, n_panels)
        g = q0
        while g < q1:
            ng = min(<Py_ssize_t>GROUP, q1 - g)
            for uu in range(GROUP):
                # a short last group repeats its last row; those scores are ignored
                q = g + min(uu, ng - 1)
                prow[uu] = &P[rows[q], 0]
                base[uu] = row_add[q]
                thresh[uu] = out_scores[q, n - 1]
                if isa > 0:
                    acc = 0.0
                    for f in range(k):
                        acc = acc + <double>prow[uu][f] * <double>prow[uu][f]
                    pn[uu] = sqrt(acc)
            for pnl in range(c0, c1):
                # the same sums, in the same order, as predict(): ((mu + b_u) + b_i) + p.q;
                # padding slots have item_add = -inf and never pass
                if isa > 0:
                    mask = _filter8(isa, prow, &panels[pnl, 0], k, &item_add[pnl * PANEL],
                                    &item_margin[pnl * PANEL], base, pn, thresh, tile, s)
                else:
                    mask = _score4_select(prow[0], prow[1], prow[2], prow[3], &panels[pnl, 0],
                                          k, &item_add[pnl * PANEL], base, thresh, wide, tile,
                                          s)
                    if ng > 4:
                        mask |= _score4_select(prow[4], prow[5], prow[6], prow[7],
                                               &panels[pnl, 0], k, &item_add[pnl * PANEL],
                                               &base[4], &thresh[4], wide, &tile[4 * PANEL],
                                               &s[4 * PANEL]) << 4
                if mask == 0:
                    continue
                for uu in range(ng):
                    if not (mask & (1 << uu)):
                        continue
                    q = g + uu
                    srow = &out_scores[q, 0]
                    irow = &out_items[q, 0]
                    for w in range(PANEL):
                        sc = s[uu * PANEL + w]
                        if isa > 0:
                            # a candidate of the fused filter: its exact score decides
                            if not (sc + (pn[uu] * item_margin[pnl * PANEL + w]
                                          + REL * fabs(sc)) > thresh[uu]):
                                continue
                            sc = (base[uu] + item_add[pnl * PANEL + w]) + \
                                _rescore(prow[uu], &panels[pnl, 0], <int>w, k)
                        if not (sc > thresh[uu]):
                            continue
                        item = cand[pnl * PANEL + w]
                        if has_seen and seen_row[q] >= 0:
                            sp = seen_pos[q]
                            send = seen_indptr[seen_row[q] + 1]
                            while sp < send and seen_indices[sp] < item:
                                sp += 1
                            seen_pos[q] = sp
                            if sp < send and seen_indices[sp] == item:
                                continue
                        _insert(srow, irow, n, sc, item)
                        thresh[uu] = srow[n - 1]
            g += GROUP
        c0 = c1


def topn(const floating[:, ::1] P, const int64_t[::1] rows,
         const floating[:, ::1] panels, const int64_t[::1] cand,
         const double[::1] item_add, const double[::1] row_add,
         const int64_t[::1] seen_indptr, const int32_t[::1] seen_indices,
         const int64_t[::1] seen_row,
         int64_t[:, ::1] out_items, double[:, ::1] out_scores, int n_threads,
         bint use_avx512=True, int isa=0):
    """The best ``n = out_items.shape[1]`` candidates for each query row.

    ``P[rows[q]]`` is query q's factor row. ``panels`` holds the candidate items' factors
    packed 16 items per row (shape ``(ceil(n_cand / 16), 16 * k)``, layout
    ``[f * 16 + w]``, zero padded) and ``cand[slot]`` the item index of each packed slot,
    strictly increasing. Score = ``(row_add[q] + item_add[slot]) + P[rows[q]] . factors``;
    ``item_add`` covers every packed slot, with -inf on the padding slots. Items listed in
    the CSR row ``seen_row[q]`` of (``seen_indptr``, ``seen_indices``) are skipped (no row:
    -1; empty ``seen_row``: nothing is skipped). On return the rows of ``out_items`` /
    ``out_scores`` hold item indices / scores, best first; slots without a candidate keep
    -1 / -inf. ``use_avx512=False`` forces the portable threshold test of the baseline
    path (same results). ``isa`` (0 baseline, 1 avx2, 2 avx512) picks the scoring path;
    every path gives the same lists.
    """
    cdef Py_ssize_t n_q = rows.shape[0], n = out_items.shape[1]
    cdef Py_ssize_t k = P.shape[1], n_blocks, b, q, j, chunk_panels
    cdef int wide
    if panels.shape[1] != PANEL * k:
        raise ValueError("panels must have 16 * k columns")
    if cand.shape[0] > panels.shape[0] * PANEL:
        raise ValueError("more candidates than packed slots")
    if out_scores.shape[0] != n_q or out_items.shape[0] != n_q or out_scores.shape[1] != n:
        raise ValueError("out_items and out_scores must have shape (len(rows), n)")
    if n < 1:
        raise ValueError("n must be at least 1")
    if row_add.shape[0] != n_q or item_add.shape[0] != panels.shape[0] * PANEL:
        raise ValueError("row_add / item_add have the wrong length")
    if seen_row.shape[0] not in (0, n_q):
        raise ValueError("seen_row must be empty or have one entry per query")
    if seen_row.shape[0] and seen_indptr.shape[0] == 0:
        raise ValueError("seen_row given without a seen CSR")
    for q in range(n_q):
        if rows[q] < 0 or rows[q] >= P.shape[0]:
            raise ValueError(f"query row {rows[q]} is out of range")
        if seen_row.shape[0] and seen_row[q] >= seen_indptr.shape[0] - 1:
            raise ValueError(f"seen row {seen_row[q]} is out of range")
    for j in range(1, cand.shape[0]):
        if cand[j] <= cand[j - 1]:
            raise ValueError("candidate items must be strictly increasing")
    if isa < 0 or isa > mfkit_cpu_isa():
        raise ValueError(f"isa={isa} is not a kernel path this CPU offers (0 .. "
                         f"{mfkit_cpu_isa()}); pass mfkit._core.isa.isa_level()")
    if not mf_topn_have_filter():
        isa = 0
    cdef double[::1] margin = np.zeros(panels.shape[0] * PANEL if isa > 0 else 1)
    cdef double c = mf_topn_margin(<int>k, <int>sizeof(floating)), acc
    cdef Py_ssize_t pnl, w, f
    if isa > 0:
        with nogil:
            # c |q_w| per packed slot (zero-padded slots: 0, and item_add -inf there)
            for pnl in range(panels.shape[0]):
                for w in range(PANEL):
                    acc = 0.0
                    for f in range(k):
                        acc = acc + <double>panels[pnl, f * PANEL + w] * \
                            <double>panels[pnl, f * PANEL + w]
                    margin[pnl * PANEL + w] = c * sqrt(acc)
    seen_pos_arr = np.zeros(max(n_q, 1), dtype=np.int64)
    cdef int64_t[::1] seen_pos = seen_pos_arr
    out_items[:, :] = -1
    out_scores[:, :] = -float("inf")
    chunk_panels = max(1, CHUNK_BYTES // (PANEL * k * sizeof(floating)))
    wide = mf_have_avx512() if use_avx512 else 0
    n_blocks = (n_q + BLOCK_ROWS - 1) // BLOCK_ROWS
    with nogil, parallel(num_threads=n_threads):
        for b in prange(n_blocks, schedule='dynamic', chunksize=1):
            _topn_block(P, rows, panels, cand, item_add, row_add, seen_indptr, seen_indices,
                        seen_row, seen_pos, out_items, out_scores, b * BLOCK_ROWS,
                        min((b + 1) * BLOCK_ROWS, n_q), chunk_panels, wide, isa, margin)
