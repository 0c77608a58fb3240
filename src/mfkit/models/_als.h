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
 * The explicit ALS half-step reads the factor rows in place instead (_als_direct.h: the same
 * sums in the same order over rows given by an index list or pointers, so the same bits),
 * and in float32 solves eight rows' systems at once, one per vector lane (_als_batch.h: the
 * operations of mf_als_cholesky lane by lane, so again the same bits).
 *
 * Instruction-set paths (_isa.h). Each kernel is compiled three times from one body and
 * takes the path as its first argument, `int isa`:
 *
 *   baseline  the build's portable target; every multiply and add rounds on its own (the
 *             build passes -ffp-contract=off). The same bits on every machine.
 *   avx2      AVX2 + FMA (x86-64-v3): the multiply-adds of the Gram tiles, of the dot
 *             products and Y^T s, and the Cholesky trailing update are fused (one rounding).
 *   avx512    AVX-512 (x86-64-v4): the same fused operations in the same places, on the
 *             wider registers (the f64 8-lane sums are one zmm register).
 *
 * avx2 and avx512 give the same bits (the same fused operations on the same operands, in the
 * same order: only the register width differs, and every vector operation is lane-wise);
 * baseline differs from them in the last bits. An aarch64 build has no fast row kernels:
 * its neon path (MFKIT_ISA_NEON, the fused SGD sweep's) runs the baseline body here, with
 * the baseline's bits. On every path each output element is a sum
 * taken in an order fixed by the source: loops are vectorised across columns only
 * (independent sums), dot products use eight partial accumulators combined in a fixed order
 * as in _simd.h, so a row's result never depends on which thread solves it.
 */
#ifndef MFKIT_ALS_H
#define MFKIT_ALS_H

#include <math.h>
#include <string.h>
#include <stdint.h>
#include <stdlib.h>

#include "_simd.h"
#include "_isa.h"

/* GCC and Clang vector extensions give the register tiling below; other compilers (or
 * -DMFKIT_NO_VEC) get plain loops that take every sum in the same order, baseline only. */
#if defined(__GNUC__) && !defined(MFKIT_NO_VEC)
#define MFKIT_HAVE_VEC 1
typedef float mf_v8sf __attribute__((vector_size(32)));
typedef double mf_v4df __attribute__((vector_size(32)));
typedef double mf_v8df __attribute__((vector_size(64)));
typedef float mf_v16sf __attribute__((vector_size(64))); /* the AVX-512 Gram tiles' columns */
#else
#define MFKIT_HAVE_VEC 0
#endif
#if MFKIT_HAVE_VEC && MFKIT_HAVE_X86_PATHS
#define MFKIT_ALS_FAST_PATHS 1
#include <immintrin.h>
#else
#define MFKIT_ALS_FAST_PATHS 0
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

/* Inlinable copy of mf_dot (same body, so the same bits) for use inside the row kernels. It
 * has no fused multiply-add on any path. */
#define MFKIT_ALS_DOT(T, SUF)                                                              \
static inline T mf_als_dot_##SUF(const T *a, const T *b, int k)                              \
MFKIT_DOT8_BODY(T, a, b, k)

MFKIT_ALS_DOT(float, f32)
MFKIT_ALS_DOT(double, f64)

/* ---------------------------------------------------------------- per-path vector operations
 * mf_fma_<V>_<path>(a, b, c) = a * b + c and mf_fnma_<V>_<path>(a, b, c) = c - a * b,
 * lane-wise: rounded twice on the baseline path, once (fused) on the others. */
#if MFKIT_HAVE_VEC
#define MF_SPLAT_mf_v8sf(s) ((mf_v8sf){(s), (s), (s), (s), (s), (s), (s), (s)})
#define MF_SPLAT_mf_v4df(s) ((mf_v4df){(s), (s), (s), (s)})
#define MF_SPLAT_mf_v8df(s) ((mf_v8df){(s), (s), (s), (s), (s), (s), (s), (s)})
#define MF_SPLAT_mf_v16sf(s)                                                               \
    ((mf_v16sf){(s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s)})

#define mf_fma_mf_v8sf_base(a, b, c) ((a) * (b) + (c))
#define mf_fma_mf_v4df_base(a, b, c) ((a) * (b) + (c))
#define mf_fma_mf_v8df_base(a, b, c) ((a) * (b) + (c))
#define mf_fnma_mf_v8sf_base(a, b, c) ((c) - (a) * (b))
#define mf_fnma_mf_v4df_base(a, b, c) ((c) - (a) * (b))
#endif

#if MFKIT_ALS_FAST_PATHS
#define MFKIT_ALS_FMA_OPS(P, ATTR)                                                          \
ATTR static inline mf_v8sf mf_fma_mf_v8sf_##P(mf_v8sf a, mf_v8sf b, mf_v8sf c)                \
{ return (mf_v8sf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c); }                        \
ATTR static inline mf_v4df mf_fma_mf_v4df_##P(mf_v4df a, mf_v4df b, mf_v4df c)                \
{ return (mf_v4df)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c); }                     \
ATTR static inline mf_v8sf mf_fnma_mf_v8sf_##P(mf_v8sf a, mf_v8sf b, mf_v8sf c)               \
{ return (mf_v8sf)_mm256_fnmadd_ps((__m256)a, (__m256)b, (__m256)c); }                       \
ATTR static inline mf_v4df mf_fnma_mf_v4df_##P(mf_v4df a, mf_v4df b, mf_v4df c)               \
{ return (mf_v4df)_mm256_fnmadd_pd((__m256d)a, (__m256d)b, (__m256d)c); }
MFKIT_ALS_FMA_OPS(avx2, MFKIT_TARGET_AVX2)
MFKIT_ALS_FMA_OPS(avx512, MFKIT_TARGET_AVX512)

/* the eight-lane f64 sums: two ymm halves on AVX2, one zmm on AVX-512 (lane-wise alike) */
/* (a statement expression rather than a function: a 64-byte vector passed by value to a
 * function without AVX-512 would change the calling convention) */
#define mf_fma_mf_v8df_avx2(a, b, c)                                                       \
    ({                                                                                       \
        mf_v8df a_ = (a), b_ = (b), c_ = (c), r_;                                            \
        __m256d a0_, a1_, b0_, b1_, c0_, c1_;                                                \
        memcpy(&a0_, &a_, 32); memcpy(&a1_, (const char *)&a_ + 32, 32);                    \
        memcpy(&b0_, &b_, 32); memcpy(&b1_, (const char *)&b_ + 32, 32);                    \
        memcpy(&c0_, &c_, 32); memcpy(&c1_, (const char *)&c_ + 32, 32);                    \
        c0_ = _mm256_fmadd_pd(a0_, b0_, c0_);                                                \
        c1_ = _mm256_fmadd_pd(a1_, b1_, c1_);                                                \
        memcpy(&r_, &c0_, 32); memcpy((char *)&r_ + 32, &c1_, 32);                           \
        r_;                                                                                  \
    })
MFKIT_TARGET_AVX512 static inline mf_v8df mf_fma_mf_v8df_avx512(mf_v8df a, mf_v8df b,
                                                               mf_v8df c)
{
    return (mf_v8df)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
}
/* sixteen float lanes for the AVX-512 path's column-wise loops (each lane's sum is the
 * same whatever the vector width, so the bits are those of the eight-lane code) */
MFKIT_TARGET_AVX512 static inline mf_v16sf mf_fma_mf_v16sf_avx512(mf_v16sf a, mf_v16sf b,
                                                                 mf_v16sf c)
{
    return (mf_v16sf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
}
MFKIT_TARGET_AVX512 static inline mf_v16sf mf_fnma_mf_v16sf_avx512(mf_v16sf a, mf_v16sf b,
                                                                  mf_v16sf c)
{
    return (mf_v16sf)_mm512_fnmadd_ps((__m512)a, (__m512)b, (__m512)c);
}
#endif

/* ---------------------------------------------------------------- the kernels of one path
 * MFKIT_ALS_PATH(T, SUF, VT, VN, V8, P, ATTR) defines mf_als_*_<SUF>_<P> for element type T
 * (VT: VN lanes of T for the column-wise loops; V8: 8 lanes of T for the dot products),
 * each kernel carrying the attribute ATTR of path P and each inline helper HATTR.
 *
 * Gram tiles: A[r][c] += sum_i Y[i][r] * Y[i][c] for every 4 x (2 VN) tile that touches the
 * upper triangle (c >= r). Y is n x ld, A has row stride lda >= ld. Each A element is one
 * running sum over i in order, so calling this on consecutive chunks of rows gives the same
 * bits as one call on all of them.
 *
 * Row-block kernels: vectors x, d, s, out are ld long and zero beyond k, like the rows of Y,
 * so every loop runs over whole vectors. Four rows of Y are handled per iteration for
 * instruction-level parallelism, without changing any sum's order: a dot product is the same
 * 8-lane sum for every row, and out[c] += s_i Y[i][c] is applied row after row. */
#if MFKIT_HAVE_VEC
#define MF_FMA(V, P) mf_fma_##V##_##P
#define MF_FNMA(V, P) mf_fnma_##V##_##P
#define MF_SPLAT(V, s) MF_SPLAT_##V(s)

/* Row j of U over strips of W vectors from column cb on, while a strip of W fits in KP
 * (the body of mf_als_cholesky, once per strip width; the names are the caller's). */
#define MF_UPLOOK_STRIPS(T, VT, VN, P, W)                                                   \
        for (; cb + (W) * VN <= KP; cb += (W) * VN) {                                        \
            VT a[W];                                                                         \
            for (int v = 0; v < (W); v++) memcpy(&a[v], Aj + cb + v * VN, sizeof(VT));       \
            for (int i = 0; i < j; i++) {                                                    \
                const T *Ui = A + (size_t)i * lda + cb;                                      \
                VT m = MF_SPLAT(VT, A[(size_t)i * lda + j]);                                 \
                for (int v = 0; v < (W); v++) {                                              \
                    VT u;                                                                    \
                    memcpy(&u, Ui + v * VN, sizeof(VT));                                     \
                    a[v] = MF_FNMA(VT, P)(m, u, a[v]);                                       \
                }                                                                            \
            }                                                                                \
            for (int v = 0; v < (W); v++) memcpy(Aj + cb + v * VN, &a[v], sizeof(VT));       \
        }

/* Rows j and j + 1 together over the rows i < j above them (their updates interleaved, each \
 * row's in order of i: twice the independent sums of one row); row j + 1 takes its i = j    \
 * term once row j is done. */                                                               \
#define MF_UPLOOK_PAIR_STRIPS(T, VT, VN, P, W)                                               \
        for (; cb + (W) * VN <= KP; cb += (W) * VN) {                                        \
            VT a[W], a1[W];                                                                  \
            for (int v = 0; v < (W); v++) {                                                  \
                memcpy(&a[v], Aj + cb + v * VN, sizeof(VT));                                 \
                memcpy(&a1[v], Aj1 + cb + v * VN, sizeof(VT));                               \
            }                                                                                \
            for (int i = 0; i < j; i++) {                                                    \
                const T *Ui = A + (size_t)i * lda + cb;                                      \
                VT m = MF_SPLAT(VT, A[(size_t)i * lda + j]);                                 \
                VT m1 = MF_SPLAT(VT, A[(size_t)i * lda + j + 1]);                            \
                for (int v = 0; v < (W); v++) {                                              \
                    VT u;                                                                    \
                    memcpy(&u, Ui + v * VN, sizeof(VT));                                     \
                    a[v] = MF_FNMA(VT, P)(m, u, a[v]);                                       \
                    a1[v] = MF_FNMA(VT, P)(m1, u, a1[v]);                                    \
                }                                                                            \
            }                                                                                \
            for (int v = 0; v < (W); v++) {                                                  \
                memcpy(Aj + cb + v * VN, &a[v], sizeof(VT));                                 \
                memcpy(Aj1 + cb + v * VN, &a1[v], sizeof(VT));                               \
            }                                                                                \
        }                                                                                    \

#define MFKIT_ALS_PATH(T, SUF, VT, VN, CVT, CVN, V8, P, ATTR, HATTR)                                       \
ATTR static void mf_als_gram_##SUF##_##P(const T *restrict Y, int n, int ld,                 \
                                         T *restrict A, int lda)                             \
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
                VT s0 = MF_SPLAT(VT, y[r0]), s1 = MF_SPLAT(VT, y[r0 + 1]);                   \
                VT s2 = MF_SPLAT(VT, y[r0 + 2]), s3 = MF_SPLAT(VT, y[r0 + 3]);               \
                a00 = MF_FMA(VT, P)(s0, b0, a00); a01 = MF_FMA(VT, P)(s0, b1, a01);          \
                a10 = MF_FMA(VT, P)(s1, b0, a10); a11 = MF_FMA(VT, P)(s1, b1, a11);          \
                a20 = MF_FMA(VT, P)(s2, b0, a20); a21 = MF_FMA(VT, P)(s2, b1, a21);          \
                a30 = MF_FMA(VT, P)(s3, b0, a30); a31 = MF_FMA(VT, P)(s3, b1, a31);          \
            }                                                                                \
            memcpy(A0, &a00, sizeof(VT)); memcpy(A0 + VN, &a01, sizeof(VT));                 \
            memcpy(A1, &a10, sizeof(VT)); memcpy(A1 + VN, &a11, sizeof(VT));                 \
            memcpy(A2, &a20, sizeof(VT)); memcpy(A2 + VN, &a21, sizeof(VT));                 \
            memcpy(A3, &a30, sizeof(VT)); memcpy(A3 + VN, &a31, sizeof(VT));                 \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
HATTR static inline T mf_als_hsum8_##SUF##_##P(V8 a)                                          \
{                                                                                            \
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));                \
}                                                                                            \
                                                                                             \
/* s[i] = Y[i] . v + vb for i < n (eight lanes, lane j takes f = j mod 8). */               \
HATTR static inline void mf_als_dots_##SUF##_##P(const T *restrict Y, int n, int ld,        \
                                         const T *restrict v, T vb, T *restrict s)           \
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
            a0 = MF_FMA(V8, P)(b0, vv, a0); a1 = MF_FMA(V8, P)(b1, vv, a1);                  \
            a2 = MF_FMA(V8, P)(b2, vv, a2); a3 = MF_FMA(V8, P)(b3, vv, a3);                  \
        }                                                                                    \
        s[i] = mf_als_hsum8_##SUF##_##P(a0) + vb;                                            \
        s[i + 1] = mf_als_hsum8_##SUF##_##P(a1) + vb;                                        \
        s[i + 2] = mf_als_hsum8_##SUF##_##P(a2) + vb;                                        \
        s[i + 3] = mf_als_hsum8_##SUF##_##P(a3) + vb;                                        \
    }                                                                                        \
    for (; i < n; i++) {                                                                     \
        const T *y0 = Y + (size_t)i * ld;                                                    \
        V8 a0 = {0};                                                                         \
        for (int f = 0; f < ld; f += 8) {                                                    \
            V8 vv, b0;                                                                       \
            memcpy(&vv, v + f, sizeof(V8)); memcpy(&b0, y0 + f, sizeof(V8));                 \
            a0 = MF_FMA(V8, P)(b0, vv, a0);                                                  \
        }                                                                                    \
        s[i] = mf_als_hsum8_##SUF##_##P(a0) + vb;                                            \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* out[c] += sum_{i < m} s[i] Y[i][c] (c < ld), summed over i in order. */                   \
HATTR static inline void mf_als_ytv_add_##SUF##_##P(const T *restrict Y, int m, int ld,       \
                                                   const T *restrict s, T *restrict out)     \
{                                                                                            \
    int i = 0;                                                                               \
    for (; i + 4 <= m; i += 4) {                                                             \
        const T *y0 = Y + (size_t)i * ld, *y1 = y0 + ld, *y2 = y1 + ld, *y3 = y2 + ld;       \
        VT s0 = MF_SPLAT(VT, s[i]), s1 = MF_SPLAT(VT, s[i + 1]);                             \
        VT s2 = MF_SPLAT(VT, s[i + 2]), s3 = MF_SPLAT(VT, s[i + 3]);                         \
        for (int c = 0; c < ld; c += VN) {                                                   \
            VT o, b;                                                                         \
            memcpy(&o, out + c, sizeof(VT));                                                 \
            memcpy(&b, y0 + c, sizeof(VT)); o = MF_FMA(VT, P)(s0, b, o);                     \
            memcpy(&b, y1 + c, sizeof(VT)); o = MF_FMA(VT, P)(s1, b, o);                     \
            memcpy(&b, y2 + c, sizeof(VT)); o = MF_FMA(VT, P)(s2, b, o);                     \
            memcpy(&b, y3 + c, sizeof(VT)); o = MF_FMA(VT, P)(s3, b, o);                     \
            memcpy(out + c, &o, sizeof(VT));                                                 \
        }                                                                                    \
    }                                                                                        \
    for (; i < m; i++) {                                                                     \
        const T *y0 = Y + (size_t)i * ld;                                                    \
        VT s0 = MF_SPLAT(VT, s[i]);                                                          \
        for (int c = 0; c < ld; c += VN) {                                                   \
            VT o, b;                                                                         \
            memcpy(&o, out + c, sizeof(VT));                                                 \
            memcpy(&b, y0 + c, sizeof(VT)); o = MF_FMA(VT, P)(s0, b, o);                     \
            memcpy(out + c, &o, sizeof(VT));                                                 \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* rhs = Y^T t, colsum = Y^T 1 (when colsum != NULL); returns sum t. */                      \
ATTR static T mf_als_rhs_##SUF##_##P(const T *restrict Y, int n, int ld,                     \
                                     const T *restrict t, T *restrict rhs,                   \
                                     T *restrict colsum)                                     \
{                                                                                            \
    T st = 0;                                                                                \
    for (int c = 0; c < ld; c++) rhs[c] = 0;                                                 \
    mf_als_ytv_add_##SUF##_##P(Y, n, ld, t, rhs);                                            \
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
ATTR static double mf_als_residual_##SUF##_##P(const T *restrict Y, int n, int ld,           \
                                               const T *restrict t, const T *restrict x,     \
                                               T xb, T *restrict e, T *restrict g,           \
                                               T *restrict gb)                               \
{                                                                                            \
    double sse = 0.0;                                                                        \
    T sb = 0;                                                                                \
    mf_als_dots_##SUF##_##P(Y, n, ld, x, xb, e);                                             \
    for (int i = 0; i < n; i++) {                                                            \
        T ei = t[i] - e[i];                                                                  \
        e[i] = ei;                                                                           \
        sse += (double)ei * (double)ei;                                                      \
        sb += ei;                                                                            \
    }                                                                                        \
    if (g != NULL) {                                                                         \
        for (int c = 0; c < ld; c++) g[c] = 0;                                               \
        mf_als_ytv_add_##SUF##_##P(Y, n, ld, e, g);                                          \
        *gb = sb;                                                                            \
    }                                                                                        \
    return sse;                                                                              \
}                                                                                            \
                                                                                             \
/* s_i = Y[i] . d + db (into s); out = Y^T s; *outb = sum s. */                              \
ATTR static void mf_als_matvec_##SUF##_##P(const T *restrict Y, int n, int ld,               \
                                           const T *restrict d, T db, T *restrict s,         \
                                           T *restrict out, T *restrict outb)                \
{                                                                                            \
    T sb = 0;                                                                                \
    mf_als_dots_##SUF##_##P(Y, n, ld, d, db, s);                                             \
    for (int i = 0; i < n; i++) sb += s[i];                                                  \
    for (int c = 0; c < ld; c++) out[c] = 0;                                                 \
    mf_als_ytv_add_##SUF##_##P(Y, n, ld, s, out);                                            \
    *outb = sb;                                                                              \
}                                                                                            \
                                                                                             \
/* s_i = Y[i] . v (t_i - Y[i] . v when t != NULL) and out = Y^T s, in one sweep over Y:      \
 * each block of MFKIT_ALS_SWEEP rows is dotted and then accumulated while it is still in    \
 * L1, where matvec / residual read a long Y twice. Same sums, so the same bits. */          \
ATTR static void mf_als_sweep_##SUF##_##P(const T *restrict Y, int n, int ld,                \
                                          const T *restrict v, const T *restrict t,          \
                                          T *restrict s, T *restrict out)                    \
{                                                                                            \
    for (int c = 0; c < ld; c++) out[c] = 0;                                                 \
    for (int i0 = 0; i0 < n; i0 += MFKIT_ALS_SWEEP) {                                        \
        int m = n - i0 < MFKIT_ALS_SWEEP ? n - i0 : MFKIT_ALS_SWEEP;                         \
        const T *Yb = Y + (size_t)i0 * ld;                                                   \
        T *sb = s + i0;                                                                      \
        mf_als_dots_##SUF##_##P(Yb, m, ld, v, 0, sb);                                        \
        if (t != NULL)                                                                       \
            for (int i = 0; i < m; i++) sb[i] = t[i0 + i] - sb[i];                           \
        mf_als_ytv_add_##SUF##_##P(Yb, m, ld, sb, out);                                      \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Solve A x = b for symmetric positive definite A (K x K, upper triangle used, row stride    \
 * lda >= K rounded up to VN; overwritten by its Cholesky factor U, A = U^T U). b is          \
 * overwritten by x. Returns 0, or j + 1 when the j-th pivot is not positive (A is not       \
 * positive definite in this precision).                                                     \
 * Row j is formed over whole vectors from column j rounded down to VN; the few entries left \
 * of the diagonal it touches are scratch (zeroed once the row is done). Each upper entry    \
 * gets the same updates in the same order whatever VN is. */                                \
ATTR static int mf_als_cholesky_##SUF##_##P(T *A, int K, int lda, T *restrict b)             \
{                                                                                            \
    int KP = (K + CVN - 1) / CVN * CVN;                                                         \
    for (int j = 0; j < K; j++) {                                                            \
        T *Aj = A + (size_t)j * lda;                                                         \
        int c0 = j & ~(CVN - 1), cb = c0;                                                     \
        /* row j of U, up-looking: A[j][c] - sum_{i<j} U[i][j] U[i][c] with i increasing,   \
         * the updates a right-looking elimination makes, in its order; the row stays in     \
         * registers while the rows above stream past */                                     \
        if (j + 1 < K && (j & 1) == 0) {                                                     \
            /* (j even: row j + 1 starts at the same column c0) */                           \
            T *Aj1 = Aj + lda;                                                               \
            if (CVN == 16) MF_UPLOOK_PAIR_STRIPS(T, CVT, CVN, P, 5)                            \
            MF_UPLOOK_PAIR_STRIPS(T, CVT, CVN, P, 4)                                           \
            if (CVN == 16) MF_UPLOOK_PAIR_STRIPS(T, CVT, CVN, P, 3)                            \
            MF_UPLOOK_PAIR_STRIPS(T, CVT, CVN, P, 2)                                           \
            MF_UPLOOK_PAIR_STRIPS(T, CVT, CVN, P, 1)                                           \
            T dj = Aj[j];                                                                    \
            if (!(dj > 0) || !(dj < INFINITY)) return j + 1;                                 \
            dj = sqrt(dj);                                                                   \
            T invj = (T)1 / dj;                                                              \
            for (int c = c0; c < j; c++) Aj[c] = 0;                                          \
            Aj[j] = dj;                                                                      \
            for (int c = j + 1; c < KP; c++) Aj[c] *= invj;                                  \
            CVT m = MF_SPLAT(CVT, Aj[j + 1]);                                                  \
            for (cb = c0; cb < KP; cb += CVN) {                                               \
                CVT u, a;                                                                     \
                memcpy(&u, Aj + cb, sizeof(CVT));                                             \
                memcpy(&a, Aj1 + cb, sizeof(CVT));                                            \
                a = MF_FNMA(CVT, P)(m, u, a);                                                 \
                memcpy(Aj1 + cb, &a, sizeof(CVT));                                            \
            }                                                                                \
            j++;                                                                             \
            Aj = Aj1;                                                                        \
        } else {                                                                             \
            MF_UPLOOK_STRIPS(T, CVT, CVN, P, 8)                                                \
            MF_UPLOOK_STRIPS(T, CVT, CVN, P, 4)                                                \
            MF_UPLOOK_STRIPS(T, CVT, CVN, P, 2)                                                \
            MF_UPLOOK_STRIPS(T, CVT, CVN, P, 1)                                                \
        }                                                                                    \
        T d = Aj[j];                                                                         \
        if (!(d > 0) || !(d < INFINITY)) return j + 1;                                       \
        d = sqrt(d);                                                                         \
        T inv = (T)1 / d;                                                                    \
        for (int c = c0; c < j; c++) Aj[c] = 0;                                              \
        Aj[j] = d;                                                                           \
        for (int c = j + 1; c < KP; c++) Aj[c] *= inv;                                       \
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

#define MFKIT_ALS_SWEEP 32

/* the baseline keeps gcc's x86-64-v3 clone of the kernels (AVX2 registers, no FMA: the same
 * bits as the SSE2 code, the speed mfkit had before the fused paths) */
MFKIT_ALS_PATH(float, f32, mf_v8sf, 8, mf_v8sf, 8, mf_v8sf, base, MFKIT_CLONES, )
MFKIT_ALS_PATH(double, f64, mf_v4df, 4, mf_v4df, 4, mf_v8df, base, MFKIT_CLONES, )
#if MFKIT_ALS_FAST_PATHS
MFKIT_ALS_PATH(float, f32, mf_v8sf, 8, mf_v8sf, 8, mf_v8sf, avx2, MFKIT_TARGET_AVX2, MFKIT_TARGET_AVX2)
MFKIT_ALS_PATH(double, f64, mf_v4df, 4, mf_v4df, 4, mf_v8df, avx2, MFKIT_TARGET_AVX2, MFKIT_TARGET_AVX2)
MFKIT_ALS_PATH(float, f32, mf_v8sf, 8, mf_v16sf, 16, mf_v8sf, avx512, MFKIT_TARGET_AVX512, MFKIT_TARGET_AVX512)
MFKIT_ALS_PATH(double, f64, mf_v4df, 4, mf_v4df, 4, mf_v8df, avx512, MFKIT_TARGET_AVX512, MFKIT_TARGET_AVX512)
#endif

#else /* !MFKIT_HAVE_VEC: plain loops, every sum in the order of the vector code */
#define MFKIT_ALS_SWEEP 32
#define MFKIT_ALS_PLAIN(T, SUF, VN)                                                         \
static void mf_als_gram_##SUF##_base(const T *Y, int n, int ld, T *A, int lda)               \
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
}                                                                                            \
static void mf_als_dots_##SUF##_base(const T *Y, int n, int ld, const T *v, T vb, T *s)      \
{                                                                                            \
    for (int i = 0; i < n; i++) s[i] = mf_als_dot_##SUF(Y + (size_t)i * ld, v, ld) + vb;     \
}                                                                                            \
static void mf_als_ytv_add_##SUF##_base(const T *Y, int m, int ld, const T *s, T *out)       \
{                                                                                            \
    for (int i = 0; i < m; i++)                                                              \
        for (int c = 0; c < ld; c++) out[c] += s[i] * Y[(size_t)i * ld + c];                 \
}                                                                                            \
static T mf_als_rhs_##SUF##_base(const T *Y, int n, int ld, const T *t, T *rhs, T *colsum)   \
{                                                                                            \
    T st = 0;                                                                                \
    for (int c = 0; c < ld; c++) rhs[c] = 0;                                                 \
    mf_als_ytv_add_##SUF##_base(Y, n, ld, t, rhs);                                           \
    for (int i = 0; i < n; i++) st += t[i];                                                  \
    if (colsum != NULL) {                                                                    \
        for (int c = 0; c < ld; c++) colsum[c] = 0;                                          \
        for (int i = 0; i < n; i++)                                                          \
            for (int c = 0; c < ld; c++) colsum[c] += Y[(size_t)i * ld + c];                 \
    }                                                                                        \
    return st;                                                                               \
}                                                                                            \
static double mf_als_residual_##SUF##_base(const T *Y, int n, int ld, const T *t,            \
                                           const T *x, T xb, T *e, T *g, T *gb)              \
{                                                                                            \
    double sse = 0.0;                                                                        \
    T sb = 0;                                                                                \
    mf_als_dots_##SUF##_base(Y, n, ld, x, xb, e);                                            \
    for (int i = 0; i < n; i++) {                                                            \
        T ei = t[i] - e[i];                                                                  \
        e[i] = ei;                                                                           \
        sse += (double)ei * (double)ei;                                                      \
        sb += ei;                                                                            \
    }                                                                                        \
    if (g != NULL) {                                                                         \
        for (int c = 0; c < ld; c++) g[c] = 0;                                               \
        mf_als_ytv_add_##SUF##_base(Y, n, ld, e, g);                                         \
        *gb = sb;                                                                            \
    }                                                                                        \
    return sse;                                                                              \
}                                                                                            \
static void mf_als_matvec_##SUF##_base(const T *Y, int n, int ld, const T *d, T db, T *s,    \
                                       T *out, T *outb)                                      \
{                                                                                            \
    T sb = 0;                                                                                \
    mf_als_dots_##SUF##_base(Y, n, ld, d, db, s);                                            \
    for (int i = 0; i < n; i++) sb += s[i];                                                  \
    for (int c = 0; c < ld; c++) out[c] = 0;                                                 \
    mf_als_ytv_add_##SUF##_base(Y, n, ld, s, out);                                           \
    *outb = sb;                                                                              \
}                                                                                            \
static void mf_als_sweep_##SUF##_base(const T *Y, int n, int ld, const T *v, const T *t,     \
                                      T *s, T *out)                                          \
{                                                                                            \
    for (int c = 0; c < ld; c++) out[c] = 0;                                                 \
    mf_als_dots_##SUF##_base(Y, n, ld, v, 0, s);                                             \
    if (t != NULL)                                                                           \
        for (int i = 0; i < n; i++) s[i] = t[i] - s[i];                                      \
    mf_als_ytv_add_##SUF##_base(Y, n, ld, s, out);                                           \
}                                                                                            \
static int mf_als_cholesky_##SUF##_base(T *A, int K, int lda, T *b)                          \
{                                                                                            \
    for (int j = 0; j < K; j++) {                                                            \
        T *Aj = A + (size_t)j * lda;                                                         \
        T d = Aj[j];                                                                         \
        if (!(d > 0) || !(d < INFINITY)) return j + 1;                                       \
        d = sqrt(d);                                                                         \
        T inv = (T)1 / d;                                                                    \
        Aj[j] = d;                                                                           \
        for (int c = j + 1; c < K; c++) Aj[c] *= inv;                                        \
        for (int r = j + 1; r < K; r++)                                                      \
            for (int c = r; c < K; c++) A[(size_t)r * lda + c] -= Aj[r] * Aj[c];             \
    }                                                                                        \
    for (int j = 0; j < K; j++) {                                                            \
        const T *Uj = A + (size_t)j * lda;                                                   \
        T z = b[j] / Uj[j];                                                                  \
        b[j] = z;                                                                            \
        for (int c = j + 1; c < K; c++) b[c] -= Uj[c] * z;                                   \
    }                                                                                        \
    for (int j = K - 1; j >= 0; j--) {                                                       \
        const T *Uj = A + (size_t)j * lda;                                                   \
        b[j] = (b[j] - mf_als_dot_##SUF(Uj + j + 1, b + j + 1, K - j - 1)) / Uj[j];          \
    }                                                                                        \
    return 0;                                                                                \
}
MFKIT_ALS_PLAIN(float, f32, 8)
MFKIT_ALS_PLAIN(double, f64, 4)
#endif

/* ---------------------------------------------------------------- dispatch on `isa`
 * A level the build lacks (or an unknown one) runs the baseline body; the Python layer only
 * passes levels mfkit._core.isa reports as available. */
#if MFKIT_ALS_FAST_PATHS
#define MFKIT_ALS_PICK(isa, NAME, ...)                                                      \
    ((isa) >= MFKIT_ISA_AVX512 ? NAME##_avx512(__VA_ARGS__)                                  \
     : (isa) == MFKIT_ISA_AVX2 ? NAME##_avx2(__VA_ARGS__) : NAME##_base(__VA_ARGS__))
#else
#define MFKIT_ALS_PICK(isa, NAME, ...) ((void)(isa), NAME##_base(__VA_ARGS__))
#endif

#define MFKIT_ALS_DISPATCH(T, SUF)                                                          \
static inline void mf_als_gram_##SUF(int isa, const T *Y, int n, int ld, T *A, int lda)      \
{ MFKIT_ALS_PICK(isa, mf_als_gram_##SUF, Y, n, ld, A, lda); }                                \
static inline void mf_als_dots_##SUF(int isa, const T *Y, int n, int ld, const T *v, T vb,   \
                                     T *s)                                                   \
{ MFKIT_ALS_PICK(isa, mf_als_dots_##SUF, Y, n, ld, v, vb, s); }                              \
static inline T mf_als_rhs_##SUF(int isa, const T *Y, int n, int ld, const T *t, T *rhs,     \
                                 T *colsum)                                                  \
{ return MFKIT_ALS_PICK(isa, mf_als_rhs_##SUF, Y, n, ld, t, rhs, colsum); }                  \
static inline double mf_als_residual_##SUF(int isa, const T *Y, int n, int ld, const T *t,   \
                                           const T *x, T xb, T *e, T *g, T *gb)              \
{ return MFKIT_ALS_PICK(isa, mf_als_residual_##SUF, Y, n, ld, t, x, xb, e, g, gb); }         \
static inline void mf_als_matvec_##SUF(int isa, const T *Y, int n, int ld, const T *d, T db, \
                                       T *s, T *out, T *outb)                                \
{ MFKIT_ALS_PICK(isa, mf_als_matvec_##SUF, Y, n, ld, d, db, s, out, outb); }                 \
static inline void mf_als_sweep_##SUF(int isa, const T *Y, int n, int ld, const T *v,        \
                                      const T *t, T *s, T *out)                              \
{ MFKIT_ALS_PICK(isa, mf_als_sweep_##SUF, Y, n, ld, v, t, s, out); }                         \
static inline int mf_als_cholesky_##SUF(int isa, T *A, int K, int lda, T *b)                 \
{ return MFKIT_ALS_PICK(isa, mf_als_cholesky_##SUF, A, K, lda, b); }

MFKIT_ALS_DISPATCH(float, f32)
MFKIT_ALS_DISPATCH(double, f64)

/* ---------------------------------------------------------------- per-thread scratch
 * One buffer per fit holds every thread's scratch for the row kernels of the ALS, implicit
 * ALS and Bayesian half-steps: for rows of at most max_n entries and k factors, each thread
 * owns a slice of mf_rows_scratch_bytes(k, max_n, itemsize) bytes (64-byte aligned pieces):
 *
 *   blk  max_n x ld   the gathered opposite rows (padding columns stay zero)
 *   t, e max_n each   targets and residuals
 *   A    lda x lda    the normal matrix (lda = ld of k + 1)
 *   v    8 lda        small vectors (right-hand side, CG directions, ...)
 *   z    lda doubles  the sampler's normals
 *   batch               the explicit ALS half-step's batched Cholesky (_als_batch.h): the
 *                       interleaved triangles of eight systems of k + 1 unknowns (their
 *                       W and right-hand sides, 32-byte vectors), then eight slots of an
 *                       A (lda x lda) and a v (2 lda) for the systems being gathered
 *
 * The buffer starts zeroed and a kernel never writes the padding of blk, so the zero padding
 * the row kernels rely on holds for every half-step of the fit. */
typedef struct {
    void *blk, *t, *e, *A, *v;
    double *z;
    void *batch;
} mf_rows_scratch;

static inline size_t mf_rows_round(size_t n) { return (n + 63) & ~(size_t)63; }

/* bytes of the batch piece: W of (k + 1) (k + 9) and k + 1 vectors of 32 bytes, and eight
 * slots of mf_rows_batch_slot bytes (an A of lda x lda, then a v of 2 lda) */
static inline size_t mf_rows_batch_slot(int k, int itemsize)
{
    size_t lda = (size_t)mf_als_ld(k + 1), is = (size_t)itemsize;
    return mf_rows_round(lda * lda * is) + mf_rows_round(2 * lda * is);
}
static inline size_t mf_rows_batch_w_bytes(int k)
{
    size_t K = (size_t)k + 1;
    return mf_rows_round(K * (K + 8) * 32) + mf_rows_round(K * 32);
}
static inline size_t mf_rows_batch_bytes(int k, int itemsize)
{
    return mf_rows_batch_w_bytes(k) + 8 * mf_rows_batch_slot(k, itemsize);
}
/* slot s of the batch piece: its A (lda x lda), then its v (2 lda) */
static inline void *mf_rows_batch_a(void *batch, int k, int itemsize, int s)
{
    return (char *)batch + mf_rows_batch_w_bytes(k) + (size_t)s * mf_rows_batch_slot(k, itemsize);
}
static inline void *mf_rows_batch_v(void *batch, int k, int itemsize, int s)
{
    size_t lda = (size_t)mf_als_ld(k + 1);
    return (char *)mf_rows_batch_a(batch, k, itemsize, s)
           + mf_rows_round(lda * lda * (size_t)itemsize);
}
/* the batch piece's right-hand-side vectors, after its W (systems of up to k + 1 unknowns) */
static inline void *mf_rows_batch_bv(void *batch, int k)
{
    return (char *)batch + (size_t)(k + 1) * (size_t)(k + 9) * 32;
}

static inline size_t mf_rows_scratch_bytes(int k, int64_t max_n, int itemsize)
{
    size_t ld = (size_t)mf_als_ld(k), lda = (size_t)mf_als_ld(k + 1);
    size_t n = max_n > 0 ? (size_t)max_n : 1, is = (size_t)itemsize;
    return mf_rows_round(n * ld * is) + 2 * mf_rows_round(n * is) + mf_rows_round(lda * lda * is)
           + mf_rows_round(8 * lda * is) + mf_rows_round(lda * sizeof(double))
           + mf_rows_batch_bytes(k, itemsize);
}

/* thread `tid`'s pieces in `base` (64-byte aligned, per_thread from mf_rows_scratch_bytes) */
static inline mf_rows_scratch mf_rows_scratch_at(void *base, int tid, size_t per_thread, int k,
                                                 int64_t max_n, int itemsize)
{
    size_t ld = (size_t)mf_als_ld(k), lda = (size_t)mf_als_ld(k + 1);
    size_t n = max_n > 0 ? (size_t)max_n : 1, is = (size_t)itemsize;
    char *p = (char *)base + (size_t)tid * per_thread;
    mf_rows_scratch s;
    s.blk = p; p += mf_rows_round(n * ld * is);
    s.t = p; p += mf_rows_round(n * is);
    s.e = p; p += mf_rows_round(n * is);
    s.A = p; p += mf_rows_round(lda * lda * is);
    s.v = p; p += mf_rows_round(8 * lda * is);
    s.z = (double *)p; p += mf_rows_round(lda * sizeof(double));
    s.batch = p;
    return s;
}

#endif /* MFKIT_ALS_H */
