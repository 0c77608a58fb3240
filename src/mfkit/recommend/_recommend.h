/* Scoring tiles for top-N recommendation.
 *
 * Paths (the `isa` argument of mfkit.recommend._recommend.topn, see _isa.h): the baseline
 * scores every tile exactly as below (mf_score4_select_*). The avx2 and avx512 paths
 * (mf_score4_filter_*) score a tile with fused multiply-adds on their registers, which is
 * faster but rounds differently, so they use it only as a filter: a slot is a candidate
 * when its fused score plus a bound on the rounding difference (margin below) beats the
 * row's n-th best, and every candidate is then scored again exactly (mf_rescore_*, the
 * order of mf_dot) before it enters the list. The lists, ids and scores, are therefore the
 * same on every path and bit-identical to predict(). For float32 models on a CPU with
 * AVX-512 VNNI the avx512 path uses the int8 screen of _screen.h in place of the fused
 * filter, with the same rule (a proven bound, then exact scores). An aarch64 build has no
 * filter: its neon path scores as the baseline does (the same lists).
 *
 * mf_score4_* computes the dot products of 4 query rows with the 16 items of one packed
 * panel (layout panel[f * 16 + w] = factor f of item w). The vector lanes run across
 * items, never across factors, so every dot product is summed in exactly the order of
 * mf_dot_* in _simd.h: eight partial sums over f = j (mod 8), each in increasing f,
 * combined as ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7)). The scores are therefore
 * bit-identical to the ones predict() computes, on every instruction-set clone (the
 * build passes -ffp-contract=off, so no multiply-add is contracted into an FMA).
 */
#ifndef MFKIT_RECOMMEND_H
#define MFKIT_RECOMMEND_H

#define MFKIT_PANEL 16

#include <math.h>
#include <string.h>

#include "_platform.h"
#include "_isa.h"

#define MFKIT_TOPN_CLONES MFKIT_TARGET_CLONES("arch=x86-64-v4", "arch=x86-64-v3", "default")

#if defined(__GNUC__)
typedef float mf_v16f __attribute__((vector_size(16 * sizeof(float))));
typedef double mf_v16d __attribute__((vector_size(16 * sizeof(double))));
#define MFKIT_HAVE_VECTOR_EXT 1
#else
#define MFKIT_HAVE_VECTOR_EXT 0
#endif

#if MFKIT_HAVE_VECTOR_EXT
#define MFKIT_DEFINE_SCORE4(T, V, SUF)                                                      \
static inline V mf_load_##SUF(const T *x)                                                  \
{                                                                                          \
    V v;                                                                                   \
    __builtin_memcpy(&v, x, sizeof v);                                                     \
    return v;                                                                              \
}                                                                                          \
                                                                                           \
MFKIT_INLINE static void mf_score4_##SUF(const T *p0, const T *p1, const T *p2,            \
                                         const T *p3, const T *panel, int k, T *out)       \
{                                                                                          \
    V t0 = {0}, t1 = {0}, t2 = {0}, t3 = {0};                                              \
    /* partial sums in the order 0,4 | 1,5 | 2,6 | 3,7 to keep few vectors live */         \
    static const int order[8] = {0, 4, 1, 5, 2, 6, 3, 7};                                  \
    V h0 = {0}, h1 = {0}, h2 = {0}, h3 = {0};                                              \
    V g0 = {0}, g1 = {0}, g2 = {0}, g3 = {0};                                              \
    for (int step = 0; step < 8; step++) {                                                 \
        int j = order[step];                                                               \
        V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                          \
        for (int f = j; f < k; f += 8) {                                                   \
            V q = mf_load_##SUF(panel + (long)f * MFKIT_PANEL);                            \
            a0 += p0[f] * q;                                                               \
            a1 += p1[f] * q;                                                               \
            a2 += p2[f] * q;                                                               \
            a3 += p3[f] * q;                                                               \
        }                                                                                  \
        if ((step & 1) == 0) {         /* first of a pair: keep it */                      \
            h0 = a0; h1 = a1; h2 = a2; h3 = a3;                                            \
        } else {                       /* second of a pair: (s_j + s_{j+4}) */             \
            a0 = h0 + a0; a1 = h1 + a1; a2 = h2 + a2; a3 = h3 + a3;                        \
            if ((step & 3) == 1) {     /* (s0+s4) or (s2+s6): wait for the next pair */   \
                g0 = a0; g1 = a1; g2 = a2; g3 = a3;                                        \
            } else if (step == 3) {    /* (s0+s4) + (s1+s5) */                             \
                t0 = g0 + a0; t1 = g1 + a1; t2 = g2 + a2; t3 = g3 + a3;                    \
            } else {                   /* step 7: t + ((s2+s6) + (s3+s7)) */               \
                t0 = t0 + (g0 + a0); t1 = t1 + (g1 + a1);                                  \
                t2 = t2 + (g2 + a2); t3 = t3 + (g3 + a3);                                  \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    __builtin_memcpy(out + 0 * MFKIT_PANEL, &t0, sizeof t0);                               \
    __builtin_memcpy(out + 1 * MFKIT_PANEL, &t1, sizeof t1);                               \
    __builtin_memcpy(out + 2 * MFKIT_PANEL, &t2, sizeof t2);                               \
    __builtin_memcpy(out + 3 * MFKIT_PANEL, &t3, sizeof t3);                               \
}
MFKIT_DEFINE_SCORE4(float, mf_v16f, f32)
MFKIT_DEFINE_SCORE4(double, mf_v16d, f64)

#else
/* Portable fallback with the same summation order, one lane at a time. */
#define MFKIT_DEFINE_SCORE4(T, SUF)                                                         \
MFKIT_INLINE static void mf_score4_##SUF(const T *p0, const T *p1, const T *p2,            \
                                         const T *p3, const T *panel, int k, T *out)       \
{                                                                                          \
    const T *p[4] = {p0, p1, p2, p3};                                                      \
    for (int u = 0; u < 4; u++) {                                                          \
        for (int w = 0; w < MFKIT_PANEL; w++) {                                            \
            T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                           \
            for (int f = 0; f < k; f++) acc[f & 7] += p[u][f] * panel[f * MFKIT_PANEL + w]; \
            out[u * MFKIT_PANEL + w] =                                                     \
                ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])); \
        }                                                                                  \
    }                                                                                      \
}
MFKIT_DEFINE_SCORE4(float, f32)
MFKIT_DEFINE_SCORE4(double, f64)

#endif

/* The threshold test of one 4 x 16 tile with AVX-512 mask compares (the plain loop below
 * vectorises poorly and would cost as much as the scoring). Same IEEE double operations
 * as the plain loop, so the same bits; _CMP_GE_OQ is C's '>=' (false on NaN). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(MFKIT_NO_DISPATCH) && !defined(__OPTIMIZE_SIZE__)
#include <immintrin.h>
#define MFKIT_HAVE_AVX512_TEST 1
#define MFKIT_DEFINE_ANY512(T, SUF, LOAD8)                                                  \
__attribute__((target("avx512f"))) static inline int mf_tile_any512_##SUF(                 \
        const T *tile, const double *add, const double *base, const double *thresh,        \
        double *s)                                                                         \
{                                                                                          \
    __m512d a0 = _mm512_loadu_pd(add), a1 = _mm512_loadu_pd(add + 8);                      \
    int m = 0;                                                                             \
    for (int u = 0; u < 4; u++) {                                                          \
        __m512d b = _mm512_set1_pd(base[u]), t = _mm512_set1_pd(thresh[u]);                \
        __m512d s0 = _mm512_add_pd(_mm512_add_pd(b, a0), LOAD8(tile + u * MFKIT_PANEL));   \
        __m512d s1 = _mm512_add_pd(_mm512_add_pd(b, a1), LOAD8(tile + u * MFKIT_PANEL + 8)); \
        _mm512_storeu_pd(s + u * MFKIT_PANEL, s0);                                         \
        _mm512_storeu_pd(s + u * MFKIT_PANEL + 8, s1);                                     \
        if (_mm512_cmp_pd_mask(s0, t, _CMP_GE_OQ) | _mm512_cmp_pd_mask(s1, t, _CMP_GE_OQ))  \
            m |= 1 << u;                                                                   \
    }                                                                                      \
    return m;                                                                              \
}
#define MFKIT_LOAD8_F32(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
#define MFKIT_LOAD8_F64(p) _mm512_loadu_pd(p)
MFKIT_DEFINE_ANY512(float, f32, MFKIT_LOAD8_F32)
MFKIT_DEFINE_ANY512(double, f64, MFKIT_LOAD8_F64)
#define MFKIT_HAVE_512() __builtin_cpu_supports("avx512f")
#else
#define MFKIT_HAVE_AVX512_TEST 0
#define MFKIT_HAVE_512() 0
#endif

/* Score 4 rows against one panel, then s[u * 16 + w] = (base[u] + add[w]) + (double)dot
 * (the order of predict()). Returns a 4-bit mask of the rows with some s >= thresh[u]
 * (rare once a row's list is full, so the caller looks at single slots only then). */
#define MFKIT_DEFINE_ANY(T, SUF)                                                            \
MFKIT_INLINE static int mf_panel_any_##SUF(const T *restrict dot,                          \
        const double *restrict add, double base, double thresh, double *restrict s)        \
{                                                                                          \
    int any = 0;                                                                           \
    for (int w = 0; w < MFKIT_PANEL; w++) {                                                \
        double v = (base + add[w]) + (double)dot[w];                                       \
        s[w] = v;                                                                          \
        any |= v >= thresh;                                                                \
    }                                                                                      \
    return any;                                                                            \
}                                                                                          \
                                                                                           \
MFKIT_TOPN_CLONES static int mf_score4_select_##SUF(const T *p0, const T *p1, const T *p2, \
        const T *p3, const T *panel, int k, const double *add, const double *base,         \
        const double *thresh, int wide, T *tile, double *s)                                \
{                                                                                          \
    int m = 0;                                                                             \
    mf_score4_##SUF(p0, p1, p2, p3, panel, k, tile);                                       \
    if (MFKIT_HAVE_AVX512_TEST && wide)                                                    \
        return MFKIT_ANY512_##SUF(tile, add, base, thresh, s);                             \
    for (int u = 0; u < 4; u++)                                                            \
        m |= mf_panel_any_##SUF(tile + u * MFKIT_PANEL, add, base[u], thresh[u],           \
                                s + u * MFKIT_PANEL) << u;                                 \
    return m;                                                                              \
}
#if MFKIT_HAVE_AVX512_TEST
#define MFKIT_ANY512_f32 mf_tile_any512_f32
#define MFKIT_ANY512_f64 mf_tile_any512_f64
#else
#define MFKIT_ANY512_f32(...) 0
#define MFKIT_ANY512_f64(...) 0
#endif
MFKIT_DEFINE_ANY(float, f32)
MFKIT_DEFINE_ANY(double, f64)

/* whether the AVX-512 threshold test may be used on this CPU (checked once per call) */
static inline int mf_have_avx512(void) { return MFKIT_HAVE_512(); }

/* ---------------------------------------------------------------- the exact rescoring
 * The dot product of row p with slot w of a panel, summed as mf_dot sums it (eight partial
 * sums over f = j mod 8, each in increasing f, combined ((0+4)+(1+5))+((2+6)+(3+7))). */
#define MFKIT_DEFINE_RESCORE(T, SUF)                                                        \
static inline double mf_rescore_##SUF(const T *p, const T *panel, int w, int k)            \
{                                                                                          \
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                   \
    for (int f = 0; f < k; f++) acc[f & 7] += p[f] * panel[(long)f * MFKIT_PANEL + w];     \
    return (double)(((acc[0] + acc[4]) + (acc[1] + acc[5]))                                \
                    + ((acc[2] + acc[6]) + (acc[3] + acc[7])));                            \
}
MFKIT_DEFINE_RESCORE(float, f32)
MFKIT_DEFINE_RESCORE(double, f64)

/* The filter's margin. The fused tile sums f in chains of at most k terms (plus one
 * combining addition); the exact score has chains of ceil(k/8) terms and three combining
 * levels. Each
 * differs from the true dot product by at most gamma_m sum_f |p_f q_f| <= gamma_m |p| |q|
 * (gamma_m = m u / (1 - m u), u the unit roundoff, m the terms of the longest chain plus its
 * combining levels), so the two differ by at most c |p| |q| with
 * c = gamma_{k+2} + gamma_{ceil(k/8)+4}, inflated slightly for the double arithmetic of
 * the norms. The score's final double addition adds at most 2^-52 |s|, covered by the
 * relative term of the test. */
static inline double mf_topn_margin(int k, int itemsize)
{
    double u = itemsize == 4 ? 0x1p-24 : 0x1p-53;
    double m1 = k + 2, m2 = (k + 7) / 8 + 4;
    return (m1 * u / (1 - m1 * u) + m2 * u / (1 - m2 * u)) * (1 + 1e-6);
}
#define MFKIT_TOPN_REL 0x1p-50

#if MFKIT_HAVE_X86_PATHS
#include <immintrin.h>

/* The filter's test of one tile row (16 slots) given its fused dots as doubles in d0..:
 * s = (base + add[w]) + d, stored, and whether some s + (pn qn[w] + REL |s|) >= thresh
 * (>=: a slot tying the n-th best may still enter by its lower item index). */
#define MFKIT_TEST8_512(dv, off)                                                           \
    {                                                                                      \
        __m512d s_ = _mm512_add_pd(_mm512_add_pd(b_, _mm512_loadu_pd(add + (off))), (dv)); \
        _mm512_storeu_pd(srow_ + (off), s_);                                               \
        __m512d abs_ = _mm512_abs_pd(s_);                                                  \
        __m512d m_ = _mm512_add_pd(_mm512_mul_pd(pn_, _mm512_loadu_pd(qn + (off))),        \
                                   _mm512_mul_pd(rel_, abs_));                             \
        hit_ |= _mm512_cmp_pd_mask(_mm512_add_pd(s_, m_), t_, _CMP_GE_OQ);                 \
    }
#define MFKIT_TEST4_256(dv, off)                                                           \
    {                                                                                      \
        __m256d s_ = _mm256_add_pd(_mm256_add_pd(b_, _mm256_loadu_pd(add + (off))), (dv)); \
        _mm256_storeu_pd(srow_ + (off), s_);                                               \
        __m256d abs_ = _mm256_andnot_pd(_mm256_set1_pd(-0.0), s_);                         \
        __m256d m_ = _mm256_add_pd(_mm256_mul_pd(pn_, _mm256_loadu_pd(qn + (off))),        \
                                   _mm256_mul_pd(rel_, abs_));                             \
        hit_ |= _mm256_movemask_pd(_mm256_cmp_pd(_mm256_add_pd(s_, m_), t_, _CMP_GE_OQ));  \
    }

/* Fused scores of 4 rows against one panel, then the filter: s[u * 16 + w] =
 * (base[u] + add[w]) + (double)fused dot, and bit u of the result is set when some slot has
 * s + pn[u] qn[w] + REL |s| >= thresh[u] (pn: the rows' norms, qn: c times the slots'
 * norms). The caller rescores those slots exactly. One fused chain per register over all
 * k factors (the margin assumes chains of up to k + 2 terms). */
MFKIT_TARGET_AVX512 static int mf_score4_filter_f32_avx512(const float *p0, const float *p1,
        const float *p2, const float *p3, const float *panel, int k, const double *add,
        const double *qn, const double *base, const double *pn, const double *thresh,
        float *tile, double *s)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m512 c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    int f = 0;
    for (; f + 2 <= k; f += 2) {
        __m512 q = _mm512_loadu_ps(panel + (long)f * MFKIT_PANEL);
        __m512 r = _mm512_loadu_ps(panel + (long)(f + 1) * MFKIT_PANEL);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(p0[f]), q, a0);
        a1 = _mm512_fmadd_ps(_mm512_set1_ps(p1[f]), q, a1);
        a2 = _mm512_fmadd_ps(_mm512_set1_ps(p2[f]), q, a2);
        a3 = _mm512_fmadd_ps(_mm512_set1_ps(p3[f]), q, a3);
        c0 = _mm512_fmadd_ps(_mm512_set1_ps(p0[f + 1]), r, c0);
        c1 = _mm512_fmadd_ps(_mm512_set1_ps(p1[f + 1]), r, c1);
        c2 = _mm512_fmadd_ps(_mm512_set1_ps(p2[f + 1]), r, c2);
        c3 = _mm512_fmadd_ps(_mm512_set1_ps(p3[f + 1]), r, c3);
    }
    if (f < k) {
        __m512 q = _mm512_loadu_ps(panel + (long)f * MFKIT_PANEL);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(p0[f]), q, a0);
        a1 = _mm512_fmadd_ps(_mm512_set1_ps(p1[f]), q, a1);
        a2 = _mm512_fmadd_ps(_mm512_set1_ps(p2[f]), q, a2);
        a3 = _mm512_fmadd_ps(_mm512_set1_ps(p3[f]), q, a3);
    }
    _mm512_storeu_ps(tile, _mm512_add_ps(a0, c0));
    _mm512_storeu_ps(tile + 16, _mm512_add_ps(a1, c1));
    _mm512_storeu_ps(tile + 32, _mm512_add_ps(a2, c2));
    _mm512_storeu_ps(tile + 48, _mm512_add_ps(a3, c3));
    __m512d rel_ = _mm512_set1_pd(MFKIT_TOPN_REL);
    int m = 0;
    for (int u = 0; u < 4; u++) {
        __m512d b_ = _mm512_set1_pd(base[u]), t_ = _mm512_set1_pd(thresh[u]);
        __m512d pn_ = _mm512_set1_pd(pn[u]);
        double *srow_ = s + u * MFKIT_PANEL;
        const float *tr = tile + u * MFKIT_PANEL;
        unsigned hit_ = 0;
        MFKIT_TEST8_512(_mm512_cvtps_pd(_mm256_loadu_ps(tr)), 0)
        MFKIT_TEST8_512(_mm512_cvtps_pd(_mm256_loadu_ps(tr + 8)), 8)
        if (hit_) m |= 1 << u;
    }
    return m;
}

/* 8 rows at once: 16 of AVX-512's 32 registers accumulate (two chains per row), so each
 * panel line read from the cache feeds 8 rows instead of 4. */
MFKIT_TARGET_AVX512 static int mf_score8_filter_f32_avx512(const float *const *p,
        const float *panel, int k, const double *add, const double *qn, const double *base,
        const double *pn, const double *thresh, float *tile, double *s)
{
    __m512 a[8], c[8];
    for (int u = 0; u < 8; u++) a[u] = c[u] = _mm512_setzero_ps();
    const float *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
    const float *p4 = p[4], *p5 = p[5], *p6 = p[6], *p7 = p[7];
    int f = 0;
    for (; f + 2 <= k; f += 2) {
        __m512 q = _mm512_loadu_ps(panel + (long)f * MFKIT_PANEL);
        __m512 r = _mm512_loadu_ps(panel + (long)(f + 1) * MFKIT_PANEL);
        a[0] = _mm512_fmadd_ps(_mm512_set1_ps(p0[f]), q, a[0]);
        a[1] = _mm512_fmadd_ps(_mm512_set1_ps(p1[f]), q, a[1]);
        a[2] = _mm512_fmadd_ps(_mm512_set1_ps(p2[f]), q, a[2]);
        a[3] = _mm512_fmadd_ps(_mm512_set1_ps(p3[f]), q, a[3]);
        a[4] = _mm512_fmadd_ps(_mm512_set1_ps(p4[f]), q, a[4]);
        a[5] = _mm512_fmadd_ps(_mm512_set1_ps(p5[f]), q, a[5]);
        a[6] = _mm512_fmadd_ps(_mm512_set1_ps(p6[f]), q, a[6]);
        a[7] = _mm512_fmadd_ps(_mm512_set1_ps(p7[f]), q, a[7]);
        c[0] = _mm512_fmadd_ps(_mm512_set1_ps(p0[f + 1]), r, c[0]);
        c[1] = _mm512_fmadd_ps(_mm512_set1_ps(p1[f + 1]), r, c[1]);
        c[2] = _mm512_fmadd_ps(_mm512_set1_ps(p2[f + 1]), r, c[2]);
        c[3] = _mm512_fmadd_ps(_mm512_set1_ps(p3[f + 1]), r, c[3]);
        c[4] = _mm512_fmadd_ps(_mm512_set1_ps(p4[f + 1]), r, c[4]);
        c[5] = _mm512_fmadd_ps(_mm512_set1_ps(p5[f + 1]), r, c[5]);
        c[6] = _mm512_fmadd_ps(_mm512_set1_ps(p6[f + 1]), r, c[6]);
        c[7] = _mm512_fmadd_ps(_mm512_set1_ps(p7[f + 1]), r, c[7]);
    }
    if (f < k) {
        __m512 q = _mm512_loadu_ps(panel + (long)f * MFKIT_PANEL);
        for (int u = 0; u < 8; u++) a[u] = _mm512_fmadd_ps(_mm512_set1_ps(p[u][f]), q, a[u]);
    }
    for (int u = 0; u < 8; u++) _mm512_storeu_ps(tile + u * MFKIT_PANEL, _mm512_add_ps(a[u], c[u]));
    __m512d rel_ = _mm512_set1_pd(MFKIT_TOPN_REL);
    int m = 0;
    for (int u = 0; u < 8; u++) {
        __m512d b_ = _mm512_set1_pd(base[u]), t_ = _mm512_set1_pd(thresh[u]);
        __m512d pn_ = _mm512_set1_pd(pn[u]);
        double *srow_ = s + u * MFKIT_PANEL;
        const float *tr = tile + u * MFKIT_PANEL;
        unsigned hit_ = 0;
        MFKIT_TEST8_512(_mm512_cvtps_pd(_mm256_loadu_ps(tr)), 0)
        MFKIT_TEST8_512(_mm512_cvtps_pd(_mm256_loadu_ps(tr + 8)), 8)
        if (hit_) m |= 1 << u;
    }
    return m;
}

MFKIT_TARGET_AVX512 static int mf_score4_filter_f64_avx512(const double *p0, const double *p1,
        const double *p2, const double *p3, const double *panel, int k, const double *add,
        const double *qn, const double *base, const double *pn, const double *thresh,
        double *tile, double *s)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    __m512d c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    for (int f = 0; f < k; f++) {
        __m512d q = _mm512_loadu_pd(panel + (long)f * MFKIT_PANEL);
        __m512d r = _mm512_loadu_pd(panel + (long)f * MFKIT_PANEL + 8);
        __m512d x0 = _mm512_set1_pd(p0[f]), x1 = _mm512_set1_pd(p1[f]);
        __m512d x2 = _mm512_set1_pd(p2[f]), x3 = _mm512_set1_pd(p3[f]);
        a0 = _mm512_fmadd_pd(x0, q, a0); c0 = _mm512_fmadd_pd(x0, r, c0);
        a1 = _mm512_fmadd_pd(x1, q, a1); c1 = _mm512_fmadd_pd(x1, r, c1);
        a2 = _mm512_fmadd_pd(x2, q, a2); c2 = _mm512_fmadd_pd(x2, r, c2);
        a3 = _mm512_fmadd_pd(x3, q, a3); c3 = _mm512_fmadd_pd(x3, r, c3);
    }
    _mm512_storeu_pd(tile, a0); _mm512_storeu_pd(tile + 8, c0);
    _mm512_storeu_pd(tile + 16, a1); _mm512_storeu_pd(tile + 24, c1);
    _mm512_storeu_pd(tile + 32, a2); _mm512_storeu_pd(tile + 40, c2);
    _mm512_storeu_pd(tile + 48, a3); _mm512_storeu_pd(tile + 56, c3);
    __m512d rel_ = _mm512_set1_pd(MFKIT_TOPN_REL);
    int m = 0;
    for (int u = 0; u < 4; u++) {
        __m512d b_ = _mm512_set1_pd(base[u]), t_ = _mm512_set1_pd(thresh[u]);
        __m512d pn_ = _mm512_set1_pd(pn[u]);
        double *srow_ = s + u * MFKIT_PANEL;
        const double *tr = tile + u * MFKIT_PANEL;
        unsigned hit_ = 0;
        MFKIT_TEST8_512(_mm512_loadu_pd(tr), 0)
        MFKIT_TEST8_512(_mm512_loadu_pd(tr + 8), 8)
        if (hit_) m |= 1 << u;
    }
    return m;
}

MFKIT_TARGET_AVX2 static int mf_score4_filter_f32_avx2(const float *p0, const float *p1,
        const float *p2, const float *p3, const float *panel, int k, const double *add,
        const double *qn, const double *base, const double *pn, const double *thresh,
        float *tile, double *s)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    for (int f = 0; f < k; f++) {
        __m256 q = _mm256_loadu_ps(panel + (long)f * MFKIT_PANEL);
        __m256 r = _mm256_loadu_ps(panel + (long)f * MFKIT_PANEL + 8);
        __m256 x0 = _mm256_broadcast_ss(p0 + f), x1 = _mm256_broadcast_ss(p1 + f);
        __m256 x2 = _mm256_broadcast_ss(p2 + f), x3 = _mm256_broadcast_ss(p3 + f);
        a0 = _mm256_fmadd_ps(x0, q, a0); c0 = _mm256_fmadd_ps(x0, r, c0);
        a1 = _mm256_fmadd_ps(x1, q, a1); c1 = _mm256_fmadd_ps(x1, r, c1);
        a2 = _mm256_fmadd_ps(x2, q, a2); c2 = _mm256_fmadd_ps(x2, r, c2);
        a3 = _mm256_fmadd_ps(x3, q, a3); c3 = _mm256_fmadd_ps(x3, r, c3);
    }
    _mm256_storeu_ps(tile, a0); _mm256_storeu_ps(tile + 8, c0);
    _mm256_storeu_ps(tile + 16, a1); _mm256_storeu_ps(tile + 24, c1);
    _mm256_storeu_ps(tile + 32, a2); _mm256_storeu_ps(tile + 40, c2);
    _mm256_storeu_ps(tile + 48, a3); _mm256_storeu_ps(tile + 56, c3);
    __m256d rel_ = _mm256_set1_pd(MFKIT_TOPN_REL);
    int m = 0;
    for (int u = 0; u < 4; u++) {
        __m256d b_ = _mm256_set1_pd(base[u]), t_ = _mm256_set1_pd(thresh[u]);
        __m256d pn_ = _mm256_set1_pd(pn[u]);
        double *srow_ = s + u * MFKIT_PANEL;
        const float *tr = tile + u * MFKIT_PANEL;
        int hit_ = 0;
        MFKIT_TEST4_256(_mm256_cvtps_pd(_mm_loadu_ps(tr)), 0)
        MFKIT_TEST4_256(_mm256_cvtps_pd(_mm_loadu_ps(tr + 4)), 4)
        MFKIT_TEST4_256(_mm256_cvtps_pd(_mm_loadu_ps(tr + 8)), 8)
        MFKIT_TEST4_256(_mm256_cvtps_pd(_mm_loadu_ps(tr + 12)), 12)
        if (hit_) m |= 1 << u;
    }
    return m;
}

/* f64 on AVX2: two rows at a time (eight ymm accumulators) */
MFKIT_TARGET_AVX2 static int mf_score4_filter_f64_avx2(const double *p0, const double *p1,
        const double *p2, const double *p3, const double *panel, int k, const double *add,
        const double *qn, const double *base, const double *pn, const double *thresh,
        double *tile, double *s)
{
    const double *pr[4] = {p0, p1, p2, p3};
    for (int h = 0; h < 4; h += 2) {
        __m256d a[8];
        for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_pd();
        const double *x = pr[h], *y = pr[h + 1];
        for (int f = 0; f < k; f++) {
            const double *pf = panel + (long)f * MFKIT_PANEL;
            __m256d bx = _mm256_broadcast_sd(x + f), by = _mm256_broadcast_sd(y + f);
            __m256d q0 = _mm256_loadu_pd(pf), q1 = _mm256_loadu_pd(pf + 4);
            __m256d q2 = _mm256_loadu_pd(pf + 8), q3 = _mm256_loadu_pd(pf + 12);
            a[0] = _mm256_fmadd_pd(bx, q0, a[0]); a[1] = _mm256_fmadd_pd(bx, q1, a[1]);
            a[2] = _mm256_fmadd_pd(bx, q2, a[2]); a[3] = _mm256_fmadd_pd(bx, q3, a[3]);
            a[4] = _mm256_fmadd_pd(by, q0, a[4]); a[5] = _mm256_fmadd_pd(by, q1, a[5]);
            a[6] = _mm256_fmadd_pd(by, q2, a[6]); a[7] = _mm256_fmadd_pd(by, q3, a[7]);
        }
        for (int j = 0; j < 8; j++) _mm256_storeu_pd(tile + h * MFKIT_PANEL + 4 * j, a[j]);
    }
    __m256d rel_ = _mm256_set1_pd(MFKIT_TOPN_REL);
    int m = 0;
    for (int u = 0; u < 4; u++) {
        __m256d b_ = _mm256_set1_pd(base[u]), t_ = _mm256_set1_pd(thresh[u]);
        __m256d pn_ = _mm256_set1_pd(pn[u]);
        double *srow_ = s + u * MFKIT_PANEL;
        const double *tr = tile + u * MFKIT_PANEL;
        int hit_ = 0;
        MFKIT_TEST4_256(_mm256_loadu_pd(tr), 0)
        MFKIT_TEST4_256(_mm256_loadu_pd(tr + 4), 4)
        MFKIT_TEST4_256(_mm256_loadu_pd(tr + 8), 8)
        MFKIT_TEST4_256(_mm256_loadu_pd(tr + 12), 12)
        if (hit_) m |= 1 << u;
    }
    return m;
}
#define MFKIT_TOPN_FILTER(SUF, isa, ...)                                                    \
    ((isa) >= MFKIT_ISA_AVX512 ? mf_score4_filter_##SUF##_avx512(__VA_ARGS__)               \
                               : mf_score4_filter_##SUF##_avx2(__VA_ARGS__))
#define MFKIT_TOPN_HAVE_FILTER 1
#else
#define MFKIT_TOPN_FILTER(SUF, isa, ...) 0
#define MFKIT_TOPN_HAVE_FILTER 0
#endif

/* The filter of path isa (avx2 or avx512; never called on the baseline) for 8 rows p[0..7]:
 * tile and s hold 8 x 16 entries, bit u of the result is row u's. A half of the group with
 * no row in live (mf_panel_live) is not scored; its bits are 0. */
static inline int mf_score8_filter_f32(int isa, const float *const *p, const float *panel,
        int k, const double *add, const double *qn, const double *base, const double *pn,
        const double *thresh, float *tile, double *s, int live)
{
#if MFKIT_TOPN_HAVE_FILTER
    if (isa >= MFKIT_ISA_AVX512) {
        if ((live & 0xF0) == 0)
            return mf_score4_filter_f32_avx512(p[0], p[1], p[2], p[3], panel, k, add, qn,
                                               base, pn, thresh, tile, s);
        if ((live & 0x0F) == 0)
            return mf_score4_filter_f32_avx512(p[4], p[5], p[6], p[7], panel, k, add, qn,
                                               base + 4, pn + 4, thresh + 4, tile + 64,
                                               s + 64) << 4;
        return mf_score8_filter_f32_avx512(p, panel, k, add, qn, base, pn, thresh, tile, s);
    }
    int m = 0;
    if (live & 0x0F)
        m = mf_score4_filter_f32_avx2(p[0], p[1], p[2], p[3], panel, k, add, qn, base, pn,
                                      thresh, tile, s);
    if (live & 0xF0)
        m |= mf_score4_filter_f32_avx2(p[4], p[5], p[6], p[7], panel, k, add, qn, base + 4,
                                       pn + 4, thresh + 4, tile + 64, s + 64) << 4;
    return m;
#else
    (void)isa; (void)p; (void)panel; (void)k; (void)add; (void)qn; (void)base; (void)pn;
    (void)thresh; (void)tile; (void)s; (void)live;
    return 0;
#endif
}
static inline int mf_score8_filter_f64(int isa, const double *const *p, const double *panel,
        int k, const double *add, const double *qn, const double *base, const double *pn,
        const double *thresh, double *tile, double *s, int live)
{
#if MFKIT_TOPN_HAVE_FILTER
    int m = 0;
    if (live & 0x0F)
        m = MFKIT_TOPN_FILTER(f64, isa, p[0], p[1], p[2], p[3], panel, k, add, qn, base, pn,
                              thresh, tile, s);
    if (live & 0xF0)
        m |= MFKIT_TOPN_FILTER(f64, isa, p[4], p[5], p[6], p[7], panel, k, add, qn, base + 4,
                               pn + 4, thresh + 4, tile + 64, s + 64) << 4;
    return m;
#else
    (void)isa; (void)p; (void)panel; (void)k; (void)add; (void)qn; (void)base; (void)pn;
    (void)thresh; (void)tile; (void)s; (void)live;
    return 0;
#endif
}

/* ------------------------------------------------------------------ skipping panels
 * An upper bound of the exact scores of a panel for row u, so that a panel none of whose
 * items can enter a row's list costs a few comparisons instead of 16 k multiply-adds.
 * By Cauchy-Schwarz the computed dot product of p and q is at most (1 + c) |p| |q|
 * (c = mf_topn_margin(k) bounds its rounding, as for the filter), and the two double
 * additions of the score add at most 2^-52 (|base| + |add|) + 2^-53 |dot|. The caller
 * stores, per slot w, a[w] = add[w] + 2^-48 |add[w]| and b[w] = |q_w| (1 + 3c + 2^-48)
 * (the extra 2c covers the rounding of the norms, computed in double; 2^-48 the rounding
 * of the score's additions and of this bound's own three operations), and per row
 * base_up = base + 2^-48 |base| and pn = |p_u|; then every slot's exact score is at most
 * base_up[u] + max_w (a[w] + pn[u] b[w]). amax / bmax (the panel's largest a and b) give
 * a cheaper, looser bound tried first. A row is dead on the panel when the bound is below
 * its n-th best score thresh[u] (strictly: a tie may still enter by its item index); a
 * NaN in base_up or thresh makes the comparisons false, so the row stays live (the caller
 * sets base_up = NaN for a row with a non-finite norm, and a = +inf, b = 0 for a slot with
 * a non-finite norm or bias). Returns the mask of live rows among the first ng; with
 * fine = 0, by the cheaper bound alone (for the int8 screen, which costs little more than
 * the per-slot bound). */
MFKIT_TOPN_CLONES static int mf_panel_live(const double *a, const double *b, double amax,
                                           double bmax, const double *base_up,
                                           const double *pn, const double *thresh, int ng,
                                           int fine)
{
    /* vector lanes across the 8 rows of the group (arrays of 8, a short group repeats its
     * last row), so each clone vectorises it without reordering anything */
    double m[8];
    int any = 0, live = 0;
    for (int u = 0; u < 8; u++) {
        m[u] = base_up[u] + (amax + pn[u] * bmax);
        any |= ((u < ng) & !(m[u] < thresh[u])) << u;
    }
    if (!any || !fine)
        return any;
    for (int u = 0; u < 8; u++) m[u] = -INFINITY;
    for (int w = 0; w < MFKIT_PANEL; w++)
        for (int u = 0; u < 8; u++) {
            double v = a[w] + pn[u] * b[w];
            m[u] = v > m[u] ? v : m[u];
        }
    for (int u = 0; u < 8; u++)
        live |= ((u < ng) & !(base_up[u] + m[u] < thresh[u])) << u;
    return live;
}

/* Whether no row of the group can gain from any panel whose largest a and b are amax and
 * bmax (for the panels still to come: the suffix maxima), by the same bound. */
static inline int mf_rows_done(double amax, double bmax, const double *base_up,
                               const double *pn, const double *thresh, int ng)
{
    for (int u = 0; u < ng; u++)
        if (!(base_up[u] + (amax + pn[u] * bmax) < thresh[u]))
            return 0;
    return 1;
}

static inline int mf_topn_have_filter(void) { return MFKIT_TOPN_HAVE_FILTER; }

#endif /* MFKIT_RECOMMEND_H */
