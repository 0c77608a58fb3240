/* Cholesky solves of eight float32 ALS row systems at once, one system per vector lane.
 *
 * mf_als_cholesky_f32 (in _als.h) factors one row's normal matrix with its vectors running
 * along the columns of a row of U. Near the diagonal those rows are short, so most of its
 * time goes to strips of one or two vectors whose multiply-add chains wait on each other.
 * Here the explicit ALS half-step hands over up to eight systems of the same size K; their
 * upper triangles are interleaved lane by lane (W[e] holds entry e of all eight systems),
 * and the same elimination runs on whole eight-lane vectors with every column independent.
 *
 * Each lane performs, operand for operand and in the same order, the operations
 * mf_als_cholesky_f32 performs on its system: U[j][c] = (A[j][c] - U[0][j] U[0][c] - ...
 * - U[j-1][j] U[j-1][c]) * (1 / U[j][j]), each step fused on the avx2 and avx512 paths and
 * rounded twice on the baseline; the pivot's square root and reciprocal as there; the
 * forward substitution unfused, and the back substitution as the eight-partial dot product
 * of _simd.h. So a row's solution has the bits the one-system kernel gives it on every path,
 * whichever rows share its batch (lanes never mix). A lane whose pivot is not positive gets
 * status j + 1 as mf_als_cholesky_f32 returns, and a pivot of 1 so the others go on.
 *
 * Layout of W (vectors of eight floats): row j of U holds columns j .. K + 6 (the columns
 * past K are zero padding, so every row is covered by whole blocks of eight columns and no
 * block has fewer than eight independent chains); row j starts at vector
 * j (K + 7) - j (j - 1) / 2.
 */
#ifndef MFKIT_ALS_BATCH_H
#define MFKIT_ALS_BATCH_H

#include "_als.h"

/* systems per batch (the float lanes of a 256-bit vector) */
#define MFKIT_ALS_BATCH 8

/* Whether batching pays for systems of size K on path isa: W takes 32 K (K + 7) bytes, and
 * once that is well past a core's L2 the rows above stream from L3. Measured with hot
 * caches on a Zen 3 core (K = 65: 8.8 -> 4.0 us per system on avx2, 9.0 -> 6.4 on the
 * baseline; K = 97: avx2 17.5 -> 12.9 us but the baseline 16.6 -> 18.9 us; K = 129: avx2
 * 37 -> 32 us). Either kernel gives the same bits, so this only picks the faster one. */
static inline int mf_als_batch_pays(int isa, int K)
{
    return K <= (isa == MFKIT_ISA_BASELINE ? 88 : 128);
}

/* vectors of W for systems of size K, and the start of row j */
static inline size_t mf_als_batch_w(int K) { return (size_t)K * (size_t)(K + 8); }
#define MF_BATCH_ROW(j, K) ((size_t)(j) * ((K) + 7) - (size_t)(j) * ((j) - 1) / 2)

#if MFKIT_HAVE_VEC
/* row j of U over blocks of eight columns from c = j: the rows above stream past while the
 * block's eight sums stay in registers */
#define MF_BATCH_ROW_BLOCKS(P)                                                               \
    for (int c = j; c < K; c += 8) {                                                         \
        mf_v8sf acc[8];                                                                      \
        mf_v8sf *Wc = Wj + (c - j);                                                          \
        _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) acc[q] = Wc[q];                  \
        const mf_v8sf *Wi = W;                                                               \
        for (int i = 0; i < j; i++) {                                                        \
            mf_v8sf u = Wi[j - i];                                                           \
            const mf_v8sf *Wic = Wi + (c - i);                                               \
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)                              \
                acc[q] = MF_FNMA(mf_v8sf, P)(u, Wic[q], acc[q]);                             \
            Wi += K + 7 - i;                                                                 \
        }                                                                                    \
        _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) Wc[q] = acc[q];                  \
    }

/* Interleaving a full batch eight columns at a time by an 8 x 8 transpose in registers
 * (the x86 fast paths; the baseline gathers lane by lane): moves only, no arithmetic. */
#define MF_BATCH_GATHER_base
#if MFKIT_ALS_FAST_PATHS
#define MF_BATCH_GATHER_X86                                                                  \
    if (nsys == 8)                                                                           \
        for (; c0 + 8 <= K; c0 += 8) {                                                       \
            __m256 r[8], t[8], u[8];                                                         \
            for (int l = 0; l < 8; l++) r[l] = _mm256_loadu_ps(As[l] + (size_t)j * lda + c0); \
            for (int q = 0; q < 8; q += 2) {                                                 \
                t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);                                   \
                t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);                               \
            }                                                                                \
            for (int q = 0; q < 8; q += 4) {                                                 \
                u[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);                              \
                u[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xEE);                          \
                u[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);                      \
                u[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xEE);                      \
            }                                                                                \
            for (int q = 0; q < 4; q++) {                                                    \
                Wj[c0 - j + q] = (mf_v8sf)_mm256_permute2f128_ps(u[q], u[q + 4], 0x20);      \
                Wj[c0 - j + q + 4] = (mf_v8sf)_mm256_permute2f128_ps(u[q], u[q + 4], 0x31);  \
            }                                                                                \
        }
#define MF_BATCH_GATHER_avx2 MF_BATCH_GATHER_X86
#define MF_BATCH_GATHER_avx512 MF_BATCH_GATHER_X86
#endif

/* Solves A_s x = b_s for s < nsys (nsys <= 8): A_s is K x K symmetric positive definite
 * (upper triangle read, row stride lda; the plain build without vector extensions factors
 * it in place), b_s is overwritten by x_s (left alone when
 * status[s] != 0). W (mf_als_batch_w(K) vectors) and Bv (K vectors) are scratch, 32-byte
 * aligned. status[s] = 0, or j + 1 when the j-th pivot of system s is not positive. */
#define MFKIT_ALS_BATCH_PATH(P, ATTR)                                                        \
ATTR static void mf_als_cholesky_batch_f32_##P(float *const *As, float *const *bs, int nsys,  \
                                              int K, int lda, mf_v8sf *restrict W,          \
                                              mf_v8sf *restrict Bv, int *status)            \
{                                                                                            \
    for (int l = 0; l < MFKIT_ALS_BATCH; l++) status[l] = 0;                                 \
    /* interleave the systems (lanes past nsys solve the identity) */                        \
    for (int j = 0; j < K; j++) {                                                            \
        mf_v8sf *Wj = W + MF_BATCH_ROW(j, K);                                                \
        float v[8];                                                                          \
        int c0 = j;                                                                          \
        MF_BATCH_GATHER_##P                                                                  \
        for (int c = c0; c < K; c++) {                                                       \
            for (int l = 0; l < 8; l++)                                                      \
                v[l] = l < nsys ? As[l][(size_t)j * lda + c] : (float)(c == j);              \
            memcpy(&Wj[c - j], v, sizeof(v));                                                \
        }                                                                                    \
        for (int c = K; c < K + 7; c++) Wj[c - j] = (mf_v8sf){0};                            \
        for (int l = 0; l < 8; l++) v[l] = l < nsys ? bs[l][j] : 0.0f;                       \
        memcpy(&Bv[j], v, sizeof(v));                                                        \
    }                                                                                        \
    for (int j = 0; j < K; j++) {                                                            \
        mf_v8sf *Wj = W + MF_BATCH_ROW(j, K);                                                \
        MF_BATCH_ROW_BLOCKS(P)                                                               \
        float d[8], inv[8];                                                                  \
        memcpy(d, &Wj[0], sizeof(d));                                                        \
        for (int l = 0; l < 8; l++) {                                                        \
            if (!(d[l] > 0) || !(d[l] < INFINITY)) {                                         \
                if (status[l] == 0) status[l] = j + 1;                                       \
                d[l] = 1;                                                                    \
            }                                                                                \
        }                                                                                    \
        for (int l = 0; l < 8; l++) d[l] = sqrtf(d[l]);                                      \
        for (int l = 0; l < 8; l++) inv[l] = 1.0f / d[l];                                    \
        mf_v8sf iv;                                                                          \
        memcpy(&Wj[0], d, sizeof(d));                                                        \
        memcpy(&iv, inv, sizeof(inv));                                                       \
        for (int c = 1; c < K - j; c++) Wj[c] = Wj[c] * iv;                                  \
    }                                                                                        \
    /* U^T z = b, then U x = z (the one-system kernel's operations, lane by lane) */        \
    for (int j = 0; j < K; j++) {                                                            \
        const mf_v8sf *Wj = W + MF_BATCH_ROW(j, K);                                          \
        mf_v8sf z = Bv[j] / Wj[0];                                                           \
        Bv[j] = z;                                                                           \
        for (int c = j + 1; c < K; c++) Bv[c] = Bv[c] - Wj[c - j] * z;                       \
    }                                                                                        \
    for (int j = K - 1; j >= 0; j--) {                                                       \
        const mf_v8sf *Uj = W + MF_BATCH_ROW(j, K) + 1, *bj = Bv + j + 1;                    \
        mf_v8sf a[8];                                                                        \
        for (int q = 0; q < 8; q++) a[q] = (mf_v8sf){0};                                     \
        int f = 0, m = K - j - 1;                                                            \
        for (; f + 8 <= m; f += 8)                                                           \
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)                              \
                a[q] = a[q] + Uj[f + q] * bj[f + q];                                         \
        _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)                                  \
            if (f + q < m) a[q] = a[q] + Uj[f + q] * bj[f + q];                              \
        mf_v8sf s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));       \
        Bv[j] = (Bv[j] - s) / (W + MF_BATCH_ROW(j, K))[0];                                   \
    }                                                                                        \
    for (int l = 0; l < nsys; l++)                                                           \
        if (status[l] == 0)                                                                  \
            for (int j = 0; j < K; j++) bs[l][j] = ((const float *)&Bv[j])[l];               \
}

MFKIT_ALS_BATCH_PATH(base, MFKIT_CLONES)
#if MFKIT_ALS_FAST_PATHS
MFKIT_ALS_BATCH_PATH(avx2, MFKIT_TARGET_AVX2)
MFKIT_ALS_BATCH_PATH(avx512, MFKIT_TARGET_AVX512)
#endif

static inline void mf_als_cholesky_batch_f32(int isa, float *const *As, float *const *bs,
                                             int nsys, int K, int lda, void *W, void *Bv,
                                             int *status)
{
    MFKIT_ALS_PICK(isa, mf_als_cholesky_batch_f32, As, bs, nsys, K, lda, (mf_v8sf *)W,
                   (mf_v8sf *)Bv, status);
}

#else /* !MFKIT_HAVE_VEC: one system after another (the same kernel, so the same bits) */
static inline void mf_als_cholesky_batch_f32(int isa, float *const *As, float *const *bs,
                                             int nsys, int K, int lda, void *W, void *Bv,
                                             int *status)
{
    (void)W; (void)Bv;
    for (int l = 0; l < MFKIT_ALS_BATCH; l++)
        status[l] = l < nsys ? mf_als_cholesky_f32(isa, As[l], K, lda, bs[l]) : 0;
}
#endif

#endif /* MFKIT_ALS_BATCH_H */
