/* Scoring tiles for top-N recommendation.
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

#include "_platform.h"

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
 * as the plain loop, so the same bits; _CMP_GT_OQ is C's '>' (false on NaN). */
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
        if (_mm512_cmp_pd_mask(s0, t, _CMP_GT_OQ) | _mm512_cmp_pd_mask(s1, t, _CMP_GT_OQ))  \
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
 * (the order of predict()). Returns a 4-bit mask of the rows with some s > thresh[u]
 * (rare once a row's list is full, so the caller looks at single slots only then). */
#define MFKIT_DEFINE_ANY(T, SUF)                                                            \
MFKIT_INLINE static int mf_panel_any_##SUF(const T *restrict dot,                          \
        const double *restrict add, double base, double thresh, double *restrict s)        \
{                                                                                          \
    int any = 0;                                                                           \
    for (int w = 0; w < MFKIT_PANEL; w++) {                                                \
        double v = (base + add[w]) + (double)dot[w];                                       \
        s[w] = v;                                                                          \
        any |= v > thresh;                                                                 \
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

#endif /* MFKIT_RECOMMEND_H */
