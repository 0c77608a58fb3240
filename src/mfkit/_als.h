/* Dense kernels of the ALS row solve (one user's or one item's least-squares problem).
 *
 * A row with n ratings has its opposite factor rows gathered into a contiguous block Y
 * (n x ld, ld a multiple of 16, padding columns zero). The kernels below work on that block:
 *
 *   mf_als_gram      A += Y^T Y on the upper block triangle (register-tiled, 4 x 16 tiles);
 *   mf_als_rhs       Y^T t, the column sums of Y and sum t in one pass;
 *   mf_als_residual  e = t - Y x - b, returning Y^T e, sum e and sum e^2;
 *   mf_als_matvec    s = Y d + db, returning Y^T s and sum s (the CG product);
 *   mf_als_cholesky  in-place Cholesky A = U^T U and the two triangular solves.
 *
 * Every output element is a sum taken in a fixed order fixed by the source: loops are
 * vectorised across columns only (independent sums), dot products use eight partial
 * accumulators combined in a fixed order as in _simd.h, and the build keeps floating-point
 * contraction off (-std=c11), so the SSE2 and AVX2 clones give the same bits and a row's
 * result never depends on which thread solves it.
 */
#ifndef MFKIT_ALS_H
#define MFKIT_ALS_H

#include <math.h>
#include <string.h>
#include <stdint.h>
#include <stdlib.h>

#include "_simd.h"

#if defined(__GNUC__)
#define MFKIT_IVDEP _Pragma("GCC ivdep")
#define MFKIT_HAVE_VEC 1
typedef float mf_v8sf __attribute__((vector_size(32)));
typedef double mf_v4df __attribute__((vector_size(32)));
#else
#define MFKIT_IVDEP
#define MFKIT_HAVE_VEC 0
#endif

/* Leading dimension of a gathered block: k rounded up to 16 (one 64-byte line of floats). */
static inline int mf_als_ld(int k) { return (k + 15) & ~15; }

/* Scratch aligned to a cache line; size rounded up as aligned_alloc requires. */
static inline void *mf_als_alloc(size_t nbytes)
{
    size_t n = (nbytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p != NULL) memset(p, 0, n ? n : 64);
    return p;
}

static inline void mf_als_free(void *p) { free(p); }

#define MFKIT_ALS_DOT(T, SUF)                                                              \
static inline T mf_als_dot_##SUF(const T *a, const T *b, int k)                              \
{                                                                                            \
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                     \
    int f = 0;                                                                               \
    for (; f + 8 <= k; f += 8) {                                                             \
        for (int j = 0; j < 8; j++) acc[j] += a[f + j] * b[f + j];                           \
    }                                                                                        \
    for (int j = 0; f < k; f++, j++) acc[j] += a[f] * b[f];                                  \
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])); \
}

MFKIT_ALS_DOT(float, f32)
MFKIT_ALS_DOT(double, f64)

/* ---------------------------------------------------------------- Gram tiles
 * A[r][c] += sum_i Y[i][r] * Y[i][c] for every 4 x (2 VN) tile that touches the upper
 * triangle (c >= r). Y is n x ld, A has row stride lda >= ld. Each A element is one
 * running sum over i in order, so calling this on consecutive chunks of rows gives the
 * same bits as one call on all of them. */
#if MFKIT_HAVE_VEC
#define MFKIT_ALS_GRAM(T, SUF, VT, VN)                                                      \
MFKIT_CLONES static void mf_als_gram_##SUF(const T *restrict Y, int n, int ld,               \
                                           T *restrict A, int lda)                           \
{                                                                                            \
    for (int r0 = 0; r0 < ld; r0 += 4) {                                                     \
        for (int c0 = (r0 / (2 * VN)) * (2 * VN); c0 < ld; c0 += 2 * VN) {                   \
            VT a00, a01, a10, a11, a20, a21, a30, a31;                                       \
            T *A0 = A + (size_t)r0 * lda + c0;                                               \
            T *A1 = A0 + lda, *A2 = A1 + lda, *A3 = A2 + lda;                                \
            memcpy(&a00, A0, sizeof(VT)); memcpy(&a01, A0 + VN, sizeof(VT));                 \
            memcpy(&a10, A1, sizeof(VT)); memcpy(&a11, A1 + VN, sizeof(VT));                 \
            memcpy(&a20, A2, sizeof(VT)); memcpy(&a21, A2 + VN, sizeof(VT));                 \
            memcpy(&a30, A3, sizeof(VT)); memcpy(&a31, A3 + VN, sizeof(VT));                 \
            const T *y = Y;                                                                  \
            for (int i = 0; i < n; i++, y += ld) {                                           \
                VT b0, b1;                                                                   \
                memcpy(&b0, y + c0, sizeof(VT)); memcpy(&b1, y + c0 + VN, sizeof(VT));       \
                T s0 = y[r0], s1 = y[r0 + 1], s2 = y[r0 + 2], s3 = y[r0 + 3];                \
                a00 += s0 * b0; a01 += s0 * b1;                                              \
                a10 += s1 * b0; a11 += s1 * b1;                                              \
                a20 += s2 * b0; a21 += s2 * b1;                                              \
                a30 += s3 * b0; a31 += s3 * b1;                                              \
            }                                                                                \
            memcpy(A0, &a00, sizeof(VT)); memcpy(A0 + VN, &a01, sizeof(VT));                 \
            memcpy(A1, &a10, sizeof(VT)); memcpy(A1 + VN, &a11, sizeof(VT));                 \
            memcpy(A2, &a20, sizeof(VT)); memcpy(A2 + VN, &a21, sizeof(VT));                 \
            memcpy(A3, &a30, sizeof(VT)); memcpy(A3 + VN, &a31, sizeof(VT));                 \
        }                                                                                    \
    }                                                                                        \
}
MFKIT_ALS_GRAM(float, f32, mf_v8sf, 8)
MFKIT_ALS_GRAM(double, f64, mf_v4df, 4)
#else
#define MFKIT_ALS_GRAM(T, SUF, VN)                                                          \
static void mf_als_gram_##SUF(const T *Y, int n, int ld, T *A, int lda)                      \
{                                                                                            \
    for (int r0 = 0; r0 < ld; r0 += 4) {                                                     \
        for (int c0 = (r0 / (2 * VN)) * (2 * VN); c0 < ld; c0 += 2 * VN) {                   \
            for (int i = 0; i < n; i++) {                                                    \
                const T *y = Y + (size_t)i * ld;                                             \
                for (int r = r0; r < r0 + 4; r++)                                            \
                    for (int c = c0; c < c0 + 2 * VN; c++)                                   \
                        A[(size_t)r * lda + c] += y[r] * y[c];                               \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}
MFKIT_ALS_GRAM(float, f32, 8)
MFKIT_ALS_GRAM(double, f64, 4)
#endif

#define MFKIT_ALS_KERNELS(T, SUF)                                                           \
/* rhs[c] = sum_i t[i] Y[i][c]; colsum[c] = sum_i Y[i][c] (when colsum != NULL);             \
 * returns sum_i t[i]. */                                                                    \
MFKIT_CLONES static T mf_als_rhs_##SUF(const T *restrict Y, int n, int ld,                   \
                                       const T *restrict t, T *restrict rhs,                 \
                                       T *restrict colsum)                                   \
{                                                                                            \
    T st = 0;                                                                                \
    for (int c = 0; c < ld; c++) rhs[c] = 0;                                                 \
    if (colsum != NULL) {                                                                    \
        for (int c = 0; c < ld; c++) colsum[c] = 0;                                          \
        for (int i = 0; i < n; i++) {                                                        \
            const T *y = Y + (size_t)i * ld;                                                 \
            T ti = t[i];                                                                     \
            st += ti;                                                                        \
            for (int c = 0; c < ld; c++) { rhs[c] += ti * y[c]; colsum[c] += y[c]; }         \
        }                                                                                    \
    } else {                                                                                 \
        for (int i = 0; i < n; i++) {                                                        \
            const T *y = Y + (size_t)i * ld;                                                 \
            T ti = t[i];                                                                     \
            st += ti;                                                                        \
            for (int c = 0; c < ld; c++) rhs[c] += ti * y[c];                                \
        }                                                                                    \
    }                                                                                        \
    return st;                                                                               \
}                                                                                            \
                                                                                             \
/* e_i = t_i - (Y[i] . x + xb). With g != NULL: g = Y^T e and *gb = sum e. Returns the       \
 * sum of e_i^2 in double. */                                                                \
MFKIT_CLONES static double mf_als_residual_##SUF(const T *restrict Y, int n, int ld, int k,   \
                                                 const T *restrict t, const T *restrict x,   \
                                                 T xb, T *restrict g, T *restrict gb)        \
{                                                                                            \
    double sse = 0.0;                                                                        \
    T sb = 0;                                                                                \
    if (g != NULL) for (int c = 0; c < ld; c++) g[c] = 0;                                    \
    for (int i = 0; i < n; i++) {                                                            \
        const T *y = Y + (size_t)i * ld;                                                     \
        T e = t[i] - (mf_als_dot_##SUF(y, x, k) + xb);                                       \
        sse += (double)e * (double)e;                                                        \
        if (g != NULL) {                                                                     \
            sb += e;                                                                         \
            for (int c = 0; c < ld; c++) g[c] += e * y[c];                                   \
        }                                                                                    \
    }                                                                                        \
    if (gb != NULL) *gb = sb;                                                                \
    return sse;                                                                              \
}                                                                                            \
                                                                                             \
/* s_i = Y[i] . d + db; out = Y^T s; *outb = sum s. */                                       \
MFKIT_CLONES static void mf_als_matvec_##SUF(const T *restrict Y, int n, int ld, int k,      \
                                             const T *restrict d, T db, T *restrict out,     \
                                             T *restrict outb)                               \
{                                                                                            \
    T sb = 0;                                                                                \
    for (int c = 0; c < ld; c++) out[c] = 0;                                                 \
    for (int i = 0; i < n; i++) {                                                            \
        const T *y = Y + (size_t)i * ld;                                                     \
        T s = mf_als_dot_##SUF(y, d, k) + db;                                                \
        sb += s;                                                                             \
        for (int c = 0; c < ld; c++) out[c] += s * y[c];                                     \
    }                                                                                        \
    *outb = sb;                                                                              \
}                                                                                            \
                                                                                             \
/* Solve A x = b for symmetric positive definite A (K x K, upper triangle used, row stride    \
 * lda; overwritten by its Cholesky factor U, A = U^T U). b is overwritten by x. Returns 0,   \
 * or j + 1 when the j-th pivot is not positive (A not positive definite in this precision). */ \
MFKIT_CLONES static int mf_als_cholesky_##SUF(T *A, int K, int lda, T *restrict b)           \
{                                                                                            \
    for (int j = 0; j < K; j++) {                                                            \
        T *Aj = A + (size_t)j * lda;                                                         \
        T d = Aj[j];                                                                         \
        if (!(d > 0) || !(d < INFINITY)) return j + 1;                                       \
        d = sqrt(d);                                                                         \
        Aj[j] = d;                                                                           \
        T inv = (T)1 / d;                                                                    \
        for (int c = j + 1; c < K; c++) Aj[c] *= inv;                                        \
        for (int r = j + 1; r < K; r++) {                                                    \
            T u = Aj[r];                                                                     \
            T *Ar = A + (size_t)r * lda;                                                     \
            MFKIT_IVDEP                                                                      \
            for (int c = r; c < K; c++) Ar[c] -= u * Aj[c];                                  \
        }                                                                                    \
    }                                                                                        \
    /* U^T z = b, row by row of U (each z_j feeds the entries after it) */                  \
    for (int j = 0; j < K; j++) {                                                            \
        const T *Uj = A + (size_t)j * lda;                                                   \
        T z = b[j] / Uj[j];                                                                  \
        b[j] = z;                                                                            \
        for (int c = j + 1; c < K; c++) b[c] -= Uj[c] * z;                                   \
    }                                                                                        \
    /* U x = z */                                                                            \
    for (int j = K - 1; j >= 0; j--) {                                                       \
        const T *Uj = A + (size_t)j * lda;                                                   \
        T s = b[j];                                                                          \
        for (int c = j + 1; c < K; c++) s -= Uj[c] * b[c];                                   \
        b[j] = s / Uj[j];                                                                    \
    }                                                                                        \
    return 0;                                                                                \
}

MFKIT_ALS_KERNELS(float, f32)
MFKIT_ALS_KERNELS(double, f64)

#endif /* MFKIT_ALS_H */
