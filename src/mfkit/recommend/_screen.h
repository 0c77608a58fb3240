/* The int8 screen of the top-N kernel (float32 models, AVX-512 path, CPUs with VNNI).
 *
 * Each item row q gets a scale s (a float32, about max_f |q_f| / 127) and integers
 * Q8_f = round(q_f / s) in [-127, 127]; each query row p likewise t and P8. The screen
 * computes I = P8 . Q8 exactly in int32 with vpdpbusd (64 byte products per instruction,
 * four times the float32 multiply-adds of an FMA), and from it a proven upper bound of the
 * score the exact kernel would compute. A slot whose bound is below the row's n-th best
 * cannot enter the list and is dropped; every other slot is scored again exactly, in the
 * order of mf_dot (mf_exact16_f32), so the lists are the same as on every other path.
 *
 * The bound. With e_p = p - t P8 and e_q = q - s Q8 (real numbers, whatever t, s, P8 and
 * Q8 are), p . q = t s I + t P8 . e_q + e_p . q exactly, so by Cauchy-Schwarz
 *     p . q <= t s I + C D + A0 B,   C = t |P8|, D = |e_q|, A0 = |e_p|, B = |q|.
 * The exact kernel's float32 dot d differs from p . q by at most c |p| |q| (c =
 * mf_topn_margin(k, 4)), and the score sc = (base + add) + d, two double additions, is at
 * most base + add + d + 2^-52 (|base| + |add| + |d|). With A = A0 + (c + 2^-50) |p|:
 *     sc <= base + add + t s I + A B + C D + 2^-52 (|base| + |add|).                  (1)
 * The screen evaluates, in float32 (vpdpbusd's int32 sum converted exactly: |I| <= 127^2 k
 * < 2^24 for k <= 1024),
 *     z = fma(C', D'', fma(A', B'', fma(fl(I s), t, add''))),
 * where the primed values are the bounds rounded up with a cushion: A' >= A (1 + 2^-20),
 * C' >= C (1 + 2^-20), B'' >= B (1 + 2^-20), D'' >= D (1 + 2^-20) + 2^-20 E (E = s |Q8| >=
 * |s Q8|, so |t s I| <= C' E), add'' >= add + 2^-20 |add| (the norms themselves are
 * computed in double and inflated by 2^-30, far more than their rounding for k <= 1024).
 * Four float32 roundings change z by at most gamma_4 ~ 2^-22 times the sum of the
 * magnitudes of its terms, |t s I| + |add''| + A' B'' + C' D'', which the cushions exceed
 * term by term (each is at least 2^-20.1 of its term, minus its own float rounding), so
 *     z >= t s I + add + A B + C D + 2^-52 |add|,  hence by (1)  sc <= base + z + 2^-52 |base|.
 * A row's float threshold is thr = fl((thresh - base) - 2^-20 (|thresh| + |base|)) - 2^-120,
 * rounded toward -inf by the cushion (it covers the double subtraction, the float rounding
 * and 2^-52 |base|; 2^-120 covers the absolute error of four roundings in the subnormal
 * range). A slot is dropped only when z < thr, so sc <= base + z + 2^-52 |base| < thresh:
 * it can neither beat nor tie the n-th best. The comparison is false on NaN, so a row or a
 * slot whose constants are NaN (the caller's mark for a non-finite or too large value:
 * every constant is kept below 2^40 in magnitude and thresholds below 2^100, so no float
 * product or sum overflows) is never dropped.
 *
 * Layout of the int8 panels: for each group g of four factors, 64 bytes, byte 4 w + j =
 * Q8 of slot w, factor 4 g + j, plus 128 (vpdpbusd multiplies unsigned bytes by signed
 * ones; the query's P8 are the signed, broadcast operand); factors past k are 128 (Q8 = 0)
 * and the query rows are zero padded. The unsigned offset adds 128 sum_f P8_f to every
 * sum, which the caller passes per row (corr) and the screen subtracts exactly in int32.
 */
#ifndef MFKIT_SCREEN_H
#define MFKIT_SCREEN_H

#include <stdint.h>

#include "_isa.h"

#if MFKIT_HAVE_X86_PATHS
#include <immintrin.h>

#define MFKIT_TARGET_VNNI \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,bmi,bmi2,popcnt,lzcnt,f16c,movbe")))

/* whether this CPU runs the screen (AVX-512 F/BW/DQ/VL and VNNI) */
static inline int mf_have_vnni(void) { return mfkit_cpu_vnni(); }

/* The test of one row's int32 sums acc (see the comment at the top): bit w of the result
 * is set when slot w may enter the row's list (z >= thr, or unordered). */
#define MFKIT_SCREEN_TEST(acc, u)                                                           \
    {                                                                                      \
        __m512i iv = _mm512_sub_epi32((acc), _mm512_set1_epi32(corr[u]));                  \
        __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(iv), sv);                              \
        __m512 z = _mm512_fmadd_ps(y, _mm512_set1_ps(t[u]), av);                           \
        z = _mm512_fmadd_ps(_mm512_set1_ps(a[u]), bv, z);                                  \
        z = _mm512_fmadd_ps(_mm512_set1_ps(c[u]), dv, z);                                  \
        __mmask16 hit = _mm512_cmp_ps_mask(z, _mm512_set1_ps(thr[u]), _CMP_NLT_UQ);        \
        out[u] = (uint16_t)hit;                                                            \
        if (hit) m |= 1 << (u);                                                            \
    }
#define MFKIT_SCREEN_LOADS                                                                  \
    __m512 sv = _mm512_loadu_ps(s), av = _mm512_loadu_ps(add);                             \
    __m512 bv = _mm512_loadu_ps(b), dv = _mm512_loadu_ps(d);                               \
    int m = 0;
/* acc += the byte products of v and the broadcast word words[u][g]. In gcc, inline
 * assembly: its intrinsic makes a register copy per instruction (gcc 12) and loads the
 * broadcast separately; here it is one instruction with an embedded broadcast. */
#if defined(__GNUC__) && !defined(__clang__)
#define MFKIT_DPB(acc, u, v, g)                                                             \
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(v), "m"(words[u][g]))
#else
#define MFKIT_DPB(acc, u, v, g) acc = _mm512_dpbusd_epi32(acc, v, _mm512_set1_epi32(words[u][g]))
#endif

/* The screen of one panel for 8 (4) query rows (words: each row's P8 packed four bytes
 * per int32, kw words). Writes each row's 16-bit mask of the slots that may enter its list
 * to out[u]; returns the mask of rows with some such slot. Named accumulators (an array
 * of them is kept in memory by gcc). */
MFKIT_TARGET_VNNI static int mf_screen8_vnni(const int32_t *const *words,
        const uint8_t *panel8, int kw, const float *s, const float *add, const float *b,
        const float *d, const int32_t *corr, const float *t, const float *a,
        const float *c, const float *thr, uint16_t *out)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    __m512i a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int g = 0; g < kw; g++) {
        __m512i v = _mm512_loadu_si512((const void *)(panel8 + (long)g * 64));
        MFKIT_DPB(a0, 0, v, g); MFKIT_DPB(a1, 1, v, g);
        MFKIT_DPB(a2, 2, v, g); MFKIT_DPB(a3, 3, v, g);
        MFKIT_DPB(a4, 4, v, g); MFKIT_DPB(a5, 5, v, g);
        MFKIT_DPB(a6, 6, v, g); MFKIT_DPB(a7, 7, v, g);
    }
    MFKIT_SCREEN_LOADS
    MFKIT_SCREEN_TEST(a0, 0) MFKIT_SCREEN_TEST(a1, 1)
    MFKIT_SCREEN_TEST(a2, 2) MFKIT_SCREEN_TEST(a3, 3)
    MFKIT_SCREEN_TEST(a4, 4) MFKIT_SCREEN_TEST(a5, 5)
    MFKIT_SCREEN_TEST(a6, 6) MFKIT_SCREEN_TEST(a7, 7)
    return m;
}

MFKIT_TARGET_VNNI static int mf_screen4_vnni(const int32_t *const *words,
        const uint8_t *panel8, int kw, const float *s, const float *add, const float *b,
        const float *d, const int32_t *corr, const float *t, const float *a,
        const float *c, const float *thr, uint16_t *out)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (int g = 0; g < kw; g++) {
        __m512i v = _mm512_loadu_si512((const void *)(panel8 + (long)g * 64));
        MFKIT_DPB(a0, 0, v, g); MFKIT_DPB(a1, 1, v, g);
        MFKIT_DPB(a2, 2, v, g); MFKIT_DPB(a3, 3, v, g);
    }
    MFKIT_SCREEN_LOADS
    MFKIT_SCREEN_TEST(a0, 0) MFKIT_SCREEN_TEST(a1, 1)
    MFKIT_SCREEN_TEST(a2, 2) MFKIT_SCREEN_TEST(a3, 3)
    return m;
}

/* The exact float32 dot products of row p with the 16 slots of a float panel, each summed
 * as mf_dot sums it (eight partial sums over f = j mod 8, each in increasing f, a multiply
 * then an add, combined ((0+4)+(1+5))+((2+6)+(3+7))): lane w equals mf_rescore_f32(p,
 * panel, w, k) bit for bit (the lanes run across slots, never across factors). */
MFKIT_TARGET_AVX512 static void mf_exact16_f32(const float *p, const float *panel, int k,
                                               float *out)
{
    __m512 acc[8];
    for (int j = 0; j < 8; j++) acc[j] = _mm512_setzero_ps();
    int f = 0;
    for (; f + 8 <= k; f += 8)
        for (int j = 0; j < 8; j++)
            acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(_mm512_set1_ps(p[f + j]),
                                   _mm512_loadu_ps(panel + (long)(f + j) * 16)));
    for (int j = 0; f + j < k; j++)
        acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(_mm512_set1_ps(p[f + j]),
                               _mm512_loadu_ps(panel + (long)(f + j) * 16)));
    __m512 r = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[4]),
                                           _mm512_add_ps(acc[1], acc[5])),
                             _mm512_add_ps(_mm512_add_ps(acc[2], acc[6]),
                                           _mm512_add_ps(acc[3], acc[7])));
    _mm512_storeu_ps(out, r);
}

/* The screen of a group of 8 rows on one panel, scoring only the live half (or both). */
static inline int mf_screen8(const int32_t *const *words, const uint8_t *panel8, int kw,
        const float *s, const float *add, const float *b, const float *d,
        const int32_t *corr, const float *t, const float *a, const float *c,
        const float *thr, uint16_t *out, int live)
{
    if ((live & 0xF0) == 0)
        return mf_screen4_vnni(words, panel8, kw, s, add, b, d, corr, t, a, c, thr, out);
    if ((live & 0x0F) == 0)
        return mf_screen4_vnni(words + 4, panel8, kw, s, add, b, d, corr + 4, t + 4, a + 4,
                               c + 4, thr + 4, out + 4) << 4;
    return mf_screen8_vnni(words, panel8, kw, s, add, b, d, corr, t, a, c, thr, out);
}
#define MFKIT_HAVE_SCREEN 1
#else
static inline int mf_have_vnni(void) { return 0; }
static inline void mf_exact16_f32(const float *p, const float *panel, int k, float *out)
{
    (void)p; (void)panel; (void)k; (void)out;
}
static inline int mf_screen8(const int32_t *const *words, const uint8_t *panel8, int kw,
        const float *s, const float *add, const float *b, const float *d,
        const int32_t *corr, const float *t, const float *a, const float *c,
        const float *thr, uint16_t *out, int live)
{
    (void)words; (void)panel8; (void)kw; (void)s; (void)add; (void)b; (void)d; (void)corr;
    (void)t; (void)a; (void)c; (void)thr; (void)out; (void)live;
    return 0;
}
#define MFKIT_HAVE_SCREEN 0
#endif

#endif /* MFKIT_SCREEN_H */
