# cython: language_level=3
"""Top-N selection: score blocks of query rows against packed item panels, keep the best n.

Each parallel task takes a block of query rows. For one chunk of item panels at a time
(sized to stay in the L2 cache) it scores four rows against one panel of 16 items in
registers (``mf_score4_*`` in _recommend.h) and feeds the 64 scores straight into each
row's running top-n list, which lives in the output arrays. No users x items score matrix
is ever formed and nothing is sorted in full: a candidate costs one comparison against the
row's current n-th best score unless it beats it.

Order: higher score first; equal scores keep the lower item index first (a newcomer
enters when it ranks before the n-th best by (score, index), whatever order the candidates
are visited in).

Skipping: the caller packs the candidates in decreasing order of a Cauchy-Schwarz bound
of their scores (b_i + r |q_i|), so each row's list fills with high scores within the first
panels; before scoring a panel, each row compares a rigorous upper bound of the panel's
exact scores (its bias and norm terms, with the rounding accounted for; mf_panel_live in
_recommend.h) with its current n-th best, and a panel no row of the group can use is
skipped. Only items that provably cannot enter a list are skipped, so the lists are the
same as without it; how much is skipped depends on the model (the spread of the item
biases and norms against the spread of the dot products).

Paths (``isa``): the baseline scores each tile exactly; avx2 and avx512 score it with fused
multiply-adds and use that only to pick candidates (with a bound on the rounding
difference), rescoring each candidate exactly before it enters a list (see _recommend.h).
On a CPU with AVX-512 VNNI the avx512 path of a float32 model screens with int8 instead
(``_screen.h``): each item and query row is quantized with its own scale, the int8 dot
products (vpdpbusd: 64 per instruction against 16 float32 multiply-adds) and a bound of the
quantization and rounding errors drop the slots that cannot reach a row's n-th best, and
the rest are scored exactly, 16 at a time, in the order of ``predict()``. There the
seen items of a block of rows are kept as bits in slot order, so a seen slot is dropped
before it is scored. Every path returns the same lists, ids and scores, bit-identical to
``predict()``, and each is bit-identical for any ``n_threads``.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free
from libc.math cimport INFINITY, NAN, fabs, isfinite, nextafterf, rint, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t

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
                             const double *pn, const double *thresh, float *tile, double *s,
                             int live)
    int mf_score8_filter_f64(int isa, const double *const *p, const double *panel, int k,
                             const double *add, const double *qn, const double *base,
                             const double *pn, const double *thresh, double *tile,
                             double *s, int live)
    int mf_panel_live(const double *a, const double *b, double amax, double bmax,
                      const double *base_up, const double *pn, const double *thresh, int ng,
                      int fine)
    int mf_rows_done(double amax, double bmax, const double *base_up, const double *pn,
                     const double *thresh, int ng)
    double mf_rescore_f32(const float *p, const float *panel, int w, int k)
    double mf_rescore_f64(const double *p, const double *panel, int w, int k)
    double mf_topn_margin(int k, int itemsize)
    int mf_topn_have_filter()

cdef extern from "_isa.h" nogil:
    int mfkit_isa_runs(int isa)

cdef extern from "_screen.h" nogil:
    int mf_have_vnni()
    void mf_exact16_f32(const float *p, const float *panel, int k, float *out)
    int mf_screen8(const int32_t *const *words, const uint8_t *panel8, int kw,
                   const float *s, const float *add, const float *b, const float *d,
                   const int32_t *corr, const float *t, const float *a, const float *c,
                   const float *thr, uint16_t *out, int live)

cdef double REL = 8.881784197001252e-16  # MFKIT_TOPN_REL, 2^-50
cdef double BOUND_REL = 3.552713678800501e-15  # MFKIT_BOUND_REL, 2^-48

# the int8 screen (_screen.h, whose comment derives the bound): the cushion of its float32
# constants, the inflation of the norms computed in double, and the magnitude limits that
# keep its float arithmetic finite
cdef double CUSH = 9.5367431640625e-07  # 2^-20
cdef double NORM_INFL = 1.0000000009313226  # 1 + 2^-30
cdef double TINY = 7.52316384526264e-37  # 2^-120
cdef double SCREEN_MAX = 1099511627776.0  # 2^40
cdef double THRESH_MAX = 1.2676506002282294e30  # 2^100
cdef int SCREEN_MAX_K = 1024  # |P8 . Q8| <= 127^2 k stays below 2^24 (exact in float32)

cdef enum:
    PANEL = 16  # items per packed panel (MFKIT_PANEL)
    GROUP = 8  # query rows scored together (two 4-row tiles on the baseline)
    MAX_BLOCK = 64  # the largest BLOCK_ROWS (a multiple of GROUP)
    MAX_GROUPS = 8  # MAX_BLOCK / GROUP

# queries per parallel task and item panels per cache chunk
cdef Py_ssize_t BLOCK_ROWS = MAX_BLOCK
cdef Py_ssize_t CHUNK_BYTES = 256 * 1024


def have_screen():
    """Whether this CPU and build run the int8 screen (AVX-512 with VNNI; ``_screen.h``)."""
    return bool(mf_have_vnni())


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
                         double *s, int live) noexcept nogil:
    if floating is float:
        return mf_score8_filter_f32(isa, p, panel, k, add, qn, base, pn, thresh, tile, s,
                                    live)
    else:
        return mf_score8_filter_f64(isa, p, panel, k, add, qn, base, pn, thresh, tile, s,
                                    live)


cdef inline double _rescore(const floating *p, const floating *panel, int w,
                            int k) noexcept nogil:
    if floating is float:
        return mf_rescore_f32(p, panel, w, k)
    else:
        return mf_rescore_f64(p, panel, w, k)


cdef inline float _up(double x) noexcept nogil:
    """x rounded to float32 toward +inf (|x| below float32's largest value, or NaN)."""
    cdef float f = <float>x
    if <double>f < x:
        f = nextafterf(f, INFINITY)
    return f


cdef inline float _down(double x) noexcept nogil:
    """x rounded to float32 toward -inf (|x| below float32's largest value, or NaN)."""
    cdef float f = <float>x
    if <double>f > x:
        f = nextafterf(f, -INFINITY)
    return f


cdef inline float _screen_thresh(double thresh, double base) noexcept nogil:
    """A row's float32 threshold of the int8 screen: at most thresh - base, less the cushions
    of _screen.h; NaN (no slot is dropped) when it is not finite or too large."""
    cdef double x = (thresh - base) - CUSH * (fabs(thresh) + fabs(base)) - TINY
    if not (fabs(x) <= THRESH_MAX):
        return NAN
    return _down(x)


cdef int _quantize(const float *x, Py_ssize_t stride, int k, signed char *code,
                   double *scale, double *norms) noexcept nogil:
    """Codes round(x / s) in [-127, 127] of a float32 row (stride apart) with its scale s,
    a float32 about max |x| / 127; norms = (|x|, |x - s code|, |code|), each computed in
    double and inflated by NORM_INFL so it is an upper bound. Returns 0 (codes 0) for a
    row with a non-finite value."""
    cdef double mx = 0.0, v, e, ax = 0.0, ae = 0.0, ac = 0.0
    cdef float sf
    cdef int f, finite = 1
    for f in range(k):
        v = fabs(<double>x[f * stride])
        if not isfinite(v):
            finite = 0
        elif v > mx:
            mx = v
    sf = <float>(mx / 127.0)
    for f in range(k):
        v = <double>x[f * stride]
        code[f] = 0
        if finite and sf > 0:
            e = rint(v / <double>sf)
            code[f] = <signed char>(127.0 if e > 127.0 else (-127.0 if e < -127.0 else e))
        e = v - <double>sf * <double>code[f]  # sf * code is exact in double
        ax = ax + v * v
        ae = ae + e * e
        ac = ac + <double>code[f] * <double>code[f]
    scale[0] = sf
    norms[0] = sqrt(ax) * NORM_INFL
    norms[1] = sqrt(ae) * NORM_INFL
    norms[2] = sqrt(ac) * NORM_INFL
    return finite


cdef void _screen_items(const float[:, ::1] panels, const double[::1] item_add, int k,
                        uint8_t[:, ::1] panels8, float[::1] s8, float[::1] add8,
                        float[::1] b8, float[::1] d8) noexcept nogil:
    """The int8 panels and the per-slot float32 constants of the screen (_screen.h):
    s8 = s, add8 >= add + 2^-20 |add|, b8 >= |q| (1 + 2^-20), d8 >= |e_q| (1 + 2^-20) +
    2^-20 s |Q8|; b8 = NaN (never dropped) for a non-finite row or one past SCREEN_MAX."""
    cdef signed char code[1024]
    cdef double norms[3]
    cdef double sc, ad, e
    cdef Py_ssize_t pnl, w, f, slot
    cdef int finite
    for pnl in range(panels.shape[0]):
        for f in range(panels8.shape[1]):
            panels8[pnl, f] = 128
        for w in range(PANEL):
            slot = pnl * PANEL + w
            finite = _quantize(&panels[pnl, w], PANEL, k, code, &sc, norms)
            for f in range(k):
                panels8[pnl, (f // 4) * 64 + w * 4 + f % 4] = <uint8_t>(code[f] + 128)
            e = sc * norms[2]
            s8[slot] = <float>sc
            if finite and max(max(sc, e), max(norms[0], norms[1])) <= SCREEN_MAX:
                b8[slot] = _up(norms[0] * (1.0 + CUSH))
                d8[slot] = _up(norms[1] * (1.0 + CUSH) + CUSH * e)
            else:
                b8[slot], d8[slot] = NAN, 0.0
            ad = item_add[slot]
            if ad == -INFINITY:
                add8[slot] = -INFINITY  # padding, or an item whose score is -inf
            elif fabs(ad) <= THRESH_MAX:
                add8[slot] = _up(ad + CUSH * fabs(ad))
            else:
                add8[slot] = NAN


cdef void _screen_row(const float *p, int k, double c, int32_t *words, int32_t *corr,
                      float *t, float *a, float *cc) noexcept nogil:
    """A query row's packed codes (four per int32, zero padded) and float32 constants:
    t = its scale, a >= (|e_p| + (c + 2^-50) |p|) (1 + 2^-20), cc >= t |P8| (1 + 2^-20),
    corr = 128 sum P8; a = NaN (the row drops nothing) for a non-finite row or one past
    SCREEN_MAX."""
    cdef signed char code[1024]
    cdef double norms[3]
    cdef double sc, av, cv
    cdef int f, g, total = 0
    cdef uint32_t word
    cdef int finite = _quantize(p, 1, k, code, &sc, norms)
    for g in range((k + 3) // 4):
        word = 0
        for f in range(4 * g, min(4 * g + 4, k)):
            word = word | ((<uint32_t>(<uint8_t>code[f])) << (8 * (f - 4 * g)))
            total = total + code[f]
        words[g] = <int32_t>word
    corr[0] = 128 * total
    av = norms[1] + (c + REL) * norms[0]
    cv = sc * norms[2]
    t[0] = <float>sc
    if finite and max(max(sc, av), cv) <= SCREEN_MAX:
        a[0] = _up(av * (1.0 + CUSH))
        cc[0] = _up(cv * (1.0 + CUSH))
    else:
        a[0], cc[0] = NAN, 0.0


cdef inline bint _better(double s, int64_t item, double s2, int64_t item2) noexcept nogil:
    """Whether (s, item) ranks before (s2, item2): a higher score, or an equal score and a
    lower item index. An empty place holds (-inf, -1): nothing scoring -inf or NaN enters."""
    return s > s2 or (s == s2 and item < item2)


cdef inline void _insert(double *scores, int64_t *items, Py_ssize_t n, double s,
                         int64_t item) noexcept nogil:
    """Put (s, item) into the top-n list sorted by :func:`_better`, dropping the last
    entry (the caller has checked that (s, item) ranks before it)."""
    cdef Py_ssize_t pos = n - 1
    while pos > 0 and _better(s, item, scores[pos - 1], items[pos - 1]):
        scores[pos] = scores[pos - 1]
        items[pos] = items[pos - 1]
        pos -= 1
    scores[pos] = s
    items[pos] = item


cdef inline bint _is_seen(const int32_t[::1] seen_indices, int64_t lo, int64_t hi,
                          int64_t item) noexcept nogil:
    """Whether item is in the sorted slice seen_indices[lo:hi] (binary search: the
    candidates arrive in the order of their bounds, not of their indices)."""
    cdef int64_t mid, end = hi
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if seen_indices[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and seen_indices[lo] == item


cdef void _screened(const float *p, const float *panel, int k, unsigned hits,
                    Py_ssize_t slot0, Py_ssize_t n_cand, const int64_t[::1] cand,
                    const double[::1] item_add, double base, double *thresh,
                    float *thr8, double *srow, int64_t *irow, Py_ssize_t n, bint has_seen,
                    const int64_t[::1] seen_indptr, const int32_t[::1] seen_indices,
                    int64_t seen_r, float *exact) noexcept nogil:
    """The slots of one panel that passed a row's int8 screen (bits of hits): each scored
    exactly (the order of predict()) and entered into the row's list if it ranks there."""
    cdef Py_ssize_t w, slot
    cdef double sc
    cdef int64_t item
    mf_exact16_f32(p, panel, k, exact)
    for w in range(PANEL):
        if not (hits & (1u << w)):
            continue
        slot = slot0 + w
        if slot >= n_cand:
            break
        sc = (base + item_add[slot]) + <double>exact[w]
        if not (sc >= thresh[0]):
            continue
        item = cand[slot]
        if not _better(sc, item, srow[n - 1], irow[n - 1]):
            continue
        if has_seen and seen_r >= 0 and _is_seen(seen_indices, seen_indptr[seen_r],
                                                 seen_indptr[seen_r + 1], item):
            continue
        _insert(srow, irow, n, sc, item)
        thresh[0] = srow[n - 1]
        thr8[0] = _screen_thresh(thresh[0], base)


cdef void _mark_seen(uint16_t *seen_bits, Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t n_panels,
                     const int64_t[::1] seen_indptr, const int32_t[::1] seen_indices,
                     const int64_t[::1] seen_row, const int64_t[::1] slot_of,
                     bint on) noexcept nogil:
    """Set (on) or clear the bits of the seen candidates of rows q0..q1 in seen_bits (row
    q - q0, panel p at [(q - q0) * n_panels + p], bit w for slot 16 p + w)."""
    cdef Py_ssize_t q, j, it, sl
    cdef uint16_t *row
    for q in range(q0, q1):
        if seen_row[q] < 0:
            continue
        row = seen_bits + (q - q0) * n_panels
        for j in range(seen_indptr[seen_row[q]], seen_indptr[seen_row[q] + 1]):
            it = seen_indices[j]
            if it < 0 or it >= slot_of.shape[0] or slot_of[it] < 0:
                continue
            sl = slot_of[it]
            if on:
                row[sl // PANEL] |= <uint16_t>(1u << (sl % PANEL))
            else:
                row[sl // PANEL] = 0


cdef void _topn_block(const floating[:, ::1] P, const int64_t[::1] rows,
                      const floating[:, ::1] panels, const int64_t[::1] cand,
                      const double[::1] item_add, const double[::1] row_add,
                      const int64_t[::1] seen_indptr, const int32_t[::1] seen_indices,
                      const int64_t[::1] seen_row,
                      int64_t[:, ::1] out_items, double[:, ::1] out_scores,
                      Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t chunk_panels,
                      int wide, int isa, const double[::1] item_margin,
                      const double[::1] bound_a, const double[::1] bound_b,
                      const double[::1] panel_a, const double[::1] panel_b,
                      const double[::1] rest_a, const double[::1] rest_b,
                      bint use8, const uint8_t[:, ::1] panels8, const float[::1] s8,
                      const float[::1] add8, const float[::1] b8, const float[::1] d8,
                      const int32_t[:, ::1] words, const int32_t[::1] corr8,
                      const float[::1] t8, const float[::1] a8,
                      const float[::1] c8, const int64_t[::1] slot_of,
                      uint16_t *seen_bits) noexcept nogil:
    cdef floating tile[GROUP * PANEL]
    cdef float exact[PANEL]
    cdef uint16_t hits[GROUP]
    cdef const int32_t *wrow[GROUP]
    cdef int32_t gcorr[GROUP]
    cdef float gt[GROUP]
    cdef float ga[GROUP]
    cdef float gc[GROUP]
    cdef float gthr[GROUP]
    cdef int kw = <int>words.shape[1]
    cdef double s[GROUP * PANEL]
    cdef double base[GROUP]
    cdef double base_up[GROUP]
    cdef double thresh[GROUP]
    cdef double pn[GROUP]
    cdef double block_pn[MAX_BLOCK]
    cdef double block_up[MAX_BLOCK]
    cdef bint done[MAX_GROUPS]
    cdef double acc, sc
    cdef Py_ssize_t n = out_items.shape[1]
    cdef Py_ssize_t n_panels = panels.shape[0], n_cand = cand.shape[0]
    cdef int k = P.shape[1], f
    cdef bint has_seen = seen_row.shape[0] > 0
    cdef Py_ssize_t c0, c1, g, pnl, uu, w, q, ng, slot
    cdef const floating *prow[GROUP]
    cdef int mask, live
    cdef Py_ssize_t gi
    cdef int64_t item
    cdef double *srow
    cdef int64_t *irow

    for q in range(q0, q1):
        # the rows' norms and bound offsets (see mf_panel_live)
        acc = 0.0
        for f in range(k):
            acc = acc + <double>P[rows[q], f] * <double>P[rows[q], f]
        block_pn[q - q0] = sqrt(acc)
        block_up[q - q0] = row_add[q] + BOUND_REL * fabs(row_add[q])
        if not isfinite(block_pn[q - q0]):
            block_up[q - q0] = NAN  # no bound: the row stays live on every panel
    for gi in range(MAX_GROUPS):
        done[gi] = False
    # under the screen: the block's seen items as bits in slot order (16 per panel, one
    # uint16 per row and panel), so a screened slot that was seen costs no exact score
    # and no search; the bits are cleared again at the end
    cdef bint bits = use8 and has_seen and seen_bits != NULL
    if bits:
        _mark_seen(seen_bits, q0, q1, n_panels, seen_indptr, seen_indices, seen_row, slot_of,
                   True)
    c0 = 0
    while c0 < n_panels:
        c1 = min(c0 + chunk_panels, n_panels)
        g = q0
        while g < q1:
            ng = min(<Py_ssize_t>GROUP, q1 - g)
            gi = (g - q0) // GROUP
            if done[gi]:
                g += GROUP
                continue
            for uu in range(GROUP):
                # a short last group repeats its last row; those scores are ignored
                q = g + min(uu, ng - 1)
                prow[uu] = &P[rows[q], 0]
                base[uu] = row_add[q]
                base_up[uu] = block_up[q - q0]
                pn[uu] = block_pn[q - q0]
                thresh[uu] = out_scores[q, n - 1]
                if use8:
                    wrow[uu] = &words[q, 0]
                    gcorr[uu], gt[uu], ga[uu], gc[uu] = corr8[q], t8[q], a8[q], c8[q]
                    gthr[uu] = _screen_thresh(thresh[uu], base[uu])
            for pnl in range(c0, c1):
                # rows whose bound on this panel's scores reaches their n-th best
                live = mf_panel_live(&bound_a[pnl * PANEL], &bound_b[pnl * PANEL],
                                     panel_a[pnl], panel_b[pnl], base_up, pn, thresh,
                                     <int>ng, not use8)
                if live == 0:
                    # now and then: whether no later panel can serve any row of the group
                    if (pnl & 7) == 0 and mf_rows_done(rest_a[pnl], rest_b[pnl], base_up,
                                                       pn, thresh, <int>ng):
                        done[gi] = True
                        break
                    continue
                if floating is float:
                    if use8:
                        # the int8 screen; its survivors are scored exactly, 16 at a time
                        mask = mf_screen8(wrow, &panels8[pnl, 0], kw, &s8[pnl * PANEL],
                                          &add8[pnl * PANEL], &b8[pnl * PANEL],
                                          &d8[pnl * PANEL], gcorr, gt, ga, gc, gthr, hits,
                                          live) & live
                        for uu in range(ng):
                            if not (mask & (1 << uu)):
                                continue
                            if bits:
                                hits[uu] &= ~seen_bits[(g + uu - q0) * n_panels + pnl]
                                if hits[uu] == 0:
                                    continue
                            _screened(prow[uu], &panels[pnl, 0], k, hits[uu],
                                      pnl * PANEL, n_cand, cand, item_add, base[uu],
                                      &thresh[uu], &gthr[uu], &out_scores[g + uu, 0],
                                      &out_items[g + uu, 0], n, has_seen and not bits,
                                      seen_indptr, seen_indices, seen_row[g + uu]
                                      if has_seen else -1, exact)
                        continue
                # the same sums, in the same order, as predict(): ((mu + b_u) + b_i) + p.q;
                # padding slots have item_add = -inf and never pass
                if isa > 0:
                    mask = _filter8(isa, prow, &panels[pnl, 0], k, &item_add[pnl * PANEL],
                                    &item_margin[pnl * PANEL], base, pn, thresh, tile, s,
                                    live)
                else:
                    mask = 0
                    if live & 0x0F:
                        mask = _score4_select(prow[0], prow[1], prow[2], prow[3],
                                              &panels[pnl, 0], k, &item_add[pnl * PANEL],
                                              base, thresh, wide, tile, s)
                    if live & 0xF0:
                        mask |= _score4_select(prow[4], prow[5], prow[6], prow[7],
                                               &panels[pnl, 0], k, &item_add[pnl * PANEL],
                                               &base[4], &thresh[4], wide, &tile[4 * PANEL],
                                               &s[4 * PANEL]) << 4
                mask &= live
                if mask == 0:
                    continue
                for uu in range(ng):
                    if not (mask & (1 << uu)):
                        continue
                    q = g + uu
                    srow = &out_scores[q, 0]
                    irow = &out_items[q, 0]
                    for w in range(PANEL):
                        slot = pnl * PANEL + w
                        if slot >= n_cand:
                            break
                        sc = s[uu * PANEL + w]
                        if isa > 0:
                            # a candidate of the fused filter: its exact score decides
                            if not (sc + (pn[uu] * item_margin[slot] + REL * fabs(sc))
                                    >= thresh[uu]):
                                continue
                            sc = (base[uu] + item_add[slot]) + \
                                _rescore(prow[uu], &panels[pnl, 0], <int>w, k)
                        if not (sc >= thresh[uu]):
                            continue
                        item = cand[slot]
                        if not _better(sc, item, srow[n - 1], irow[n - 1]):
                            continue
                        if has_seen and seen_row[q] >= 0 and _is_seen(
                                seen_indices, seen_indptr[seen_row[q]],
                                seen_indptr[seen_row[q] + 1], item):
                            continue
                        _insert(srow, irow, n, sc, item)
                        thresh[uu] = srow[n - 1]
            g += GROUP
        c0 = c1
    if bits:
        _mark_seen(seen_bits, q0, q1, n_panels, seen_indptr, seen_indices, seen_row, slot_of,
                   False)


def topn(const floating[:, ::1] P, const int64_t[::1] rows,
         const floating[:, ::1] panels, const int64_t[::1] cand,
         const double[::1] item_add, const double[::1] row_add,
         const int64_t[::1] seen_indptr, const int32_t[::1] seen_indices,
         const int64_t[::1] seen_row,
         int64_t[:, ::1] out_items, double[:, ::1] out_scores, int n_threads,
         bint use_avx512=True, int isa=0, bint prune=True, bint screen=True):
    """The best ``n = out_items.shape[1]`` candidates for each query row.

    ``P[rows[q]]`` is query q's factor row. ``panels`` holds the candidate items' factors
    packed 16 items per row (shape ``(ceil(n_cand / 16), 16 * k)``, layout
    ``[f * 16 + w]``, zero padded) and ``cand[slot]`` the item index of each packed slot
    (distinct, in any order; decreasing bounds make the skipping effective).
    Score = ``(row_add[q] + item_add[slot]) + P[rows[q]] . factors``;
    ``item_add`` covers every packed slot, with -inf on the padding slots. Items listed in
    the CSR row ``seen_row[q]`` of (``seen_indptr``, ``seen_indices``) are skipped (no row:
    -1; empty ``seen_row``: nothing is skipped). On return the rows of ``out_items`` /
    ``out_scores`` hold item indices / scores, best first; slots without a candidate keep
    -1 / -inf. ``use_avx512=False`` forces the portable threshold test of the baseline
    path (same results). ``isa`` (0 baseline, 1 avx2, 2 avx512; 3 neon scores as the
    baseline) picks the scoring path; every path gives the same lists. ``prune=False``
    scores every panel (no bound test; the same lists, for measuring what the skipping
    saves). ``screen`` lets the avx512 path of a float32 model screen the slots with int8
    dot products (``_screen.h``; on CPUs with AVX-512 VNNI, k <= 1024) and score exactly
    only the ones that may enter a list; ``screen=False`` keeps the float32 filter (the
    same lists either way).
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
    for j in range(cand.shape[0]):
        if cand[j] < 0:
            raise ValueError(f"candidate item {cand[j]} is negative")
    if not mfkit_isa_runs(isa):
        runs = [j for j in range(4) if mfkit_isa_runs(j)]
        raise ValueError(f"isa={isa} is not a kernel path this CPU offers (one of {runs}); "
                         "pass mfkit._core.isa.isa_level()")
    if not mf_topn_have_filter():
        isa = 0
    cdef Py_ssize_t n_slots = panels.shape[0] * PANEL
    cdef double[::1] margin = np.zeros(n_slots if isa > 0 else 1)
    cdef double[::1] bound_a = np.empty(n_slots)
    cdef double[::1] bound_b = np.empty(n_slots)
    cdef double[::1] panel_a = np.empty(panels.shape[0])
    cdef double[::1] panel_b = np.empty(panels.shape[0])
    cdef double[::1] rest_a = np.empty(panels.shape[0])
    cdef double[::1] rest_b = np.empty(panels.shape[0])
    cdef double c = mf_topn_margin(<int>k, <int>sizeof(floating)), acc, qn, ad
    cdef Py_ssize_t pnl, w, f, slot
    with nogil:
        for pnl in range(panels.shape[0]):
            panel_a[pnl] = -INFINITY
            panel_b[pnl] = 0.0
            for w in range(PANEL):
                slot = pnl * PANEL + w
                acc = 0.0
                for f in range(k):
                    acc = acc + <double>panels[pnl, f * PANEL + w] * \
                        <double>panels[pnl, f * PANEL + w]
                qn = sqrt(acc)
                if isa > 0:  # c |q_w| per packed slot (zero-padded slots: 0)
                    margin[slot] = c * qn
                # the bound of slot's scores for a row of norm pn: a + pn b (see
                # mf_panel_live); a non-finite slot gets a = +inf (never skipped)
                ad = item_add[slot]
                if not prune:  # +inf: every panel stays live
                    bound_a[slot], bound_b[slot] = INFINITY, 0.0
                elif ad == -INFINITY:
                    bound_a[slot], bound_b[slot] = -INFINITY, 0.0
                elif isfinite(ad) and isfinite(qn):
                    bound_a[slot] = ad + BOUND_REL * fabs(ad)
                    bound_b[slot] = qn * (1.0 + 3.0 * c + BOUND_REL)
                else:
                    bound_a[slot], bound_b[slot] = INFINITY, 0.0
                panel_a[pnl] = max(panel_a[pnl], bound_a[slot])
                panel_b[pnl] = max(panel_b[pnl], bound_b[slot])
        # the largest a and b of the panels from pnl on
        for pnl in range(panels.shape[0] - 1, -1, -1):
            rest_a[pnl], rest_b[pnl] = panel_a[pnl], panel_b[pnl]
            if pnl + 1 < panels.shape[0]:
                rest_a[pnl] = max(rest_a[pnl], rest_a[pnl + 1])
                rest_b[pnl] = max(rest_b[pnl], rest_b[pnl + 1])
    out_items[:, :] = -1
    out_scores[:, :] = -float("inf")
    # the int8 screen's panels and constants (dummies when it is off)
    cdef bint use8 = (screen and floating is float and isa >= 2 and mf_have_vnni()
                      and k <= SCREEN_MAX_K)
    cdef Py_ssize_t kw = (k + 3) // 4 if use8 else 1, n8 = n_slots if use8 else 1
    cdef uint8_t[:, ::1] panels8 = np.empty((panels.shape[0] if use8 else 1, 64 * kw),
                                            dtype=np.uint8)
    cdef float[::1] s8 = np.empty(n8, dtype=np.float32)
    cdef float[::1] add8 = np.empty(n8, dtype=np.float32)
    cdef float[::1] b8 = np.empty(n8, dtype=np.float32)
    cdef float[::1] d8 = np.empty(n8, dtype=np.float32)
    cdef int32_t[:, ::1] words = np.zeros((n_q if use8 else 1, kw), dtype=np.int32)
    cdef int32_t[::1] corr8 = np.empty(n_q if use8 else 1, dtype=np.int32)
    cdef float[::1] t8 = np.empty(n_q if use8 else 1, dtype=np.float32)
    cdef float[::1] a8 = np.empty(n_q if use8 else 1, dtype=np.float32)
    cdef float[::1] c8 = np.empty(n_q if use8 else 1, dtype=np.float32)
    if floating is float:
        if use8:
            with nogil:
                _screen_items(panels, item_add, <int>k, panels8, s8, add8, b8, d8)
            with nogil, parallel(num_threads=n_threads):
                for q in prange(n_q, schedule='static'):
                    _screen_row(&P[rows[q], 0], <int>k, c, &words[q, 0], &corr8[q], &t8[q],
                                &a8[q], &c8[q])
    # item index -> packed slot (-1: not a candidate), for the screen's seen bits
    cdef int64_t[::1] slot_of = np.full(
        (int(np.max(cand)) + 1 if use8 and seen_row.shape[0] and cand.shape[0] else 0), -1,
        dtype=np.int64)
    if slot_of.shape[0]:
        for j in range(cand.shape[0]):
            slot_of[cand[j]] = j
    cdef uint16_t *seen_bits
    cdef Py_ssize_t bits_len = BLOCK_ROWS * panels.shape[0] if slot_of.shape[0] else 0
    chunk_panels = max(1, CHUNK_BYTES // (PANEL * k * sizeof(floating)))
    wide = mf_have_avx512() if use_avx512 else 0
    n_blocks = (n_q + BLOCK_ROWS - 1) // BLOCK_ROWS
    with nogil, parallel(num_threads=n_threads):
        # per-thread scratch (NULL without the screen or on failure: seen items are then
        # searched for in their CSR rows, the same lists)
        seen_bits = <uint16_t *>calloc(bits_len, sizeof(uint16_t)) if bits_len else NULL
        try:
            for b in prange(n_blocks, schedule='dynamic', chunksize=1):
                _topn_block(P, rows, panels, cand, item_add, row_add, seen_indptr, seen_indices,
                            seen_row, out_items, out_scores, b * BLOCK_ROWS,
                            min((b + 1) * BLOCK_ROWS, n_q), chunk_panels, wide, isa, margin,
                            bound_a, bound_b, panel_a, panel_b, rest_a, rest_b, use8, panels8,
                            s8, add8, b8, d8, words, corr8, t8, a8, c8, slot_of, seen_bits)
        finally:
            free(seen_bits)
