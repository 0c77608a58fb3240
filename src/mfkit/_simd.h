/* Small dense vector kernels shared by the mfkit Cython modules.
 *
 * Sums use eight explicit partial accumulators combined in a fixed order, so the
 * result does not depend on the vector width the compiler picks: the SSE2 and the
 * AVX2 clone (chosen at run time through gcc's target_clones) give the same bits.
 * The build uses -std=c11, which keeps floating-point contraction off, so no FMA
 * changes the rounding either.
 */
#ifndef MFKIT_SIMD_H
#define MFKIT_SIMD_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(MFKIT_NO_DISPATCH) && !defined(__OPTIMIZE_SIZE__)
#define MFKIT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MFKIT_CLONES
#endif

#define MFKIT_DEFINE_KERNELS(T, SUF)                                                  \
MFKIT_CLONES static T mf_dot_##SUF(const T *a, const T *b, int k)                       \
{                                                                                       \
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                \
    int f = 0;                                                                          \
    for (; f + 8 <= k; f += 8) {                                                        \
        for (int j = 0; j < 8; j++) acc[j] += a[f + j] * b[f + j];                      \
    }                                                                                   \
    for (int j = 0; f < k; f++, j++) acc[j] += a[f] * b[f];                             \
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])); \
}                                                                                       \
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

MFKIT_DEFINE_KERNELS(float, f32)
MFKIT_DEFINE_KERNELS(double, f64)

#endif /* MFKIT_SIMD_H */
