# cython: language_level=3
"""Tokenizer for numeric rating text: one nogil pass over a byte buffer, no Python objects.

A block of text (whole lines) is cut into chunks (a few per thread) at line boundaries
(``_lines``: cut points and line counts, an upper bound on each chunk's rows); the chunks
are parsed in parallel, each into its own slice of the output columns. Python glues the
slices together (``_lines.move_rows``) and carries the Netflix "current movie" across chunk
borders.

Every line is one of: blank (only whitespace), a comment (starts with the comment byte), a
Netflix movie header (``123:``), or a data line with exactly ``n_fields`` fields. A data line
that does not parse gets a reason code; the chunk stops at its first bad line (error mode) or
counts and skips it (skip mode), remembering the byte offsets of the first few bad lines so the
caller can show them with their line numbers.

Runs of strictly formatted lines go through the fast path in ``_tokenize.h`` first; the line
a run stops at comes here, so every value and every error is this parser's. Integer ids go to
int32 columns when the caller passes int32 arrays; an id they cannot hold stops the chunk
(``wide``) and the caller starts over with int64 columns.

Integers, decimals and dates are parsed by hand (``_numbers.pxd``); a decimal is the
correctly rounded double of its text (what Python's ``float()`` gives), and a rating is that
double rounded once to float32. Dates must exist in the calendar.
"""
from cython.parallel cimport prange
from libc.stdint cimport INT64_MAX, INT64_MIN, int32_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memchr

from mfkit.io._numbers cimport (
    is_digit,
    mf_pow10,
    parse_date,
    parse_decimal,
    parse_int,
)


import numpy as np

cdef extern from "_tokenize.h" nogil:
    enum:
        MF_FK_SKIP
        MF_FK_USER
        MF_FK_ITEM
        MF_FK_RATING
        MF_FK_TIME
        MF_FK_DATE
        MF_FAST_MAX_FIELDS
    ctypedef struct mf_fast_spec:
        int n_fields
        int kind[16]
        unsigned char d0
        unsigned char d1
        int dlen
        int check_scale
        double lo
        double hi
        int netflix
        int track_user
        int track_item
        float rtab1[10]
        unsigned char rok1[10]
        float rtab3[100]
        unsigned char rok3[100]
    ctypedef struct mf_fast_cols:
        int64_t *user
        int64_t *item
        int32_t *user32
        int32_t *item32
        float *rating
        int64_t *time
    ctypedef struct mf_ranges:
        int64_t umin
        int64_t umax
        int64_t imin
        int64_t imax
    bint mf_put_id(int64_t *wide, int32_t *narrow, int64_t row, int64_t v)
    int64_t mf_fast_run(const unsigned char *b, int64_t p, int64_t fe, int64_t lim,
                        const mf_fast_spec *fs, const mf_fast_cols *c, int64_t *prow,
                        int64_t item_now, mf_ranges *rg)

# Why a data line is bad (OK: it is not). The loaders show REASONS[code] for a bad line and
# count skipped lines by code in arrays of N_CODES entries.
cpdef enum Reason:
    OK = 0
    TOO_FEW = 1
    TOO_MANY = 2
    BAD_USER = 3
    BAD_ITEM = 4
    BAD_RATING = 5
    OUT_OF_SCALE = 6
    BAD_TIME = 7
    BAD_HEADER = 8
    EMPTY_ID = 9
    WIDE_ID = 10         # an id outside int32 while the id columns are int32: widen, start over
    FLOAT32_OVERFLOW = 11

cdef enum:
    _N_CODES = 12
    # bad lines a chunk records: as many as LoadInfo keeps, so that the ones kept are the
    # first in the file for any chunking
    _MAX_BAD = 20

N_CODES = _N_CODES
MAX_BAD = _MAX_BAD
REASONS = {
    TOO_FEW: "too few fields",
    TOO_MANY: "too many fields",
    BAD_USER: "the user id is not an integer",
    BAD_ITEM: "the item id is not an integer",
    BAD_RATING: "the rating is not a number",
    OUT_OF_SCALE: "the rating is outside the rating scale",
    BAD_TIME: "the timestamp/date is not valid",
    BAD_HEADER: "a malformed 'MovieID:' line",
    EMPTY_ID: "an empty id",
    FLOAT32_OVERFLOW: "the rating overflows float32 (rescale the ratings)",
}


cdef struct Spec:
    unsigned char delim[4]
    int delim_len        # 0: fields are separated by runs of spaces/tabs
    int n_fields
    int col_user
    int col_item
    int col_rating
    int col_time
    bint user_str        # record (offset, length) instead of parsing an integer
    bint item_str
    int time_kind        # 0: integer, 1: date YYYY-MM-DD (stored as seconds since 1970)
    int comment          # -1: no comment lines
    bint netflix         # "123:" lines set the item of the lines below them
    bint check_scale
    double lo
    double hi
    bint skip_bad
    bint pad_space       # spaces around a field are padding (not with a space delimiter)
    bint pad_tab
    bint fast            # strictly formatted lines may take the fast path (_tokenize.h)
    mf_fast_spec fs

cdef struct Cols:
    int64_t *user        # int64 id columns, or
    int64_t *item
    int32_t *user32      # int32 ones (NULL when the int64 ones are used)
    int32_t *item32
    float *rating
    int64_t *time
    int64_t *ustart
    int32_t *ulen
    int64_t *istart
    int32_t *ilen

cdef struct Chunk:
    int64_t start
    int64_t end
    int64_t cap          # lines counted in the chunk (row capacity)
    int64_t row0         # first output row of the chunk
    int64_t n_rows
    int64_t n_lines
    int64_t n_comment
    int64_t n_blank
    int64_t n_header
    int64_t err_off      # first bad line (error mode), -1 if none
    int err_code
    int64_t counts[_N_CODES]
    int64_t bad_off[_MAX_BAD]
    int bad_code[_MAX_BAD]
    int n_bad_rec
    int64_t lead_rows    # netflix: rows before the chunk's first header
    int64_t lead_off
    int64_t last_item    # netflix: item of the chunk's last header, -1 if none
    bint wide            # stopped at an id that int32 columns cannot hold
    int64_t umin
    int64_t umax
    int64_t imin
    int64_t imax

cdef inline int64_t get_id(const int64_t *wide, const int32_t *narrow, int64_t row) noexcept nogil:
    return narrow[row] if narrow != NULL else wide[row]


cdef inline bint is_ws(unsigned char c) noexcept nogil:
    return c == 32 or c == 9


cdef inline int64_t skip_ws(const unsigned char *b, int64_t x, int64_t q) noexcept nogil:
    while x < q and is_ws(b[x]):
        x += 1
    return x


cdef inline int64_t skip_pad(const unsigned char *b, int64_t x, int64_t q,
                             const Spec *sp) noexcept nogil:
    while x < q and ((b[x] == 32 and sp.pad_space) or (b[x] == 9 and sp.pad_tab)):
        x += 1
    return x


cdef inline int64_t strip_pad(const unsigned char *b, int64_t s, int64_t x,
                              const Spec *sp) noexcept nogil:
    while x > s and ((b[x - 1] == 32 and sp.pad_space) or (b[x - 1] == 9 and sp.pad_tab)):
        x -= 1
    return x


cdef inline bint at_delim(const unsigned char *b, int64_t x, int64_t q,
                          const Spec *sp) noexcept nogil:
    cdef int k
    if sp.delim_len == 1:
        return x < q and b[x] == sp.delim[0]
    if sp.delim_len == 0:
        return x < q and is_ws(b[x])
    if x + sp.delim_len > q:
        return False
    for k in range(sp.delim_len):
        if b[x + k] != sp.delim[k]:
            return False
    return True


cdef inline int64_t find_delim(const unsigned char *b, int64_t x, int64_t q,
                               const Spec *sp) noexcept nogil:
    """Position of the next delimiter at or after x, or q."""
    cdef const unsigned char *hit
    if sp.delim_len == 0:
        while x < q and not is_ws(b[x]):
            x += 1
        return x
    while x < q:
        hit = <const unsigned char *>memchr(b + x, sp.delim[0], <size_t>(q - x))
        if hit == NULL:
            return q
        x = hit - b
        if at_delim(b, x, q, sp):
            return x
        x += 1
    return q


cdef inline int64_t value_start(const unsigned char *b, int64_t x, int64_t q,
                                const Spec *sp) noexcept nogil:
    """Where a numeric field's value starts: after its padding."""
    return skip_pad(b, x, q, sp) if sp.delim_len > 0 else x


cdef inline bint value_ends(const unsigned char *b, int64_t *px, int64_t q,
                            const Spec *sp) noexcept nogil:
    """After a value: skip its padding; True if the field then ends (a delimiter or the
    line's end), False if something else follows the value."""
    if sp.delim_len > 0:
        px[0] = skip_pad(b, px[0], q, sp)
    return px[0] >= q or at_delim(b, px[0], q, sp)


cdef inline int value_failed(int64_t x, int64_t q, const Spec *sp, int f,
                             int code) noexcept nogil:
    """The reason for a value that did not parse: fields are missing when the line ended
    before this (not last) field, otherwise the field's own code."""
    return TOO_FEW if x >= q and f < sp.n_fields - 1 else code


cdef inline int parse_line(const unsigned char *b, int64_t p, int64_t q, const Spec *sp,
                           Cols *c, int64_t row, int64_t item_now) noexcept nogil:
    """Parse the data line [p, q) into row `row`; return a reason code (OK = 0)."""
    cdef int f, bad
    cdef int64_t x = p, fe, x2, iv = 0, s
    cdef double rv = 0.0
    if sp.delim_len == 0:
        x = skip_ws(b, x, q)
    for f in range(sp.n_fields):
        if f > 0:
            if not at_delim(b, x, q, sp):
                return TOO_FEW if x >= q else TOO_MANY
            if sp.delim_len == 0:
                x = skip_ws(b, x, q)
            else:
                x += sp.delim_len
        if sp.delim_len == 0 and x >= q:
            return TOO_FEW
        if f == sp.col_user or f == sp.col_item:
            if (f == sp.col_user and sp.user_str) or (f == sp.col_item and sp.item_str):
                fe = find_delim(b, x, q, sp)
                s = skip_pad(b, x, fe, sp)
                x2 = strip_pad(b, s, fe, sp)
                if x2 - s >= 2 and b[s] == 34 and b[x2 - 1] == 34:
                    s += 1
                    x2 -= 1
                if x2 <= s:
                    return EMPTY_ID if fe < q or f == sp.n_fields - 1 else TOO_FEW
                if f == sp.col_user:
                    c.ustart[row] = s
                    c.ulen[row] = <int32_t>(x2 - s)
                else:
                    c.istart[row] = s
                    c.ilen[row] = <int32_t>(x2 - s)
                x = fe
                continue
            bad = BAD_USER if f == sp.col_user else BAD_ITEM
            x2 = value_start(b, x, q, sp)
            if parse_int(b, &x2, q, &iv) != 0:
                return value_failed(x, q, sp, f, bad)
            if not value_ends(b, &x2, q, sp):
                return bad
            if f == sp.col_user:
                if not mf_put_id(c.user, c.user32, row, iv):
                    return WIDE_ID
            elif not mf_put_id(c.item, c.item32, row, iv):
                return WIDE_ID
            x = x2
        elif f == sp.col_rating:
            x2 = value_start(b, x, q, sp)
            if parse_decimal(b, &x2, q, &rv) != 0:
                return value_failed(x, q, sp, f, BAD_RATING)
            if not value_ends(b, &x2, q, sp):
                return BAD_RATING
            if not (rv - rv == 0.0):
                return BAD_RATING
            if sp.check_scale and (rv < sp.lo or rv > sp.hi):
                return OUT_OF_SCALE
            c.rating[row] = <float>rv
            if not (c.rating[row] - c.rating[row] == 0.0):  # finite, but not as a float32
                return FLOAT32_OVERFLOW
            x = x2
        elif f == sp.col_time:
            x2 = value_start(b, x, q, sp)
            if sp.time_kind == 1:
                bad = parse_date(b, &x2, q, &iv)
            else:
                bad = parse_int(b, &x2, q, &iv)
            if bad != 0:
                return value_failed(x, q, sp, f, BAD_TIME)
            if not value_ends(b, &x2, q, sp):
                return BAD_TIME
            c.time[row] = iv
            x = x2
        else:
            x = find_delim(b, x, q, sp)
    if sp.delim_len == 0:
        x = skip_ws(b, x, q)
    if x < q:
        return TOO_MANY
    if sp.netflix and not mf_put_id(c.item, c.item32, row, item_now):
        return WIDE_ID
    return OK


cdef int count_fields(const unsigned char *b, int64_t p, int64_t q,
                      const Spec *sp) noexcept nogil:
    """Fields on the line [p, q) as a plain split would count them."""
    cdef int n = 0
    if sp.delim_len == 0:
        p = skip_ws(b, p, q)
        while p < q:
            n += 1
            p = find_delim(b, p, q, sp)
            p = skip_ws(b, p, q)
        return n
    n = 1
    p = find_delim(b, p, q, sp)
    while p < q:
        n += 1
        p = find_delim(b, p + sp.delim_len, q, sp)
    return n


cdef inline int classify(const unsigned char *b, int64_t p, int64_t q, const Spec *sp,
                         int code) noexcept nogil:
    """A wrong field count explains a bad line better than the field that failed."""
    cdef int nf
    if code == OK or code == TOO_FEW or code == TOO_MANY or code == WIDE_ID:
        return code
    nf = count_fields(b, p, q, sp)
    if nf < sp.n_fields:
        return TOO_FEW
    if nf > sp.n_fields:
        return TOO_MANY
    return code


cdef inline bint blank_line(const unsigned char *b, int64_t p, int64_t q) noexcept nogil:
    while p < q:
        if not is_ws(b[p]):
            return False
        p += 1
    return True


cdef void parse_chunk(const unsigned char *b, int64_t lim, const Spec *sp, Cols *c,
                      Chunk *ch) noexcept nogil:
    cdef int64_t p = ch.start, e = ch.end, q, nxt, row = ch.row0, x, hx, iv = 0
    cdef int64_t item_now = -1, umin = 0, umax = -1, imin = 0, imax = -1, fe
    cdef int64_t n_fast = 0, r0, no_fast_at = -1
    cdef mf_ranges rg
    cdef mf_fast_cols fc
    cdef const unsigned char *nl
    cdef int code
    cdef bint seen_header = False, first_u = True, first_i = True
    # the fast path only sees lines that end with a newline inside the chunk
    fe = e if sp.fast else p
    while fe > p and b[fe - 1] != 10:
        fe -= 1
    rg.umin = INT64_MAX
    rg.umax = INT64_MIN
    rg.imin = INT64_MAX
    rg.imax = INT64_MIN
    fc.user = c.user
    fc.item = c.item
    fc.user32 = c.user32
    fc.item32 = c.item32
    fc.rating = c.rating
    fc.time = c.time
    while p < e:
        if p < fe and p != no_fast_at and is_digit(b[p]) and (not sp.netflix or seen_header):
            # a run of strictly formatted lines; the line it stops at goes the general way
            r0 = row
            p = mf_fast_run(b, p, fe, lim, &sp.fs, &fc, &row, item_now, &rg)
            n_fast += row - r0
            no_fast_at = p
            continue
        nl = <const unsigned char *>memchr(b + p, 10, <size_t>(e - p))
        if nl == NULL:
            q = e
            nxt = e
        else:
            q = nl - b
            nxt = q + 1
        ch.n_lines += 1
        if q > p and b[q - 1] == 13:
            q -= 1
        if q == p or ((b[p] == 32 or b[p] == 9) and blank_line(b, p, q)):
            ch.n_blank += 1
            p = nxt
            continue
        if sp.comment >= 0 and b[p] == sp.comment:
            ch.n_comment += 1
            p = nxt
            continue
        if sp.netflix:
            x = q
            while x > p and is_ws(b[x - 1]):
                x -= 1
            if b[x - 1] == 58:  # ':'
                x -= 1
                hx = skip_ws(b, p, x)
                if parse_int(b, &hx, x, &iv) == 0 and skip_ws(b, hx, x) == x and iv >= 0:
                    item_now = iv
                    seen_header = True
                    ch.last_item = iv
                    ch.n_header += 1
                    if first_i or iv < imin:
                        imin = iv
                    if first_i or iv > imax:
                        imax = iv
                    first_i = False
                    p = nxt
                    continue
                code = BAD_HEADER
            else:
                code = classify(b, p, q, sp, parse_line(b, p, q, sp, c, row, item_now))
        else:
            code = classify(b, p, q, sp, parse_line(b, p, q, sp, c, row, item_now))
        if code == OK:
            if sp.netflix and not seen_header:
                if ch.lead_rows == 0:
                    ch.lead_off = p
                ch.lead_rows += 1
            if not sp.user_str:
                iv = get_id(c.user, c.user32, row)
                if first_u or iv < umin:
                    umin = iv
                if first_u or iv > umax:
                    umax = iv
                first_u = False
            if not sp.item_str and not sp.netflix:
                iv = get_id(c.item, c.item32, row)
                if first_i or iv < imin:
                    imin = iv
                if first_i or iv > imax:
                    imax = iv
                first_i = False
            row += 1
        elif code == WIDE_ID:
            ch.wide = True
            break
        else:
            ch.counts[code] += 1
            if ch.n_bad_rec < _MAX_BAD:
                ch.bad_off[ch.n_bad_rec] = p
                ch.bad_code[ch.n_bad_rec] = code
                ch.n_bad_rec += 1
            # a skipped movie header would hand its ratings to the movie before it
            if not sp.skip_bad or code == BAD_HEADER:
                ch.err_off = p
                ch.err_code = code
                break
        p = nxt
    ch.n_rows = row - ch.row0
    ch.n_lines += n_fast
    if n_fast > 0:
        if sp.fs.track_user:
            if first_u or rg.umin < umin:
                umin = rg.umin
            if first_u or rg.umax > umax:
                umax = rg.umax
        if sp.fs.track_item:
            if first_i or rg.imin < imin:
                imin = rg.imin
            if first_i or rg.imax > imax:
                imax = rg.imax
    ch.umin = umin
    ch.umax = umax
    ch.imin = imin
    ch.imax = imax


cdef inline int64_t* _p64(int64_t[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


def parse_block(const unsigned char[::1] buf, list cuts, list caps, dict spec, dict out,
                Py_ssize_t row0, int n_threads):
    """Parse buf[cuts[0]:cuts[-1]] (whole lines) in len(cuts) - 1 chunks; ``caps`` are the
    chunks' line counts from ``count_chunks``.

    ``out`` holds the output columns (``user``, ``item`` int64 or int32; ``rating``
    float32; ``time`` int64; ``ustart``/``istart`` int64 and ``ulen``/``ilen`` int32 for
    string ids); rows are written from ``row0`` on. Returns a list of per-chunk dicts
    (``row0``, ``n_rows``, line counts, bad-line records, Netflix carry data, id ranges,
    ``wide``: an id did not fit int32 columns). Chunk k's rows are at
    ``[row0_k, row0_k + n_rows_k)``: the caller compacts them.
    """
    cdef Spec sp
    cdef Cols c
    cdef Py_ssize_t n_chunks = len(cuts) - 1, k, j
    cdef Chunk *chunks
    cdef Chunk *ch
    cdef const unsigned char *b = &buf[0] if buf.shape[0] > 0 else NULL
    cdef bytes delim = spec["delimiter"]
    u_arr = out.get("user", _EMPTY64)
    i_arr = out.get("item", _EMPTY64)
    cdef bint u32 = u_arr.dtype == np.int32, i32 = i_arr.dtype == np.int32
    cdef int64_t[::1] a_user = _EMPTY64 if u32 else u_arr
    cdef int64_t[::1] a_item = _EMPTY64 if i32 else i_arr
    cdef int32_t[::1] a_user32 = u_arr if u32 else _EMPTY32
    cdef int32_t[::1] a_item32 = i_arr if i32 else _EMPTY32
    cdef float[::1] a_rating = out.get("rating", _EMPTYF)
    cdef int64_t[::1] a_time = out.get("time", _EMPTY64)
    cdef int64_t[::1] a_ustart = out.get("ustart", _EMPTY64)
    cdef int32_t[::1] a_ulen = out.get("ulen", _EMPTY32)
    cdef int64_t[::1] a_istart = out.get("istart", _EMPTY64)
    cdef int32_t[::1] a_ilen = out.get("ilen", _EMPTY32)
    cdef int64_t need
    if n_chunks < 1:
        return []
    if len(delim) > 4:
        raise ValueError("delimiter longer than 4 bytes")
    if cuts[0] < 0 or cuts[n_chunks] > buf.shape[0]:
        raise ValueError("parse_block: cuts outside the buffer")
    sp.delim_len = len(delim)
    for j in range(4):
        sp.delim[j] = delim[j] if j < sp.delim_len else 0
    sp.n_fields = spec["n_fields"]
    sp.col_user = spec["col_user"]
    sp.col_item = spec["col_item"]
    sp.col_rating = spec["col_rating"]
    sp.col_time = spec["col_time"]
    sp.user_str = spec["user_str"]
    sp.item_str = spec["item_str"]
    sp.time_kind = spec["time_kind"]
    sp.comment = spec["comment"]
    sp.netflix = spec["netflix"]
    sp.check_scale = spec["check_scale"]
    sp.lo = spec["lo"]
    sp.hi = spec["hi"]
    sp.skip_bad = spec["skip_bad"]
    sp.pad_space = b" " not in delim
    sp.pad_tab = b"\t" not in delim
    if sp.n_fields < 1 or sp.n_fields > 1000:
        raise ValueError("n_fields must be in [1, 1000]")
    _fast_spec(&sp, spec.get("fast", True))
    chunks = <Chunk *>calloc(<size_t>n_chunks, sizeof(Chunk))
    if chunks == NULL:
        raise MemoryError()
    try:
        for k in range(n_chunks):
            chunks[k].start = cuts[k]
            chunks[k].end = cuts[k + 1]
            chunks[k].err_off = -1
            chunks[k].last_item = -1
            chunks[k].lead_off = -1
        if len(caps) != n_chunks:
            raise ValueError("parse_block: one capacity per chunk is needed")
        for k in range(n_chunks):
            chunks[k].cap = caps[k]
        need = 0
        for k in range(n_chunks):
            chunks[k].row0 = row0 + need
            need += chunks[k].cap
        # every column that the spec writes must have room for every line
        _check_room(sp, u_arr, i_arr, a_rating, a_time, a_ustart, a_ulen, a_istart, a_ilen,
                    row0 + need)
        c.user = _p64(a_user)
        c.item = _p64(a_item)
        c.user32 = &a_user32[0] if u32 and a_user32.shape[0] > 0 else NULL
        c.item32 = &a_item32[0] if i32 and a_item32.shape[0] > 0 else NULL
        c.rating = &a_rating[0] if a_rating.shape[0] > 0 else NULL
        c.time = _p64(a_time)
        c.ustart = _p64(a_ustart)
        c.ulen = &a_ulen[0] if a_ulen.shape[0] > 0 else NULL
        c.istart = _p64(a_istart)
        c.ilen = &a_ilen[0] if a_ilen.shape[0] > 0 else NULL
        with nogil:
            for k in prange(n_chunks, schedule="dynamic", chunksize=1, num_threads=n_threads):
                parse_chunk(b, buf.shape[0], &sp, &c, &chunks[k])
        result = []
        for k in range(n_chunks):
            ch = &chunks[k]
            result.append({
                "row0": ch.row0, "n_rows": ch.n_rows, "cap": ch.cap,
                "start": ch.start, "end": ch.end,
                "n_lines": ch.n_lines, "n_comment": ch.n_comment, "n_blank": ch.n_blank,
                "n_header": ch.n_header, "err_off": ch.err_off, "err_code": ch.err_code,
                "counts": [ch.counts[j] for j in range(_N_CODES)],
                "bad": [(ch.bad_off[j], ch.bad_code[j]) for j in range(ch.n_bad_rec)],
                "lead_rows": ch.lead_rows, "lead_off": ch.lead_off,
                "last_item": ch.last_item,
                "umin": ch.umin, "umax": ch.umax, "imin": ch.imin, "imax": ch.imax,
                "wide": bool(ch.wide),
            })
        return result
    finally:
        free(chunks)


cdef void _fast_spec(Spec *sp, bint allow) noexcept:
    """Decide whether lines may take the fast path and describe their fields for it."""
    cdef int f, j
    cdef unsigned char d
    cdef double r
    sp.fast = (
        allow
        and (sp.delim_len == 1 or sp.delim_len == 2)
        and sp.n_fields <= MF_FAST_MAX_FIELDS
        and not sp.user_str and not sp.item_str
        and not (sp.comment >= 48 and sp.comment <= 57)
    )
    # a delimiter byte that can be part of a number, a date or a line end is ambiguous
    for j in range(sp.delim_len):
        d = sp.delim[j]
        if is_digit(d) or d in (10, 13, 43, 45, 46, 69, 101):
            sp.fast = False
    if not sp.fast:
        return
    sp.fs.n_fields = sp.n_fields
    sp.fs.d0 = sp.delim[0]
    sp.fs.d1 = sp.delim[1] if sp.delim_len == 2 else 0
    sp.fs.dlen = sp.delim_len
    sp.fs.check_scale = sp.check_scale
    sp.fs.lo = sp.lo
    sp.fs.hi = sp.hi
    sp.fs.netflix = sp.netflix
    sp.fs.track_user = not sp.user_str
    sp.fs.track_item = not sp.item_str and not sp.netflix
    # ratings "d" and "d.d" by table, with parse_decimal's arithmetic (mantissa / 10**k)
    for j in range(10):
        r = <double>j
        sp.fs.rtab1[j] = <float>r
        sp.fs.rok1[j] = not sp.check_scale or (r >= sp.lo and r <= sp.hi)
    for j in range(100):
        r = <double>j / mf_pow10[1]
        sp.fs.rtab3[j] = <float>r
        sp.fs.rok3[j] = not sp.check_scale or (r >= sp.lo and r <= sp.hi)
    for f in range(sp.n_fields):
        if f == sp.col_user:
            sp.fs.kind[f] = MF_FK_USER
        elif f == sp.col_item:
            sp.fs.kind[f] = MF_FK_ITEM
        elif f == sp.col_rating:
            sp.fs.kind[f] = MF_FK_RATING
        elif f == sp.col_time:
            sp.fs.kind[f] = MF_FK_DATE if sp.time_kind == 1 else MF_FK_TIME
        else:
            sp.fs.kind[f] = MF_FK_SKIP


_EMPTY64 = np.zeros(0, dtype=np.int64)
_EMPTY32 = np.zeros(0, dtype=np.int32)
_EMPTYF = np.zeros(0, dtype=np.float32)


cdef _check_room(Spec sp, a_user, a_item, float[::1] a_rating,
                 int64_t[::1] a_time, int64_t[::1] a_ustart, int32_t[::1] a_ulen,
                 int64_t[::1] a_istart, int32_t[::1] a_ilen, int64_t need):
    if sp.col_user >= 0:
        if sp.user_str and (a_ustart.shape[0] < need or a_ulen.shape[0] < need):
            raise ValueError("parse_block: no room for string user ids")
        if not sp.user_str and len(a_user) < need:
            raise ValueError("parse_block: no room for user ids")
    if sp.col_item >= 0 or sp.netflix:
        if sp.item_str and (a_istart.shape[0] < need or a_ilen.shape[0] < need):
            raise ValueError("parse_block: no room for string item ids")
        if not sp.item_str and len(a_item) < need:
            raise ValueError("parse_block: no room for item ids")
    if sp.col_rating >= 0 and a_rating.shape[0] < need:
        raise ValueError("parse_block: no room for ratings")
    if sp.col_time >= 0 and a_time.shape[0] < need:
        raise ValueError("parse_block: no room for timestamps")
