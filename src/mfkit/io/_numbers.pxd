# The tokenizer's value parsers: integers, decimals and calendar dates read straight from the
# text, no Python object and no copy in the common case. Each takes a byte buffer, a position
# (advanced past the value on success) and the end of the field, and returns 0 on success.
#
# Decimals are correctly rounded to double precision (the value Python's float() gives for
# the same text), so that a rating stored as float32 is rounded once from that double:
# exactly numpy.float32(float(text)). A mantissa of at most 2**53 with a power-of-ten
# exponent within +-22 is exact in double precision, and so is the power of ten, so one
# IEEE division or multiplication gives the correctly rounded result; anything else
# (longer mantissas, larger exponents) goes through strtod on a NUL-terminated copy.
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc, strtod
from libc.string cimport memcpy

cdef extern from "_tokenize.h" nogil:
    const double *mf_pow10               # 1e0 .. 1e22, all exact doubles
    bint mf_valid_date(int64_t y, int64_t m, int64_t d)
    int64_t mf_days_from_civil(int64_t y, int64_t m, int64_t d)


cdef inline bint is_digit(unsigned char c) noexcept nogil:
    return c >= 48 and c <= 57


cdef inline int parse_int(const unsigned char *b, int64_t *px, int64_t q,
                          int64_t *out) noexcept nogil:
    """Signed decimal integer at *px; advances *px. 0 on success, 1 if no digits or overflow."""
    cdef int64_t x = px[0], s
    cdef bint neg = False
    cdef uint64_t v = 0, lim
    cdef unsigned int d
    if x < q and (b[x] == 45 or b[x] == 43):
        neg = b[x] == 45
        x += 1
    s = x
    # up to 18 digits cannot overflow: no check in the common case
    while x < q and x - s < 18 and is_digit(b[x]):
        v = v * 10 + (b[x] - 48)
        x += 1
    if x == s:
        return 1
    if x < q and is_digit(b[x]):
        lim = <uint64_t>9223372036854775807ULL + (1 if neg else 0)
        while x < q and is_digit(b[x]):
            d = b[x] - 48
            if v > (lim - d) // 10:
                return 1
            v = v * 10 + d
            x += 1
    px[0] = x
    if neg:
        out[0] = -(<int64_t>(v - 1)) - 1 if v > 0 else 0
    else:
        out[0] = <int64_t>v
    return 0


cdef inline int strtod_field(const unsigned char *b, int64_t s, int64_t x,
                             double *out) noexcept nogil:
    """strtod of b[s, x) (already known to be a well-formed decimal); 0 on success."""
    cdef char tmp[80]
    cdef char *buf = tmp
    cdef char *endp
    cdef int64_t n = x - s
    cdef int rc = 0
    if n >= 80:
        buf = <char *>malloc(<size_t>(n + 1))
        if buf == NULL:
            return 1
    memcpy(buf, b + s, <size_t>n)
    buf[n] = 0
    out[0] = strtod(buf, &endp)
    if endp != buf + n:
        rc = 1
    if buf != tmp:
        free(buf)
    return rc


cdef inline int parse_decimal(const unsigned char *b, int64_t *px, int64_t q,
                              double *out) noexcept nogil:
    """[+-]digits[.digits][(e|E)[+-]digits], correctly rounded to double; 0 on success."""
    cdef int64_t x = px[0], s = px[0], e10 = 0, ev = 0
    cdef bint neg = False, eneg = False, any_digit = False, exact = True
    cdef uint64_t mant = 0
    cdef int nd = 0
    cdef double v
    if x < q and (b[x] == 45 or b[x] == 43):
        neg = b[x] == 45
        x += 1
    while x < q and is_digit(b[x]):
        any_digit = True
        if mant != 0 or b[x] != 48:
            if nd < 18:
                mant = mant * 10 + (b[x] - 48)
                nd += 1
            else:
                exact = False
        x += 1
    if x < q and b[x] == 46:
        x += 1
        while x < q and is_digit(b[x]):
            any_digit = True
            if mant != 0 or b[x] != 48:
                if nd < 18:
                    mant = mant * 10 + (b[x] - 48)
                    nd += 1
                    e10 -= 1
                else:
                    exact = False
            else:
                e10 -= 1
            x += 1
    if not any_digit:
        return 1
    if x < q and (b[x] == 101 or b[x] == 69):
        x += 1
        if x < q and (b[x] == 45 or b[x] == 43):
            eneg = b[x] == 45
            x += 1
        if x >= q or not is_digit(b[x]):
            return 1
        while x < q and is_digit(b[x]):
            if ev < 100000:
                ev = ev * 10 + (b[x] - 48)
            x += 1
        e10 += -ev if eneg else ev
    px[0] = x
    if exact and mant == 0:
        out[0] = -0.0 if neg else 0.0
        return 0
    # an integer mantissa converts with one rounding; with a power of ten, only when both
    # operands are exact (mant <= 2**53) is the one IEEE operation the only rounding
    if exact and (e10 == 0 or (mant <= 9007199254740992ULL and e10 >= -22 and e10 <= 22)):
        v = <double>mant
        if e10 < 0:
            v = v / mf_pow10[-e10]
        elif e10 > 0:
            v = v * mf_pow10[e10]
        out[0] = -v if neg else v
        return 0
    return strtod_field(b, s, x, out)


cdef inline int parse_date(const unsigned char *b, int64_t *px, int64_t q,
                           int64_t *out) noexcept nogil:
    """YYYY-MM-DD (a real calendar date, year 1 to 9999) -> seconds since 1970-01-01 UTC."""
    cdef int64_t x = px[0], y, m, d
    cdef int k
    if x + 10 > q or b[x + 4] != 45 or b[x + 7] != 45:
        return 1
    for k in range(10):
        if k != 4 and k != 7 and not is_digit(b[x + k]):
            return 1
    y = (b[x] - 48) * 1000 + (b[x + 1] - 48) * 100 + (b[x + 2] - 48) * 10 + (b[x + 3] - 48)
    m = (b[x + 5] - 48) * 10 + (b[x + 6] - 48)
    d = (b[x + 8] - 48) * 10 + (b[x + 9] - 48)
    if not mf_valid_date(y, m, d):
        return 1
    px[0] = x + 10
    out[0] = mf_days_from_civil(y, m, d) * 86400
    return 0
