/* The tokenizer's fast path: runs of strictly formatted data lines.
 *
 * A line is accepted here only when every field is in its plainest form: unsigned integers
 * of at most 18 digits, decimals "digits[.digits]" of at most 18 digits in all, dates
 * "YYYY-MM-DD", fields separated by exactly the delimiter (one or two bytes, no padding),
 * and the line ending in "\n" or "\r\n". At any other line (signs, exponents, padding,
 * blank, comment or header lines, wrong field counts, ratings outside the scale) the run
 * stops, and the caller parses that line with the general parser in _tokenize.pyx, which
 * gives the same values for every line accepted here and the right error for the others.
 *
 * Two things make it fast:
 * - Separators (delimiter and newline bytes) are found 64 bytes at a time as a bit mask, so
 *   finding the next field never waits for the previous field to be parsed.
 * - A field of known length is read eight bytes at a time (SWAR): a mask checks that its
 *   bytes are digits and three multiply-and-mask steps combine them. These loads may look up
 *   to seven bytes past a field, never past `lim` (the end of the buffer).
 * Common layouts (user,item,rating,time and the Netflix user,rating,date) get their own
 * compiled copy of the loop, with the field kinds known to the compiler.
 *
 * The caller guarantees that the lines it hands over end with a newline before `fe`, so
 * byte-by-byte reads stop at that newline at the latest.
 */
#ifndef MFKIT_TOKENIZE_H
#define MFKIT_TOKENIZE_H

#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum { MF_FK_SKIP = 0, MF_FK_USER = 1, MF_FK_ITEM = 2, MF_FK_RATING = 3, MF_FK_TIME = 4,
       MF_FK_DATE = 5 };
#define MF_FAST_MAX_FIELDS 16

typedef struct {
    int n_fields;
    int kind[MF_FAST_MAX_FIELDS];
    unsigned char d0, d1;
    int dlen;              /* 1 or 2 */
    int check_scale;
    double lo, hi;
    int netflix;           /* the item comes from the last "MovieID:" line */
    int track_user;        /* keep the range of user ids */
    int track_item;
    /* ratings written "d" and "d.d": their float value, and whether it is inside the scale
       (filled by the caller with the general parser's arithmetic) */
    float rtab1[10];
    unsigned char rok1[10];
    float rtab3[100];
    unsigned char rok3[100];
} mf_fast_spec;

typedef struct {
    int64_t *user;         /* int64 id columns, or */
    int64_t *item;
    float *rating;
    int64_t *time;
    int32_t *user32;       /* int32 ones (NULL when the int64 ones are used) */
    int32_t *item32;
} mf_fast_cols;

typedef struct {
    int64_t umin, umax, imin, imax;  /* ranges of the ids the run parsed */
} mf_ranges;

static const double mf_pow10[19] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
    1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
};

static inline int mf_is_digit(unsigned char c) { return (unsigned char)(c - '0') < 10; }

#if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define MF_SWAR 1
#define MF_INLINE static inline __attribute__((always_inline))
static inline int mf_ctz64(uint64_t m) { return __builtin_ctzll(m); }

/* x holds n (1..8) digit values 0..9 in its low bytes, first digit lowest: their value. */
MF_INLINE uint64_t mf_swar_combine(uint64_t x, int n)
{
    x <<= (8 - n) * 8;  /* leading zero digits fill the gap */
    x = (x * 10 + (x >> 8)) & 0x00FF00FF00FF00FFULL;
    x = (x * 100 + (x >> 16)) & 0x0000FFFF0000FFFFULL;
    x = (x * 10000 + (x >> 32)) & 0xFFFFFFFFULL;
    return x;
}

/* The n (1..8) bytes at p are digits: 0 and their value in *out; -1 otherwise. */
MF_INLINE int mf_swar_n(const unsigned char *p, int n, uint64_t *out)
{
    uint64_t w, x, bad, keep;
    memcpy(&w, p, 8);
    x = w ^ 0x3030303030303030ULL;  /* digits become 0..9 */
    /* high bit set in each byte that is not 0..9; a carry only leaves a flagged byte, and
       only towards later bytes, so the flags of the first n bytes are exact if none is set */
    bad = (x | (x + 0x7676767676767676ULL)) & 0x8080808080808080ULL;
    keep = n == 8 ? ~0ULL : ((1ULL << (8 * n)) - 1);
    if (bad & keep)
        return -1;
    *out = mf_swar_combine(x & keep, n);
    return 0;
}
#else
#define MF_SWAR 0
#define MF_INLINE static inline
static inline int mf_ctz64(uint64_t m)
{
    int n = 0;
    while (!(m & 1)) {
        m >>= 1;
        n++;
    }
    return n;
}
#endif

/* The field b[s, t) is 1 to 18 digits: 0 and its value in *out; -1 otherwise. */
MF_INLINE int mf_uint_field(const unsigned char *b, int64_t s, int64_t t, int64_t lim,
                                uint64_t *out)
{
    int64_t n = t - s, k;
    uint64_t v = 0;
#if MF_SWAR
    uint64_t hi, lo;
    if (n >= 1 && n <= 8 && s + 8 <= lim)
        return mf_swar_n(b + s, (int)n, out);
    if (n > 8 && n <= 16 && t <= lim) {
        /* the last eight digits from one load, the first n - 8 from another */
        if (mf_swar_n(b + t - 8, 8, &lo) || mf_swar_n(b + s, (int)(n - 8), &hi))
            return -1;
        *out = hi * 100000000ULL + lo;
        return 0;
    }
#endif
    if (n < 1 || n > 18)
        return -1;
    for (k = s; k < t; k++) {
        if (!mf_is_digit(b[k]))
            return -1;
        v = v * 10 + (uint64_t)(b[k] - '0');
    }
    *out = v;
    return 0;
}

/* The field b[s, t) is "digits[.digits]" (at most 18 digits): 0 and its value, computed as
   the general parser does (mantissa / 10**fraction digits in double precision); -1 if not. */
MF_INLINE int mf_decimal_field(const unsigned char *b, int64_t s, int64_t t, int64_t lim,
                                   double *out)
{
    int64_t dot = s;
    uint64_t ip, fp;
    while (dot < t && b[dot] != '.')
        dot++;
    if (dot == t)
        return mf_uint_field(b, s, t, lim, &ip) ? -1 : (*out = (double)ip, 0);
    if (t - s - 1 > 18 || mf_uint_field(b, s, dot, lim, &ip) ||
        mf_uint_field(b, dot + 1, t, lim, &fp))
        return -1;
    ip = ip * (uint64_t)mf_pow10[t - dot - 1] + fp;  /* exact: at most 18 digits */
    *out = (double)ip / mf_pow10[t - dot - 1];
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static inline int64_t mf_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy, doe;
    if (m <= 2)
        y -= 1;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DD" in b[s, t): 0 and seconds since 1970-01-01 UTC; -1 otherwise. */
MF_INLINE int mf_date_field(const unsigned char *b, int64_t s, int64_t t, int64_t *out)
{
    int64_t y, m, d;
    if (t - s != 10 || b[s + 4] != '-' || b[s + 7] != '-')
        return -1;
    if (!(mf_is_digit(b[s]) && mf_is_digit(b[s + 1]) && mf_is_digit(b[s + 2]) &&
          mf_is_digit(b[s + 3]) && mf_is_digit(b[s + 5]) && mf_is_digit(b[s + 6]) &&
          mf_is_digit(b[s + 8]) && mf_is_digit(b[s + 9])))
        return -1;
    y = (b[s] - '0') * 1000 + (b[s + 1] - '0') * 100 + (b[s + 2] - '0') * 10 + (b[s + 3] - '0');
    m = (b[s + 5] - '0') * 10 + (b[s + 6] - '0');
    d = (b[s + 8] - '0') * 10 + (b[s + 9] - '0');
    if (m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    *out = mf_days_from_civil(y, m, d) * 86400;
    return 0;
}

/* ------------------------------------------------------------------ separator positions */
typedef struct {
    const unsigned char *b;
    int64_t base;          /* the mask describes b[base .. base + 64) */
    int64_t lim;           /* end of the buffer */
    uint64_t mask;
    unsigned char d0;
} mf_sepit;

static inline uint64_t mf_sepmask_tail(const unsigned char *p, int64_t n, unsigned char d)
{
    uint64_t m = 0;
    int64_t k;
    for (k = 0; k < n && k < 64; k++)
        m |= (uint64_t)(p[k] == d || p[k] == '\n') << k;
    return m;
}

MF_INLINE uint64_t mf_sepmask64(const unsigned char *p, unsigned char d)
{
#if defined(__SSE2__)
    const __m128i vd = _mm_set1_epi8((char)d), vn = _mm_set1_epi8('\n');
    __m128i v0 = _mm_loadu_si128((const __m128i *)p);
    __m128i v1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i v2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i v3 = _mm_loadu_si128((const __m128i *)(p + 48));
    uint64_t m0 = (uint32_t)_mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(v0, vd), _mm_cmpeq_epi8(v0, vn)));
    uint64_t m1 = (uint32_t)_mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(v1, vd), _mm_cmpeq_epi8(v1, vn)));
    uint64_t m2 = (uint32_t)_mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(v2, vd), _mm_cmpeq_epi8(v2, vn)));
    uint64_t m3 = (uint32_t)_mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(v3, vd), _mm_cmpeq_epi8(v3, vn)));
    return m0 | (m1 << 16) | (m2 << 32) | (m3 << 48);
#else
    return mf_sepmask_tail(p, 64, d);
#endif
}

static inline void mf_sep_load(mf_sepit *it)
{
    int64_t n = it->lim - it->base;
    if (n >= 64)
        it->mask = mf_sepmask64(it->b + it->base, it->d0);
    else
        it->mask = n > 0 ? mf_sepmask_tail(it->b + it->base, n, it->d0) : 0;
}

/* The next separator's offset, or -1 at the end of the buffer. */
MF_INLINE int64_t mf_sep_next(mf_sepit *it)
{
    int64_t pos;
    while (it->mask == 0) {
        it->base += 64;
        if (it->base >= it->lim)
            return -1;
        mf_sep_load(it);
    }
    pos = it->base + mf_ctz64(it->mask);
    it->mask &= it->mask - 1;
    return pos;
}

/* ------------------------------------------------------------------------- lines */
/* Store an id in the column in use; 0 if an int32 column cannot hold it (the general
   parser then reports the line, and the caller starts over with int64 columns). */
MF_INLINE int mf_put_id(int64_t *wide, int32_t *narrow, int64_t row, int64_t v)
{
    if (narrow) {
        if (v < INT32_MIN || v > INT32_MAX)
            return 0;
        narrow[row] = (int32_t)v;
    } else {
        wide[row] = v;
    }
    return 1;
}

/* Parse the data line at p into row `row`; return the offset just past its newline, or -1.
   *uid and *iid get the line's user and item ids. n_fields, dlen and kind[] are constants
   in the specialised copies below. */
MF_INLINE int64_t mf_line(const unsigned char *b, int64_t p, int64_t lim,
                          const mf_fast_spec *fs, mf_sepit *it, const mf_fast_cols *c,
                          int64_t row, int64_t item_now, int n_fields, int dlen,
                          const int *kind, int64_t *uid, int64_t *iid)
{
    int64_t s = p, e = p, t, iv;
    uint64_t v;
    double r;
    unsigned d0, d1;
    int f;
    for (f = 0; f < n_fields; f++) {
        e = mf_sep_next(it);
        if (e < 0)
            return -1;
        if (f == n_fields - 1) {
            if (b[e] != '\n')
                return -1;
            t = (e > s && b[e - 1] == '\r') ? e - 1 : e;
        } else {
            if (b[e] != fs->d0)
                return -1;
            if (dlen == 2 && (b[e + 1] != fs->d1 || mf_sep_next(it) != e + 1))
                return -1;
            t = e;
        }
        switch (kind[f]) {
        case MF_FK_USER:
            if (mf_uint_field(b, s, t, lim, &v) || !mf_put_id(c->user, c->user32, row, (int64_t)v))
                return -1;
            *uid = (int64_t)v;
            break;
        case MF_FK_ITEM:
            if (mf_uint_field(b, s, t, lim, &v) || !mf_put_id(c->item, c->item32, row, (int64_t)v))
                return -1;
            *iid = (int64_t)v;
            break;
        case MF_FK_TIME:
            if (mf_uint_field(b, s, t, lim, &v))
                return -1;
            c->time[row] = (int64_t)v;
            break;
        case MF_FK_RATING:
            d0 = (unsigned)b[s] - '0';
            if (t - s == 1 && d0 < 10) {
                if (!fs->rok1[d0])
                    return -1;
                c->rating[row] = fs->rtab1[d0];
            } else if (t - s == 3 && b[s + 1] == '.' && d0 < 10 &&
                       (d1 = (unsigned)b[s + 2] - '0') < 10) {
                if (!fs->rok3[d0 * 10 + d1])
                    return -1;
                c->rating[row] = fs->rtab3[d0 * 10 + d1];
            } else {
                if (mf_decimal_field(b, s, t, lim, &r))
                    return -1;
                if (fs->check_scale && (r < fs->lo || r > fs->hi))
                    return -1;
                c->rating[row] = (float)r;
            }
            break;
        case MF_FK_DATE:
            if (mf_date_field(b, s, t, &iv))
                return -1;
            c->time[row] = iv;
            break;
        default:  /* a field that is not kept: anything between the separators */
            break;
        }
        s = e + dlen;
    }
    if (fs->netflix && !mf_put_id(c->item, c->item32, row, item_now))
        return -1;
    return e + 1;
}

MF_INLINE int64_t mf_run_t(const unsigned char *b, int64_t p, int64_t fe, int64_t lim,
                           const mf_fast_spec *fs, const mf_fast_cols *c, int64_t *prow,
                           int64_t item_now, mf_ranges *rg, int n_fields, int dlen,
                           const int *kind)
{
    mf_sepit it;
    int64_t row = *prow, nx, uid = 0, iid = 0;
    int64_t umin = rg->umin, umax = rg->umax, imin = rg->imin, imax = rg->imax;
    it.b = b;
    it.lim = lim;
    it.d0 = fs->d0;
    it.base = p;
    mf_sep_load(&it);
    while (p < fe && mf_is_digit(b[p])) {
        nx = mf_line(b, p, lim, fs, &it, c, row, item_now, n_fields, dlen, kind, &uid, &iid);
        if (nx < 0)
            break;
        if (fs->track_user) {
            umin = uid < umin ? uid : umin;
            umax = uid > umax ? uid : umax;
        }
        if (fs->track_item) {
            imin = iid < imin ? iid : imin;
            imax = iid > imax ? iid : imax;
        }
        row++;
        p = nx;
    }
    rg->umin = umin;
    rg->umax = umax;
    rg->imin = imin;
    rg->imax = imax;
    *prow = row;
    return p;
}

static const int mf_kind_uirt[4] = {MF_FK_USER, MF_FK_ITEM, MF_FK_RATING, MF_FK_TIME};
static const int mf_kind_uir[3] = {MF_FK_USER, MF_FK_ITEM, MF_FK_RATING};
static const int mf_kind_urd[3] = {MF_FK_USER, MF_FK_RATING, MF_FK_DATE};

static inline int mf_same_kinds(const mf_fast_spec *fs, const int *kind, int n)
{
    int f;
    if (fs->n_fields != n)
        return 0;
    for (f = 0; f < n; f++)
        if (fs->kind[f] != kind[f])
            return 0;
    return 1;
}

/* Parse lines from p (which must start a line) while they take the fast path; stop before
   fe. Returns the offset of the first line not parsed; *prow counts the rows written. */
static int64_t mf_fast_run(const unsigned char *b, int64_t p, int64_t fe, int64_t lim,
                           const mf_fast_spec *fs, const mf_fast_cols *c, int64_t *prow,
                           int64_t item_now, mf_ranges *rg)
{
    if (fs->dlen == 1 && mf_same_kinds(fs, mf_kind_uirt, 4))
        return mf_run_t(b, p, fe, lim, fs, c, prow, item_now, rg, 4, 1, mf_kind_uirt);
    if (fs->dlen == 2 && mf_same_kinds(fs, mf_kind_uirt, 4))
        return mf_run_t(b, p, fe, lim, fs, c, prow, item_now, rg, 4, 2, mf_kind_uirt);
    if (fs->dlen == 1 && mf_same_kinds(fs, mf_kind_urd, 3))
        return mf_run_t(b, p, fe, lim, fs, c, prow, item_now, rg, 3, 1, mf_kind_urd);
    if (fs->dlen == 1 && mf_same_kinds(fs, mf_kind_uir, 3))
        return mf_run_t(b, p, fe, lim, fs, c, prow, item_now, rg, 3, 1, mf_kind_uir);
    return mf_run_t(b, p, fe, lim, fs, c, prow, item_now, rg, fs->n_fields, fs->dlen,
                    fs->kind);
}

#endif
