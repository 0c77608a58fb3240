/* Small dense vector kernels shared by the mfkit Cython modules.
 *
 * Sums use eight explicit partial accumulators combined in a fixed order, so the
 * result does not depend on the vector width the compiler picks: the SSE2 and the
 * AVX2 clone (chosen at run time through gcc's target_clones) give the same bits.
 * The build passes -ffp-contract=off, so no FMA changes the rounding either.
 */
#ifndef MFKIT_SIMD_H
#define MFKIT_SIMD_H

#include "_platform.h"
#include <math.h>
#include <stddef.h>

#define MFKIT_CLONES MFKIT_TARGET_CLONES("arch=x86-64-v3", "default")

/* The body of every mfkit dot product: eight partial sums in a fixed order. Kept in one
 * place so that every kernel that scores a pair (SGD, ALS, prediction) rounds alike. */
#define MFKIT_DOT8_BODY(T, a, b, k)                                                     \
{                                                                                       \
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                \
    int f = 0;                                                                          \
    for (; f + 8 <= k; f += 8) {                                                        \
        for (int j = 0; j < 8; j++) acc[j] += a[f + j] * b[f + j];                      \
    }                                                                                   \
    for (int j = 0; f < k; f++, j++) acc[j] += a[f] * b[f];                             \
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])); \
}

#define MFKIT_DEFINE_KERNELS(T, SUF)                                                  \
MFKIT_CLONES static T mf_dot_##SUF(const T *a, const T *b, int k)                       \
MFKIT_DOT8_BODY(T, a, b, k)                                                             \
                                                                                        \
/* One SGD step on a user row p and an item row q given the residual e:              \
 *   p <- p + lr (e q - reg p),  q <- q + lr (e p - reg q)   (old p, q on the right). */ \
MFKIT_CLONES static void mf_sgd_pair_##SUF(T *restrict p, T *restrict q, int k,        \
                                           T e, T lr, T reg)                             \
{                                                                                       \
    for (int f = 0; f < k; f++) {                                                       \
        T pf = p[f], qf = q[f];                                                         \
        p[f] = pf + lr * (e * qf - reg * pf);                                           \
        q[f] = qf + lr * (e * pf - reg * qf);                                           \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* The same step with an extra pull of strength prior toward prior rows p0, q0.      */ \
MFKIT_CLONES static void mf_sgd_pair_prior_##SUF(T *restrict p, T *restrict q,         \
        const T *restrict p0, const T *restrict q0, int k, T e, T lr, T reg, T prior)   \
{                                                                                       \
    for (int f = 0; f < k; f++) {                                                       \
        T pf = p[f], qf = q[f];                                                         \
        p[f] = pf + lr * (e * qf - reg * pf - prior * (pf - p0[f]));                    \
        q[f] = qf + lr * (e * pf - reg * qf - prior * (qf - q0[f]));                    \
    }                                                                                   \
}

/* Row-adaptive (AdaGrad) step: with ascent directions
 *   gp = e q - reg p - prior (p - p0),  gq = e p - reg q - prior (q - q0)
 * (old p, q on the right; the prior terms only when p0 is not NULL) it sets
 * p += lp gp, q += lq gq and returns sum(gp^2), sum(gq^2) in *sp, *sq, each summed in the
 * same eight partial accumulators (lane j takes coordinates f = j mod 8) as mf_dot. The gcc
 * build writes the eight lanes as one vector-extension value, which the compiler lowers to
 * whatever registers the clone has; lane-wise IEEE arithmetic gives the same bits as the
 * portable scalar loop below. */
#if defined(__GNUC__)
typedef float mf_v8_f32 __attribute__((vector_size(32), aligned(4), may_alias));
typedef double mf_v8_f64 __attribute__((vector_size(64), aligned(8), may_alias));
#define MFKIT_ADA_MAIN(T, V)                                                            \
    V AP = {0, 0, 0, 0, 0, 0, 0, 0}, AQ = {0, 0, 0, 0, 0, 0, 0, 0};                     \
    if (p0 != 0) {                                                                      \
        for (; f + 8 <= k; f += 8) {                                                    \
            V pf = *(const V *)(p + f), qf = *(const V *)(q + f);                       \
            V gp = e * qf - reg * pf - prior * (pf - *(const V *)(p0 + f));              \
            V gq = e * pf - reg * qf - prior * (qf - *(const V *)(q0 + f));              \
            *(V *)(p + f) = pf + lp * gp;                                               \
            *(V *)(q + f) = qf + lq * gq;                                               \
            AP += gp * gp;                                                              \
            AQ += gq * gq;                                                              \
        }                                                                               \
    } else {                                                                            \
        for (; f + 8 <= k; f += 8) {                                                    \
            V pf = *(const V *)(p + f), qf = *(const V *)(q + f);                       \
            V gp = e * qf - reg * pf;                                                   \
            V gq = e * pf - reg * qf;                                                   \
            *(V *)(p + f) = pf + lp * gp;                                               \
            *(V *)(q + f) = qf + lq * gq;                                               \
            AP += gp * gp;                                                              \
            AQ += gq * gq;                                                              \
        }                                                                               \
    }                                                                                   \
    for (int j = 0; j < 8; j++) { ap[j] = AP[j]; aq[j] = AQ[j]; }
#else
#define MFKIT_ADA_MAIN(T, V)                                                            \
    for (; f + 8 <= k; f += 8) {                                                        \
        for (int j = 0; j < 8; j++) {                                                   \
            T pf = p[f + j], qf = q[f + j];                                             \
            T gp = e * qf - reg * pf, gq = e * pf - reg * qf;                           \
            if (p0 != 0) {                                                              \
                gp = gp - prior * (pf - p0[f + j]);                                     \
                gq = gq - prior * (qf - q0[f + j]);                                     \
            }                                                                           \
            p[f + j] = pf + lp * gp;                                                    \
            q[f + j] = qf + lq * gq;                                                    \
            ap[j] += gp * gp;                                                           \
            aq[j] += gq * gq;                                                           \
        }                                                                               \
    }
#endif

#define MFKIT_DEFINE_ADA(T, SUF)                                                        \
MFKIT_CLONES static void mf_sgd_pair_ada_##SUF(T *restrict p, T *restrict q,           \
        const T *restrict p0, const T *restrict q0, int k, T e, T lp, T lq, T reg,      \
        T prior, T *sp, T *sq)                                                          \
{                                                                                       \
    T ap[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                 \
    T aq[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                 \
    int f = 0;                                                                          \
    MFKIT_ADA_MAIN(T, mf_v8_##SUF)                                                      \
    for (int j = 0; f < k; f++, j++) {                                                  \
        T pf = p[f], qf = q[f];                                                         \
        T gp = e * qf - reg * pf, gq = e * pf - reg * qf;                               \
        if (p0 != 0) {                                                                  \
            gp = gp - prior * (pf - p0[f]);                                             \
            gq = gq - prior * (qf - q0[f]);                                             \
        }                                                                               \
        p[f] = pf + lp * gp;                                                            \
        q[f] = qf + lq * gq;                                                            \
        ap[j] += gp * gp;                                                               \
        aq[j] += gq * gq;                                                               \
    }                                                                                   \
    *sp = ((ap[0] + ap[4]) + (ap[1] + ap[5])) + ((ap[2] + ap[6]) + (ap[3] + ap[7]));    \
    *sq = ((aq[0] + aq[4]) + (aq[1] + aq[5])) + ((aq[2] + aq[6]) + (aq[3] + aq[7]));    \
}

/* The four AdaGrad step sizes of one rating, out[j] = lr / sqrt(g[j]), computed together in
 * one SSE register (sqrt and division are correctly rounded either way, so the packed and
 * the scalar forms give the same bits; packing takes four long-latency operations off the
 * per-rating critical path). */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline void mf_ada_steps_f32(float lr, float g0, float g1, float g2, float g3,
                                    float *out)
{
    __m128 g = _mm_set_ps(g3, g2, g1, g0);
    _mm_storeu_ps(out, _mm_div_ps(_mm_set1_ps(lr), _mm_sqrt_ps(g)));
}
static inline void mf_ada_steps_f64(double lr, double g0, double g1, double g2, double g3,
                                    double *out)
{
    __m128d l = _mm_set1_pd(lr);
    _mm_storeu_pd(out, _mm_div_pd(l, _mm_sqrt_pd(_mm_set_pd(g1, g0))));
    _mm_storeu_pd(out + 2, _mm_div_pd(l, _mm_sqrt_pd(_mm_set_pd(g3, g2))));
}
#else
#include <math.h>
static inline void mf_ada_steps_f32(float lr, float g0, float g1, float g2, float g3,
                                    float *out)
{
    out[0] = lr / sqrtf(g0); out[1] = lr / sqrtf(g1);
    out[2] = lr / sqrtf(g2); out[3] = lr / sqrtf(g3);
}
static inline void mf_ada_steps_f64(double lr, double g0, double g1, double g2, double g3,
                                    double *out)
{
    out[0] = lr / sqrt(g0); out[1] = lr / sqrt(g1);
    out[2] = lr / sqrt(g2); out[3] = lr / sqrt(g3);
}
#endif

/* Ask for the cache lines of a factor row that will be needed a few ratings from now. */
static inline void mf_prefetch_row(const void *p, int nbytes)
{
#if defined(__GNUC__)
    const char *c = (const char *)p;
    for (int off = 0; off < nbytes; off += 64) __builtin_prefetch(c + off, 1, 3);
#else
    (void)p; (void)nbytes;
#endif
}

/* The same for rows that will only be read (e.g. the fixed side of an ALS half-step, which
 * all threads share). */
static inline void mf_prefetch_row_read(const void *p, int nbytes)
{
#if defined(__GNUC__)
    const char *c = (const char *)p;
    for (int off = 0; off < nbytes; off += 64) __builtin_prefetch(c + off, 0, 3);
#else
    (void)p; (void)nbytes;
#endif
}

MFKIT_DEFINE_KERNELS(float, f32)
MFKIT_DEFINE_KERNELS(double, f64)
MFKIT_DEFINE_ADA(float, f32)
MFKIT_DEFINE_ADA(double, f64)

/* The largest |a[j]| over n entries, and whether one of them is NaN or inf (*bad = 1),
 * in one pass over eight independent lanes the compiler vectorises: x - x is 0 for a
 * finite x and NaN for NaN and inf (and NaN stays), and a NaN never wins the comparison.
 * The maximum does not depend on the order of the comparisons. */
#define MFKIT_DEFINE_SCAN(T, SUF, ABS)                                                  \
    static inline void mf_scan_abs_max_##SUF(const T *a, ptrdiff_t n, double *top,       \
                                             unsigned char *bad)                        \
    {                                                                                   \
        T m[8] = {0}, d[8] = {0};                                                       \
        ptrdiff_t j = 0;                                                                \
        for (; j + 8 <= n; j += 8) {                                                    \
            for (int l = 0; l < 8; l++) {                                               \
                T x = ABS(a[j + l]);                                                    \
                d[l] += x - x;                                                          \
                m[l] = x > m[l] ? x : m[l];                                             \
            }                                                                           \
        }                                                                               \
        for (; j < n; j++) {                                                            \
            T x = ABS(a[j]);                                                            \
            d[0] += x - x;                                                              \
            m[0] = x > m[0] ? x : m[0];                                                 \
        }                                                                               \
        for (int l = 1; l < 8; l++) {                                                   \
            d[0] += d[l];                                                               \
            m[0] = m[l] > m[0] ? m[l] : m[0];                                           \
        }                                                                               \
        *top = (double)m[0];                                                            \
        *bad = !(d[0] == 0);                                                            \
    }
MFKIT_DEFINE_SCAN(float, f32, fabsf)
MFKIT_DEFINE_SCAN(double, f64, fabs)

#endif /* MFKIT_SIMD_H */
