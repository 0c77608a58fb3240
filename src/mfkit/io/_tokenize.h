/* The tokenizer's fast path: runs of strictly formatted data lines.
 *
 * A line is accepted here only when every field is in its plainest form: unsigned integers
 * of at most 18 digits, decimals "digits.digits" or "digits" of at most 18 digits in all
 * (and a mantissa of at most 2**53 when there is a fraction), valid calendar dates
 * "YYYY-MM-DD", fields separated by exactly the delimiter (one or two bytes, no
 * padding), and the line ending in "\n" or "\r\n". At any other line (signs, exponents,
 * padding, blank, comment or header lines, wrong field counts, ids that int32 columns cannot
 * hold, ratings outside the scale) the run stops, and the caller parses that line with the
 * general parser in _tokenize.pyx, which gives the same values for every line accepted here
 * and the right error for the others.
 *
 * How it is fast: the positions of all bytes that are not digits are found 64 bytes at a
 * time, as a bit mask (SSE2 where available). A data line is digits broken by a few such
 * bytes (delimiters, a decimal point, date dashes, the line end), so walking those positions
 * both splits the line into fields and proves that every field is made of digits. Finding
 * the next field never waits for the previous field's value, and each value is read eight
 * bytes at a time (SWAR: three multiply-and-mask steps combine eight digits). Those loads
 * may look up to seven bytes past a field, never past `lim` (the end of the buffer). Common
 * layouts (user,item,rating,time and the Netflix user,rating,date) get their own compiled
 * copy of the loop, with the field kinds known to the compiler.
 *
 * The caller only hands over lines that end with a newline before `fe`.
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
    int dlen;              /* 1 or 2; neither byte is a digit */
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

/* Powers of ten that are exact doubles (both parsers divide or multiply by them). */
static const double mf_pow10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};
/* Integers up to this are exact doubles: mantissa / 10**k is then rounded once. */
#define MF_EXACT_MANTISSA 9007199254740992ULL  /* 2**53 */

static inline int mf_is_digit(unsigned char c) { return (unsigned char)(c - '0') < 10; }

#if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define MF_SWAR 1
#define MF_INLINE static inline __attribute__((always_inline))
static inline int mf_ctz64(uint64_t m) { return __builtin_ctzll(m); }

/* The value of the n (1..8) digits at p (known to be digits). */
MF_INLINE uint64_t mf_swar_value(const unsigned char *p, int n)
{
    uint64_t x;
    memcpy(&x, p, 8);
    x ^= 0x3030303030303030ULL;    /* digits become 0..9, first digit in the lowest byte */
    x <<= (8 - n) * 8;             /* drop the bytes after the field; zeros lead */
    x = (x * 10 + (x >> 8)) & 0x00FF00FF00FF00FFULL;
    x = (x * 100 + (x >> 16)) & 0x0000FFFF0000FFFFULL;
    x = (x * 10000 + (x >> 32)) & 0xFFFFFFFFULL;
    return x;
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

/* The value of b[s, t), known to hold only digits: 0 and *out if it has 1 to 18 of them,
   -1 otherwise. */
MF_INLINE int mf_digits(const unsigned char *b, int64_t s, int64_t t, int64_t lim,
                        uint64_t *out)
{
    int64_t n = t - s, k;
    uint64_t v = 0;
    if (n < 1 || n > 18)
        return -1;
#if MF_SWAR
    if (n <= 8 && s + 8 <= lim) {
        *out = mf_swar_value(b + s, (int)n);
        return 0;
    }
    if (n <= 16 && n > 8) {  /* the first n - 8 digits, then the last eight */
        *out = mf_swar_value(b + s, (int)(n - 8)) * 100000000ULL +
               mf_swar_value(b + t - 8, 8);
        return 0;
    }
#endif
    for (k = s; k < t; k++)
        v = v * 10 + (uint64_t)(b[k] - '0');
    *out = v;
    return 0;
}

/* Whether y-m-d is a date of the proleptic Gregorian calendar in years 1..9999 (the dates
   Python's datetime.date accepts). */
static inline int mf_valid_date(int64_t y, int64_t m, int64_t d)
{
    static const unsigned char mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1)
        return 0;
    if (d <= 28)  /* every month has these days: no look-up in the common case */
        return 1;
    if (m == 2 && d == 29)
        return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    return d <= mdays[m - 1];
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

/* ------------------------------------------------------------ positions of non-digits */
typedef struct {
    const unsigned char *b;
    int64_t base;          /* the mask describes b[base .. base + 64) */
    int64_t lim;           /* end of the buffer */
    uint64_t mask;         /* bit k: b[base + k] is not a digit (and not yet taken) */
} mf_ndit;

static inline uint64_t mf_nondigit_tail(const unsigned char *p, int64_t n)
{
    uint64_t m = 0;
    int64_t k;
    for (k = 0; k < n && k < 64; k++)
        m |= (uint64_t)(!mf_is_digit(p[k])) << k;
    return m;
}

MF_INLINE uint64_t mf_nondigit64(const unsigned char *p)
{
#if defined(__SSE2__)
    const __m128i zero = _mm_set1_epi8('0'), nine = _mm_set1_epi8(9);
    uint64_t m = 0;
    int k;
    for (k = 0; k < 4; k++) {
        __m128i x = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * k)), zero);
        /* a digit is a byte with x <= 9 (unsigned): min(x, 9) == x */
        __m128i digit = _mm_cmpeq_epi8(_mm_min_epu8(x, nine), x);
        m |= (uint64_t)(uint32_t)(~_mm_movemask_epi8(digit) & 0xFFFF) << (16 * k);
    }
    return m;
#else
    return mf_nondigit_tail(p, 64);
#endif
}

static inline void mf_nd_load(mf_ndit *it)
{
    int64_t n = it->lim - it->base;
    if (n >= 64)
        it->mask = mf_nondigit64(it->b + it->base);
    else
        it->mask = n > 0 ? mf_nondigit_tail(it->b + it->base, n) : 0;
}

/* The offset of the next non-digit byte, or -1 at the end of the buffer. */
MF_INLINE int64_t mf_nd_next(mf_ndit *it)
{
    int64_t pos;
    while (it->mask == 0) {
        it->base += 64;
        if (it->base >= it->lim)
            return -1;
        mf_nd_load(it);
    }
    pos = it->base + mf_ctz64(it->mask);
    it->mask &= it->mask - 1;
    return pos;
}

/* ------------------------------------------------------------------------- lines */
/* Store an id in the column in use; 0 if an int32 column cannot hold it (the caller then
   starts over with int64 columns). The general parser stores its ids with it too. */
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
   *uid and *iid get the line's user and item ids. `it` yields the line's non-digit
   positions. n_fields, dlen and kind[] are constants in the specialised copies below. */
MF_INLINE int64_t mf_line(const unsigned char *b, int64_t p, int64_t lim,
                          const mf_fast_spec *fs, mf_ndit *it, const mf_fast_cols *c,
                          int64_t row, int64_t item_now, int n_fields, int dlen,
                          const int *kind, int64_t *uid, int64_t *iid)
{
    int64_t s = p, e = p, e2, y, m, d;
    uint64_t v, fr;
    unsigned k3;
    int f, nf;
    double r;
    /* unrolled, so that in the specialised copies each field's kind is known */
#if defined(__clang__)
#pragma unroll
#elif defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (f = 0; f < n_fields; f++) {
        e = mf_nd_next(it);
        if (e < 0)
            return -1;
        switch (kind[f]) {
        case MF_FK_USER:
            if (mf_digits(b, s, e, lim, &v) || !mf_put_id(c->user, c->user32, row, (int64_t)v))
                return -1;
            *uid = (int64_t)v;
            break;
        case MF_FK_ITEM:
            if (mf_digits(b, s, e, lim, &v) || !mf_put_id(c->item, c->item32, row, (int64_t)v))
                return -1;
            *iid = (int64_t)v;
            break;
        case MF_FK_TIME:
            if (mf_digits(b, s, e, lim, &v))
                return -1;
            c->time[row] = (int64_t)v;
            break;
        case MF_FK_RATING:
            if (b[e] != '.') {  /* "d" or "digits" */
                if (e - s == 1) {
                    if (!fs->rok1[b[s] - '0'])
                        return -1;
                    c->rating[row] = fs->rtab1[b[s] - '0'];
                    break;
                }
                if (mf_digits(b, s, e, lim, &v))
                    return -1;
                r = (double)v;
            } else {
                e2 = mf_nd_next(it);
                if (e2 < 0)
                    return -1;
                if (e - s == 1 && e2 - e == 2) {  /* "d.d" */
                    k3 = (unsigned)(b[s] - '0') * 10 + (unsigned)(b[e + 1] - '0');
                    if (!fs->rok3[k3])
                        return -1;
                    c->rating[row] = fs->rtab3[k3];
                    e = e2;
                    break;
                }
                nf = (int)(e2 - e - 1);
                if (nf < 1 || e2 - s - 1 > 18 || mf_digits(b, s, e, lim, &v) ||
                    mf_digits(b, e + 1, e2, lim, &fr))
                    return -1;
                /* mantissa / 10**fraction digits: rounded once if the mantissa is exact;
                   longer ones go to the general parser (strtod) */
                v = v * (uint64_t)mf_pow10[nf] + fr;
                if (v > MF_EXACT_MANTISSA)
                    return -1;
                r = (double)v / mf_pow10[nf];
                e = e2;
            }
            if (fs->check_scale && (r < fs->lo || r > fs->hi))
                return -1;
            c->rating[row] = (float)r;
            break;
        case MF_FK_DATE:  /* YYYY-MM-DD: non-digits at +4 and +7, the field ends at +10 */
            if (e != s + 4 || b[e] != '-' || (e = mf_nd_next(it)) != s + 7 || b[e] != '-' ||
                (e = mf_nd_next(it)) != s + 10)
                return -1;
            y = (b[s] - '0') * 1000 + (b[s + 1] - '0') * 100 + (b[s + 2] - '0') * 10 +
                (b[s + 3] - '0');
            m = (b[s + 5] - '0') * 10 + (b[s + 6] - '0');
            d = (b[s + 8] - '0') * 10 + (b[s + 9] - '0');
            if (!mf_valid_date(y, m, d))
                return -1;
            c->time[row] = mf_days_from_civil(y, m, d) * 86400;
            break;
        default:  /* a field that is not kept: anything up to the delimiter or line end */
            while (b[e] != fs->d0 && b[e] != '\n') {
                e = mf_nd_next(it);
                if (e < 0)
                    return -1;
            }
            break;
        }
        /* the byte at e ends the field */
        if (f < n_fields - 1) {
            if (b[e] != fs->d0)
                return -1;
            if (dlen == 2 && (b[e + 1] != fs->d1 || mf_nd_next(it) != e + 1))
                return -1;
            s = e + dlen;
        } else if (b[e] == '\r') {
            if (mf_nd_next(it) != e + 1 || b[e + 1] != '\n')
                return -1;
            e++;
        } else if (b[e] != '\n') {
            return -1;
        }
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
    mf_ndit it;
    int64_t row = *prow, nx, uid = 0, iid = 0;
    int64_t umin = rg->umin, umax = rg->umax, imin = rg->imin, imax = rg->imax;
    it.b = b;
    it.lim = lim;
    it.base = p;
    mf_nd_load(&it);
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
