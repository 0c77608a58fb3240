/* Dense kernels of the ALS row solve (one user's or one item's least-squares problem).
 *
 * A row with n ratings has its opposite factor rows gathered into a contiguous block Y
 * (n x ld, ld a multiple of 16, padding columns zero). The kernels below work on that block:
 *
 *   mf_als_gram      A += Y^T Y on the upper block triangle (register-tiled, 4 x 16 tiles);
 *   mf_als_rhs       Y^T t, the column sums of Y and sum t in one pass;
 *   mf_als_residual  e = t - Y x - b, returning Y^T e, sum e and sum e^2;
 *   mf_als_matvec    s = Y d + db, returning Y^T s and sum s (the CG product);
 *   mf_als_cholesky  in-place Cholesky A = U^T U and the two triangular solves;
 *   mf_als_sweep     s = Y v (or t - Y v) and Y^T s in one sweep over Y (same bits as the
 *                    residual and matvec kernels; the implicit-feedback half-step's product).
 *
 * Every output element is a sum taken in a fixed order fixed by the source: loops are
 * vectorised across columns only (independent sums), dot products use eight partial
 * accumulators combined in a fixed order as in _simd.h, and the build keeps floating-point
 * contraction off (-ffp-contract=off), so the SSE2 and AVX2 clones give the same bits and a row's
 * result never depends on which thread solves it.
 */
#ifndef MFKIT_ALS_H
#define MFKIT_ALS_H

#include <math.h>
#include <string.h>
#include <stdint.h>
#include <stdlib.h>

#include "_simd.h"

/* GCC and Clang vector extensions give the register tiling below; other compilers (or
 * -DMFKIT_NO_VEC) get plain loops that take every sum in the same order. */
#if defined(__GNUC__) && !defined(MFKIT_NO_VEC)
#define MFKIT_HAVE_VEC 1
typedef float mf_v8sf __attribute__((vector_size(32)));
typedef double mf_v4df __attribute__((vector_size(32)));
#else
#define MFKIT_HAVE_VEC 0
#endif

/* Leading dimension of a gathered block: k rounded up to 16 (one 64-byte line of floats). */
static inline int mf_als_ld(int k) { return (k + 15) & ~15; }

/* Scratch aligned to a cache line; size rounded up as aligned_alloc requires. */
static inline void *mf_als_alloc(size_t nbytes)
{
    size_t n = (nbytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
#if defined(_MSC_VER)
    void *p = _aligned_malloc(n, 64);
#else
    void *p = aligned_alloc(64, n);
#endif
    if (p != NULL) memset(p, 0, n);
    return p;
}

static inline void mf_als_free(void *p)
{
#if defined(_MSC_VER)
    _aligned_free(p);
#else
    free(p);
#endif
}

/* Inlinable copy of mf_dot (same body, so the same bits) for use inside the row kernels. */
#define MFKIT_ALS_DOT(T, SUF)                                                              \
static inline T mf_als_dot_##SUF(const T *a, const T *b, int k)                              \
MFKIT_DOT8_BODY(T, a, b, k)

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

/* ---------------------------------------------------------------- row-block kernels
 * Vectors x, d, s, out are ld long and zero beyond k, like the rows of Y, so every loop
 * runs over whole vectors. Four rows of Y are handled per iteration for instruction-level
 * parallelism, without changing any sum's order: a dot product is the same 8-lane sum for
 * every row, and out[c] += s_i Y[i][c] is applied row after row. */
#if MFKIT_HAVE_VEC
#define MFKIT_ALS_LANES8(T, V8, SUF)                                                        \
static inline T mf_als_hsum8_##SUF(V8 a)                                                     \
{                                                                                            \
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));                \
}                                                                                            \
/* s[i] = Y[i] . v + vb for i < n (the 8-lane dot of mf_als_dot over ld entries). */        \
static inline void mf_als_dots_##SUF(const T *restrict Y, int n, int ld, const T *restrict v, \
                                     T vb, T *restrict s)                                    \
{                                                                                            \
    int i = 0;                                                                               \
    for (; i + 4 <= n; i += 4) {                                                             \
        const T *y0 = Y + (size_t)i * ld, *y1 = y0 + ld, *y2 = y1 + ld, *y3 = y2 + ld;       \
        V8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                           \
        for (int f = 0; f < ld; f += 8) {                                                    \
            V8 vv, b0, b1, b2, b3;                                                           \
            memcpy(&vv, v + f, sizeof(V8));                                                  \
            memcpy(&b0, y0 + f, sizeof(V8)); memcpy(&b1, y1 + f, sizeof(V8));               \
            memcpy(&b2, y2 + f, sizeof(V8)); memcpy(&b3, y3 + f, sizeof(V8));               \
            a0 += b0 * vv; a1 += b1 * vv; a2 += b2 * vv; a3 += b3 * vv;                      \
        }                                                                                    \
        s[i] = mf_als_hsum8_##SUF(a0) + vb;                                                  \
        s[i + 1] = mf_als_hsum8_##SUF(a1) + vb;                                              \
        s[i + 2] = mf_als_hsum8_##SUF(a2) + vb;                                              \
        s[i + 3] = mf_als_hsum8_##SUF(a3) + vb;                                              \
    }                                                                                        \
    for (; i < n; i++) {                                                                     \
        const T *y0 = Y + (size_t)i * ld;                                                    \
        V8 a0 = {0};                                                                         \
        for (int f = 0; f < ld; f += 8) {                                                    \
            V8 vv, b0;                                                                       \
            memcpy(&vv, v + f, sizeof(V8)); memcpy(&b0, y0 + f, sizeof(V8));                 \
            a0 += b0 * vv;                                                                   \
        }                                                                                    \
        s[i] = mf_als_hsum8_##SUF(a0) + vb;                                                  \
    }                                                                                        \
}
MFKIT_ALS_LANES8(float, mf_v8sf, f32)
typedef double mf_v8df __attribute__((vector_size(64)));
MFKIT_ALS_LANES8(double, mf_v8df, f64)
#else
#define MFKIT_ALS_LANES8(T, SUF)                                                            \
static inline void mf_als_dots_##SUF(const T *Y, int n, int ld, const T *v, T vb, T *s)      \
{                                                                                            \
    for (int i = 0; i < n; i++) s[i] = mf_als_dot_##SUF(Y + (size_t)i * ld, v, ld) + vb;     \
}
MFKIT_ALS_LANES8(float, f32)
MFKIT_ALS_LANES8(double, f64)
#endif

#define MFKIT_ALS_KERNELS(T, SUF, VT, VN)                                                   \
/* out[c] = sum_i s[i] Y[i][c] (c < ld), summed over i in order. */                          \
static inline void mf_als_ytv_##SUF(const T *restrict Y, int n, int ld, const T *restrict s, \
                                    T *restrict out)                                         \
{                                                                                            \
    for (int c = 0; c < ld; c++) out[c] = 0;                                                 \
    int i = 0;                                                                               \
    for (; i + 4 <= n; i += 4) {                                                             \
        const T *y0 = Y + (size_t)i * ld, *y1 = y0 + ld, *y2 = y1 + ld, *y3 = y2 + ld;       \
        T s0 = s[i], s1 = s[i + 1], s2 = s[i + 2], s3 = s[i + 3];                            \
        for (int c = 0; c < ld; c += VN) {                                                   \
            VT o, b;                                                                         \
            memcpy(&o, out + c, sizeof(VT));                                                 \
            memcpy(&b, y0 + c, sizeof(VT)); o += s0 * b;                                     \
            memcpy(&b, y1 + c, sizeof(VT)); o += s1 * b;                                     \
            memcpy(&b, y2 + c, sizeof(VT)); o += s2 * b;                                     \
            memcpy(&b, y3 + c, sizeof(VT)); o += s3 * b;                                     \
            memcpy(out + c, &o, sizeof(VT));                                                 \
        }                                                                                    \
    }                                                                                        \
    for (; i < n; i++) {                                                                     \
        const T *y0 = Y + (size_t)i * ld;                                                    \
        T s0 = s[i];                                                                         \
        for (int c = 0; c < ld; c++) out[c] += s0 * y0[c];                                   \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* rhs = Y^T t, colsum = Y^T 1 (when colsum != NULL); returns sum t. */                      \
MFKIT_CLONES static T mf_als_rhs_##SUF(const T *restrict Y, int n, int ld,                   \
                                       const T *restrict t, T *restrict rhs,                 \
                                       T *restrict colsum)                                   \
{                                                                                            \
    T st = 0;                                                                                \
    mf_als_ytv_##SUF(Y, n, ld, t, rhs);                                                      \
    for (int i = 0; i < n; i++) st += t[i];                                                  \
    if (colsum != NULL) {                                                                    \
        for (int c = 0; c < ld; c++) colsum[c] = 0;                                          \
        int i = 0;                                                                           \
        for (; i + 4 <= n; i += 4) {                                                         \
            const T *y0 = Y + (size_t)i * ld, *y1 = y0 + ld, *y2 = y1 + ld, *y3 = y2 + ld;   \
            for (int c = 0; c < ld; c++)                                                     \
                colsum[c] = (((colsum[c] + y0[c]) + y1[c]) + y2[c]) + y3[c];                 \
        }                                                                                    \
        for (; i < n; i++) {                                                                 \
            const T *y0 = Y + (size_t)i * ld;                                                \
            for (int c = 0; c < ld; c++) colsum[c] += y0[c];                                 \
        }                                                                                    \
    }                                                                                        \
    return st;                                                                               \
}                                                                                            \
                                                                                             \
/* e_i = t_i - (Y[i] . x + xb) into e; with g != NULL also g = Y^T e and *gb = sum e.        \
 * Returns the sum of e_i^2 in double. */                                                    \
MFKIT_CLONES static double mf_als_residual_##SUF(const T *restrict Y, int n, int ld,          \
                                                 const T *restrict t, const T *restrict x,   \
                                                 T xb, T *restrict e, T *restrict g,         \
                                                 T *restrict gb)                             \
{                                                                                            \
    double sse = 0.0;                                                                        \
    T sb = 0;                                                                                \
    mf_als_dots_##SUF(Y, n, ld, x, xb, e);                                                   \
    for (int i = 0; i < n; i++) {                                                            \
        T ei = t[i] - e[i];                                                                  \
        e[i] = ei;                                                                           \
        sse += (double)ei * (double)ei;                                                      \
        sb += ei;                                                                            \
    }                                                                                        \
    if (g != NULL) {                                                                         \
        mf_als_ytv_##SUF(Y, n, ld, e, g);                                                    \
        *gb = sb;                                                                            \
    }                                                                                        \
    return sse;                                                                              \
}                                                                                            \
                                                                                             \
/* s_i = Y[i] . d + db (into s); out = Y^T s; *outb = sum s. */                              \
MFKIT_CLONES static void mf_als_matvec_##SUF(const T *restrict Y, int n, int ld,             \
                                             const T *restrict d, T db, T *restrict s,       \
                                             T *restrict out, T *restrict outb)              \
{                                                                                            \
    T sb = 0;                                                                                \
    mf_als_dots_##SUF(Y, n, ld, d, db, s);                                                   \
    for (int i = 0; i < n; i++) sb += s[i];                                                  \
    mf_als_ytv_##SUF(Y, n, ld, s, out);                                                      \
    *outb = sb;                                                                              \
}                                                                                            \
                                                                                             \
/* Solve A x = b for symmetric positive definite A (K x K, upper triangle used, row stride    \
 * lda >= K rounded up to VN; overwritten by its Cholesky factor U, A = U^T U). b is          \
 * overwritten by x. Returns 0, or j + 1 when the j-th pivot is not positive (A is not       \
 * positive definite in this precision).                                                     \
 * The trailing update of row r runs over whole vectors from column r rounded down to VN;    \
 * the few entries left of the diagonal it touches are scratch, and the pivot row's          \
 * entries there are zeroed first so nothing but zeros ever flows through them. */          \
MFKIT_CLONES static int mf_als_cholesky_##SUF(T *A, int K, int lda, T *restrict b)           \
{                                                                                            \
    int KP = (K + VN - 1) / VN * VN;                                                         \
    for (int j = 0; j < K; j++) {                                                            \
        T *Aj = A + (size_t)j * lda;                                                         \
        T d = Aj[j];                                                                         \
        if (!(d > 0) || !(d < INFINITY)) return j + 1;                                       \
        d = sqrt(d);                                                                         \
        T inv = (T)1 / d;                                                                    \
        for (int c = j & ~(VN - 1); c < j; c++) Aj[c] = 0;                                   \
        Aj[j] = d;                                                                           \
        for (int c = j + 1; c < KP; c++) Aj[c] *= inv;                                       \
        /* rows r0..r1-1 start at the same aligned column c0: update them together */      \
        for (int r0 = j + 1; r0 < K;) {                                                      \
            int c0 = r0 & ~(VN - 1);                                                         \
            int r1 = c0 + VN < K ? c0 + VN : K;                                              \
            for (int c = c0; c < KP; c += VN) {                                              \
                VT w;                                                                        \
                memcpy(&w, Aj + c, sizeof(VT));                                              \
                for (int r = r0; r < r1; r++) {                                              \
                    VT a;                                                                    \
                    T *Ar = A + (size_t)r * lda + c;                                         \
                    memcpy(&a, Ar, sizeof(VT));                                              \
                    a -= Aj[r] * w;                                                          \
                    memcpy(Ar, &a, sizeof(VT));                                              \
                }                                                                            \
            }                                                                                \
            r0 = r1;                                                                         \
        }                                                                                    \
    }                                                                                        \
    /* U^T z = b, row by row of U (each z_j feeds the entries after it) */                  \
    for (int j = 0; j < K; j++) {                                                            \
        const T *Uj = A + (size_t)j * lda;                                                   \
        T z = b[j] / Uj[j];                                                                  \
        b[j] = z;                                                                            \
        for (int c = j + 1; c < K; c++) b[c] -= Uj[c] * z;                                   \
    }                                                                                        \
    /* U x = z (an 8-lane dot product per row rather than one long dependency chain) */   \
    for (int j = K - 1; j >= 0; j--) {                                                       \
        const T *Uj = A + (size_t)j * lda;                                                   \
        b[j] = (b[j] - mf_als_dot_##SUF(Uj + j + 1, b + j + 1, K - j - 1)) / Uj[j];          \
    }                                                                                        \
    return 0;                                                                                \
}

#if MFKIT_HAVE_VEC
MFKIT_ALS_KERNELS(float, f32, mf_v8sf, 8)
MFKIT_ALS_KERNELS(double, f64, mf_v4df, 4)
#else
/* one-lane "vectors": the same loops, element by element */
MFKIT_ALS_KERNELS(float, f32, float, 1)
MFKIT_ALS_KERNELS(double, f64, double, 1)
#endif

/* ---------------------------------------------------------------- one-sweep products
 * s_i = Y[i] . v (minus from t_i when t != NULL: s_i = t_i - Y[i] . v) and out = Y^T s, in
 * one sweep over Y: each block of MFKIT_ALS_SWEEP rows is dotted and then accumulated while
 * it is still in L1, where mf_als_matvec / mf_als_residual read a long Y twice. The sums are
 * those of mf_als_dots and mf_als_ytv (out[c] summed over i in order), so the bits are
 * theirs. Used by the implicit-feedback half-step, whose rows can be long. */
#define MFKIT_ALS_SWEEP 32
#define MFKIT_ALS_SWEEP_KERNEL(T, SUF, VT, VN)                                              \
MFKIT_CLONES static void mf_als_sweep_##SUF(const T *restrict Y, int n, int ld,              \
                                            const T *restrict v, const T *restrict t,        \
                                            T *restrict s, T *restrict out)                  \
{                                                                                            \
    for (int c = 0; c < ld; c++) out[c] = 0;                                                 \
    for (int i0 = 0; i0 < n; i0 += MFKIT_ALS_SWEEP) {                                        \
        int m = n - i0 < MFKIT_ALS_SWEEP ? n - i0 : MFKIT_ALS_SWEEP;                         \
        const T *Yb = Y + (size_t)i0 * ld;                                                   \
        T *sb = s + i0;                                                                      \
        mf_als_dots_##SUF(Yb, m, ld, v, 0, sb);                                              \
        if (t != NULL)                                                                       \
            for (int i = 0; i < m; i++) sb[i] = t[i0 + i] - sb[i];                           \
        int i = 0;                                                                           \
        for (; i + 4 <= m; i += 4) {                                                         \
            const T *y0 = Yb + (size_t)i * ld, *y1 = y0 + ld, *y2 = y1 + ld, *y3 = y2 + ld;  \
            T s0 = sb[i], s1 = sb[i + 1], s2 = sb[i + 2], s3 = sb[i + 3];                    \
            for (int c = 0; c < ld; c += VN) {                                               \
                VT o, b;                                                                     \
                memcpy(&o, out + c, sizeof(VT));                                             \
                memcpy(&b, y0 + c, sizeof(VT)); o += s0 * b;                                 \
                memcpy(&b, y1 + c, sizeof(VT)); o += s1 * b;                                 \
                memcpy(&b, y2 + c, sizeof(VT)); o += s2 * b;                                 \
                memcpy(&b, y3 + c, sizeof(VT)); o += s3 * b;                                 \
                memcpy(out + c, &o, sizeof(VT));                                             \
            }                                                                                \
        }                                                                                    \
        for (; i < m; i++) {                                                                 \
            const T *y0 = Yb + (size_t)i * ld;                                               \
            T s0 = sb[i];                                                                    \
            for (int c = 0; c < ld; c++) out[c] += s0 * y0[c];                               \
        }                                                                                    \
    }                                                                                        \
}

#if MFKIT_HAVE_VEC
MFKIT_ALS_SWEEP_KERNEL(float, f32, mf_v8sf, 8)
MFKIT_ALS_SWEEP_KERNEL(double, f64, mf_v4df, 4)
#else
MFKIT_ALS_SWEEP_KERNEL(float, f32, float, 1)
MFKIT_ALS_SWEEP_KERNEL(double, f64, double, 1)
#endif

#endif /* MFKIT_ALS_H */
