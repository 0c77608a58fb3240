/* Row kernels of the explicit ALS half-step that read the opposite factor rows in place.
 *
 * The kernels of _als.h work on a row's opposite factor rows gathered into a contiguous
 * block. Copying them there cost as much as the conjugate-gradient products that follow,
 * so the explicit half-step instead reads each factor row where it lies, through the row's
 * index list, and fuses the two products of a CG step into one pass:
 *
 *   mf_als_pass   w_i = y_i . v + vb (or t_i - y_i . v - vb), out = sum_i w_i y_i,
 *                 sum w_i and sum w_i^2, one read of each factor row y_i;
 *   mf_als_gram_ptr, mf_als_rhs_ptr  the Gram tiles and right-hand side over rows given by
 *                 pointers (the half-step's rows in place when k fills whole 16-float
 *                 lines, else copied into padded lines of its scratch), a chunk at a time.
 *
 * Each output element is the sum the gathered kernels take, operand for operand and in the
 * same order (a dot product is the same eight-lane sum, out[c] += w_i y_i[c] is applied row
 * after row, each Gram entry is one running sum over the rows), so a row solved here has the
 * bits the gathered kernels give it, on every path. Rows of k floats with k not a multiple
 * of 16 (the kernels work on whole 16-float lines) are first copied into a zero-padded line
 * of the caller's scratch: the same operands, so the same bits.
 */
#ifndef MFKIT_ALS_DIRECT_H
#define MFKIT_ALS_DIRECT_H

#include "_als.h"

/* rows of the index list whose factor rows are prefetched ahead of the one being read */
#define MFKIT_ALS_PASS_AHEAD 8

/* Prefetch every cache line of [p, p + nbytes) into L1 (near != 0) or L2 (a row read soon
 * but not next: it should not push the lines in use out of L1). */
static inline void mf_als_prefetch(const void *p, int nbytes, int near)
{
#if defined(__GNUC__)
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, end = (uintptr_t)p + (uintptr_t)nbytes;
    if (near)
        for (; a < end; a += 64) __builtin_prefetch((const void *)a, 0, 3);
    else
        for (; a < end; a += 64) __builtin_prefetch((const void *)a, 0, 2);
#else
    (void)p; (void)nbytes; (void)near;
#endif
}

/* factor row j of Y (n x k, row stride k), or its copy in `line` (ld long, padding zero)
 * when k is short of ld */
#define MF_DIRECT_ROW(T, Y, j, k, ld, line)                                                 \
    ((k) == (ld) ? (Y) + (size_t)(j) * (k)                                                   \
                 : (const T *)memcpy((line), (Y) + (size_t)(j) * (k), (size_t)(k) * sizeof(T)))

/* Returns sum_i w_i^2 (double, 0 unless `residual`) for the n rows idx[0..n) of Y, where
 *   w_i = y_i . v + vb                              (residual == 0)
 *   w_i = t_i - (y_i . v + vb),  t_i = (r_i - mu) - yb[idx_i]   (yb != NULL), else r_i
 * With out != NULL also out = sum_i w_i y_i (out is ld long; entries past k stay zero) and
 * *outb = sum_i w_i. v is ld long and zero past k. `lines` is 8 ld of scratch (used when
 * k < ld, its padding zero); `pf` asks for software prefetch of rows ahead (long rows whose
 * factors are not in cache yet). */
#if MFKIT_HAVE_VEC
/* Rows of a Gram tile: AVX-512 has the 32 registers an 8-row tile's 16 sums need. */
#define MF_GRAM_R_base 4
#define MF_GRAM_R_avx2 4
#define MF_GRAM_R_avx512 8

/* A[r0 + q][c0 + w VN ...] += sum_i rows[i][r0 + q] rows[i][c0 + w VN ...] for q < R, w < W:
 * the sums stay in registers while the rows stream past (one running sum per entry, rows
 * in order, as in mf_als_gram). */
#define MF_GRAM_TILE(T, VT, VN, P, R, W)                                                    \
    {                                                                                        \
        VT acc[R][W];                                                                        \
        _Pragma("GCC unroll 8") for (int q = 0; q < (R); q++)                                \
            _Pragma("GCC unroll 2") for (int w = 0; w < (W); w++)                            \
                memcpy(&acc[q][w], A + (size_t)(r0 + q) * lda + c0 + w * VN, sizeof(VT));    \
        for (int i = 0; i < n; i++) {                                                        \
            const T *y = rows[i];                                                            \
            VT b[W];                                                                         \
            _Pragma("GCC unroll 2") for (int w = 0; w < (W); w++)                            \
                memcpy(&b[w], y + c0 + w * VN, sizeof(VT));                                  \
            _Pragma("GCC unroll 8") for (int q = 0; q < (R); q++) {                          \
                VT s = MF_SPLAT(VT, y[r0 + q]);                                              \
                _Pragma("GCC unroll 2") for (int w = 0; w < (W); w++)                        \
                    acc[q][w] = MF_FMA(VT, P)(s, b[w], acc[q][w]);                           \
            }                                                                                \
        }                                                                                    \
        _Pragma("GCC unroll 8") for (int q = 0; q < (R); q++)                                \
            _Pragma("GCC unroll 2") for (int w = 0; w < (W); w++)                            \
                memcpy(A + (size_t)(r0 + q) * lda + c0 + w * VN, &acc[q][w], sizeof(VT));    \
    }

/* s[q] = hsum8(a[q]) + vb for eight accumulators: the sums of mf_als_hsum8, each rounded
 * alike. The x86 float paths take them for eight rows at once (pairs of 128-bit halves
 * added, then three horizontal adds: lane for lane the additions of mf_als_hsum8). */
#define MF_HSUM8X8_GENERIC(T, SUF, V8, P, HATTR)                                             \
HATTR static inline void mf_als_hsum8x8_##SUF##_##P(const V8 *a, T vb, T *s)                  \
{                                                                                            \
    for (int q = 0; q < 8; q++) s[q] = mf_als_hsum8_##SUF##_##P(a[q]) + vb;                  \
}
MF_HSUM8X8_GENERIC(float, f32, mf_v8sf, base, )
MF_HSUM8X8_GENERIC(double, f64, mf_v8df, base, )
#if MFKIT_ALS_FAST_PATHS
MF_HSUM8X8_GENERIC(double, f64, mf_v8df, avx2, MFKIT_TARGET_AVX2)
MF_HSUM8X8_GENERIC(double, f64, mf_v8df, avx512, MFKIT_TARGET_AVX512)
#define MF_HSUM8X8_F32_X86(P, HATTR)                                                         \
HATTR static inline void mf_als_hsum8x8_f32_##P(const mf_v8sf *a, float vb, float *s)         \
{                                                                                            \
    __m256 h[4];                                                                             \
    for (int q = 0; q < 4; q++) {                                                            \
        __m256 x = (__m256)a[2 * q], y = (__m256)a[2 * q + 1];                               \
        /* [x0+x4, x1+x5, x2+x6, x3+x7 | the same of y] */                                   \
        h[q] = _mm256_add_ps(_mm256_permute2f128_ps(x, y, 0x20),                             \
                             _mm256_permute2f128_ps(x, y, 0x31));                            \
    }                                                                                        \
    /* lanes: rows 0 2 4 6 | 1 3 5 7, each ((x0+x4)+(x1+x5)) + ((x2+x6)+(x3+x7)) */          \
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));      \
    t = _mm256_add_ps(t, _mm256_set1_ps(vb));                                                \
    float u[8];                                                                              \
    _mm256_storeu_ps(u, t);                                                                  \
    s[0] = u[0]; s[2] = u[1]; s[4] = u[2]; s[6] = u[3];                                      \
    s[1] = u[4]; s[3] = u[5]; s[5] = u[6]; s[7] = u[7];                                      \
}
MF_HSUM8X8_F32_X86(avx2, MFKIT_TARGET_AVX2)
MF_HSUM8X8_F32_X86(avx512, MFKIT_TARGET_AVX512)
#endif

#define MFKIT_ALS_DIRECT_PATH(T, SUF, VT, VN, V8, P, ATTR, HATTR)                              \
HATTR static inline T mf_als_target_##SUF##_##P(const float *r, const int32_t *idx, int i,  \
                                                 T mu, const T *yb)                          \
{                                                                                            \
    return yb != NULL ? ((T)r[i] - mu) - yb[idx[i]] : (T)r[i];                               \
}                                                                                            \
                                                                                             \
ATTR static double mf_als_pass_##SUF##_##P(const T *restrict Y, int k, int ld,               \
        const int32_t *restrict idx, const float *restrict r, int n, T mu,                   \
        const T *restrict yb, const T *restrict v, T vb, int residual, T *restrict out,      \
        T *restrict outb, T *restrict lines, int pf)                                         \
{                                                                                            \
    double sse = 0.0;                                                                        \
    T sb = 0;                                                                                \
    if (out != NULL)                                                                         \
        for (int c = 0; c < ld; c++) out[c] = 0;                                             \
    int i = 0;                                                                               \
    for (; i + 8 <= n; i += 8) {                                                             \
        if (pf) {                                                                            \
            for (int q = i + MFKIT_ALS_PASS_AHEAD; q < i + MFKIT_ALS_PASS_AHEAD + 8 && q < n;\
                 q++)                                                                        \
                mf_als_prefetch(Y + (size_t)idx[q] * k, k * (int)sizeof(T), 1);            \
        }                                                                                    \
        const T *y[8];                                                                       \
        for (int q = 0; q < 8; q++) y[q] = MF_DIRECT_ROW(T, Y, idx[i + q], k, ld, lines + q * ld);\
        /* eight rows' dot products at once: eight independent chains of fused steps */      \
        V8 acc[8];                                                                           \
        for (int q = 0; q < 8; q++) acc[q] = (V8){0};                                        \
        for (int f = 0; f < ld; f += 8) {                                                    \
            V8 vv;                                                                           \
            memcpy(&vv, v + f, sizeof(V8));                                                  \
            for (int q = 0; q < 8; q++) {                                                    \
                V8 bq;                                                                       \
                memcpy(&bq, y[q] + f, sizeof(V8));                                           \
                acc[q] = MF_FMA(V8, P)(bq, vv, acc[q]);                                      \
            }                                                                                \
        }                                                                                    \
        T w[8];                                                                              \
        mf_als_hsum8x8_##SUF##_##P(acc, vb, w);                                              \
        if (residual) {                                                                      \
            for (int q = 0; q < 8; q++) {                                                    \
                w[q] = mf_als_target_##SUF##_##P(r, idx, i + q, mu, yb) - w[q];              \
                sse += (double)w[q] * (double)w[q];                                          \
            }                                                                                \
        }                                                                                    \
        for (int q = 0; q < 8; q++) sb += w[q];                                              \
        if (out != NULL) {                                                                   \
            VT sp[8];                                                                        \
            for (int q = 0; q < 8; q++) sp[q] = MF_SPLAT(VT, w[q]);                          \
            for (int c = 0; c < ld; c += VN) {                                               \
                VT o;                                                                        \
                memcpy(&o, out + c, sizeof(VT));                                             \
                for (int q = 0; q < 8; q++) {                                                \
                    VT bq;                                                                   \
                    memcpy(&bq, y[q] + c, sizeof(VT));                                       \
                    o = MF_FMA(VT, P)(sp[q], bq, o);                                         \
                }                                                                            \
                memcpy(out + c, &o, sizeof(VT));                                             \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    for (; i < n; i++) {                                                                     \
        const T *y0 = MF_DIRECT_ROW(T, Y, idx[i], k, ld, lines);                             \
        V8 a0 = {0};                                                                         \
        for (int f = 0; f < ld; f += 8) {                                                    \
            V8 vv, b0;                                                                       \
            memcpy(&vv, v + f, sizeof(V8)); memcpy(&b0, y0 + f, sizeof(V8));                 \
            a0 = MF_FMA(V8, P)(b0, vv, a0);                                                  \
        }                                                                                    \
        T w0 = mf_als_hsum8_##SUF##_##P(a0) + vb;                                            \
        if (residual) {                                                                      \
            w0 = mf_als_target_##SUF##_##P(r, idx, i, mu, yb) - w0;                          \
            sse += (double)w0 * (double)w0;                                                  \
        }                                                                                    \
        sb += w0;                                                                            \
        if (out != NULL) {                                                                   \
            VT s0 = MF_SPLAT(VT, w0);                                                        \
            for (int c = 0; c < ld; c += VN) {                                               \
                VT o, b;                                                                     \
                memcpy(&o, out + c, sizeof(VT));                                             \
                memcpy(&b, y0 + c, sizeof(VT)); o = MF_FMA(VT, P)(s0, b, o);                 \
                memcpy(out + c, &o, sizeof(VT));                                             \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    if (out != NULL) *outb = sb;                                                             \
    return sse;                                                                              \
}                                                                                             \
/* A += sum_i rows[i] rows[i]^T (rows ld long) on tiles of R rows x VN or 2 VN columns  \
 * that cover the upper triangle, the narrow tile where the diagonal crosses (on the       \
 * AVX-512 float path an 8-column one: see the VN == 16 branch). The factor                \
 * rows Y[pf[0..npf)] (k long: the next chunk's) are prefetched into L2 a share per band   \
 * of R rows, so their misses overlap the tiles instead of stalling in one burst. */        \
ATTR static void mf_als_gram_ptr_##SUF##_##P(const T *const *restrict rows, int n, int ld,   \
                                             T *restrict A, int lda, const T *Y,             \
                                             const int32_t *pf, int npf, int k)              \
{                                                                                            \
    const int bands = (ld + MF_GRAM_R_##P - 1) / MF_GRAM_R_##P;                              \
    for (int r0 = 0; r0 < ld; r0 += MF_GRAM_R_##P) {                                         \
        const int band = r0 / MF_GRAM_R_##P;                                                 \
        for (int q = npf * band / bands; q < npf * (band + 1) / bands; q++)                  \
            mf_als_prefetch(Y + (size_t)pf[q] * k, k * (int)sizeof(T), 0);                   \
        if (VN == 16) {                                                                      \
            /* bands of 8 rows start at their diagonal: an 8-column tile (half registers)   \
             * up to the next line, then line-aligned tiles */                               \
            int c0 = r0;                                                                     \
            if (c0 % VN != 0) {                                                              \
                MF_GRAM_TILE(T, V8, 8, P, MF_GRAM_R_##P, 1)                                  \
                c0 += 8;                                                                     \
            }                                                                                \
            for (; c0 + 2 * VN <= ld; c0 += 2 * VN) {                                        \
                MF_GRAM_TILE(T, VT, VN, P, MF_GRAM_R_##P, 2)                                 \
            }                                                                                \
            if (c0 < ld) {                                                                   \
                MF_GRAM_TILE(T, VT, VN, P, MF_GRAM_R_##P, 1)                                 \
            }                                                                                \
            continue;                                                                        \
        }                                                                                    \
        int c0 = (r0 / VN) * VN;                                                             \
        if (c0 % (2 * VN) != 0) {                                                            \
            MF_GRAM_TILE(T, VT, VN, P, MF_GRAM_R_##P, 1)                                     \
            c0 += VN;                                                                        \
        }                                                                                    \
        for (; c0 + 2 * VN <= ld; c0 += 2 * VN) {                                            \
            MF_GRAM_TILE(T, VT, VN, P, MF_GRAM_R_##P, 2)                                     \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* rhs += sum_i t_i rows[i], colsum += sum_i rows[i] (when colsum != NULL), row by row:    \
 * a chunk of the sums mf_als_rhs takes over a whole block. */                               \
ATTR static void mf_als_rhs_ptr_##SUF##_##P(const T *const *restrict rows, int n, int ld,    \
                                            const T *restrict t, T *restrict rhs,            \
                                            T *restrict colsum)                              \
{                                                                                            \
    int i = 0;                                                                               \
    for (; i + 4 <= n; i += 4) {                                                             \
        const T *y0 = rows[i], *y1 = rows[i + 1], *y2 = rows[i + 2], *y3 = rows[i + 3];      \
        VT s0 = MF_SPLAT(VT, t[i]), s1 = MF_SPLAT(VT, t[i + 1]);                             \
        VT s2 = MF_SPLAT(VT, t[i + 2]), s3 = MF_SPLAT(VT, t[i + 3]);                         \
        for (int c = 0; c < ld; c += VN) {                                                   \
            VT o, b0, b1, b2, b3;                                                            \
            memcpy(&b0, y0 + c, sizeof(VT)); memcpy(&b1, y1 + c, sizeof(VT));               \
            memcpy(&b2, y2 + c, sizeof(VT)); memcpy(&b3, y3 + c, sizeof(VT));               \
            memcpy(&o, rhs + c, sizeof(VT));                                                 \
            o = MF_FMA(VT, P)(s0, b0, o); o = MF_FMA(VT, P)(s1, b1, o);                      \
            o = MF_FMA(VT, P)(s2, b2, o); o = MF_FMA(VT, P)(s3, b3, o);                      \
            memcpy(rhs + c, &o, sizeof(VT));                                                 \
            if (colsum != NULL) {                                                            \
                memcpy(&o, colsum + c, sizeof(VT));                                          \
                o = (((o + b0) + b1) + b2) + b3;                                             \
                memcpy(colsum + c, &o, sizeof(VT));                                          \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    for (; i < n; i++) {                                                                     \
        const T *y0 = rows[i];                                                               \
        VT s0 = MF_SPLAT(VT, t[i]);                                                          \
        for (int c = 0; c < ld; c += VN) {                                                   \
            VT o, b0;                                                                        \
            memcpy(&b0, y0 + c, sizeof(VT));                                                 \
            memcpy(&o, rhs + c, sizeof(VT));                                                 \
            o = MF_FMA(VT, P)(s0, b0, o);                                                    \
            memcpy(rhs + c, &o, sizeof(VT));                                                 \
            if (colsum != NULL) {                                                            \
                memcpy(&o, colsum + c, sizeof(VT));                                          \
                o = o + b0;                                                                  \
                memcpy(colsum + c, &o, sizeof(VT));                                          \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}

MFKIT_ALS_DIRECT_PATH(float, f32, mf_v8sf, 8, mf_v8sf, base, MFKIT_CLONES, )
MFKIT_ALS_DIRECT_PATH(double, f64, mf_v4df, 4, mf_v8df, base, MFKIT_CLONES, )
#if MFKIT_ALS_FAST_PATHS
MFKIT_ALS_DIRECT_PATH(float, f32, mf_v8sf, 8, mf_v8sf, avx2, MFKIT_TARGET_AVX2,
                      MFKIT_TARGET_AVX2)
MFKIT_ALS_DIRECT_PATH(double, f64, mf_v4df, 4, mf_v8df, avx2, MFKIT_TARGET_AVX2,
                      MFKIT_TARGET_AVX2)
MFKIT_ALS_DIRECT_PATH(float, f32, mf_v16sf, 16, mf_v8sf, avx512, MFKIT_TARGET_AVX512,
                      MFKIT_TARGET_AVX512)
MFKIT_ALS_DIRECT_PATH(double, f64, mf_v4df, 4, mf_v8df, avx512, MFKIT_TARGET_AVX512,
                      MFKIT_TARGET_AVX512)
#endif

#else /* !MFKIT_HAVE_VEC: each row copied into a padded line, then the plain kernels */
#define MFKIT_ALS_DIRECT_PLAIN(T, SUF)                                                      \
static double mf_als_pass_##SUF##_base(const T *Y, int k, int ld, const int32_t *idx,        \
        const float *r, int n, T mu, const T *yb, const T *v, T vb, int residual, T *out,    \
        T *outb, T *lines, int pf)                                                           \
{                                                                                            \
    double sse = 0.0;                                                                        \
    T sb = 0;                                                                                \
    (void)pf;                                                                                \
    if (out != NULL)                                                                         \
        for (int c = 0; c < ld; c++) out[c] = 0;                                             \
    for (int i = 0; i < n; i++) {                                                            \
        const T *y = MF_DIRECT_ROW(T, Y, idx[i], k, ld, lines);                              \
        T w = mf_als_dot_##SUF(y, v, ld) + vb;                                               \
        if (residual) {                                                                      \
            T t = yb != NULL ? ((T)r[i] - mu) - yb[idx[i]] : (T)r[i];                        \
            w = t - w;                                                                       \
            sse += (double)w * (double)w;                                                    \
        }                                                                                    \
        sb += w;                                                                             \
        if (out != NULL)                                                                     \
            for (int c = 0; c < ld; c++) out[c] += w * y[c];                                 \
    }                                                                                        \
    if (out != NULL) *outb = sb;                                                             \
    return sse;                                                                              \
}                                                                                             \
static void mf_als_gram_ptr_##SUF##_base(const T *const *rows, int n, int ld, T *A, int lda, \
                                         const T *Y, const int32_t *pf, int npf, int k)      \
{                                                                                            \
    (void)Y; (void)pf; (void)npf; (void)k;                                                   \
    for (int r0 = 0; r0 < ld; r0 += 4)                                                       \
        for (int c0 = (r0 / 8) * 8; c0 < ld; c0 += 8)                                        \
            for (int i = 0; i < n; i++)                                                      \
                for (int r = r0; r < r0 + 4; r++)                                            \
                    for (int c = c0; c < c0 + 8; c++)                                        \
                        A[(size_t)r * lda + c] += rows[i][r] * rows[i][c];                   \
}                                                                                            \
static void mf_als_rhs_ptr_##SUF##_base(const T *const *rows, int n, int ld, const T *t,     \
                                        T *rhs, T *colsum)                                   \
{                                                                                            \
    for (int i = 0; i < n; i++)                                                              \
        for (int c = 0; c < ld; c++) {                                                       \
            rhs[c] += t[i] * rows[i][c];                                                     \
            if (colsum != NULL) colsum[c] += rows[i][c];                                     \
        }                                                                                    \
}
MFKIT_ALS_DIRECT_PLAIN(float, f32)
MFKIT_ALS_DIRECT_PLAIN(double, f64)
#endif

#define MFKIT_ALS_DIRECT_DISPATCH(T, SUF)                                                   \
static inline void mf_als_gram_ptr_##SUF(int isa, const T *const *rows, int n, int ld, T *A, \
                                         int lda, const T *Y, const int32_t *pf, int npf,    \
                                         int k)                                              \
{ MFKIT_ALS_PICK(isa, mf_als_gram_ptr_##SUF, rows, n, ld, A, lda, Y, pf, npf, k); }          \
static inline void mf_als_rhs_ptr_##SUF(int isa, const T *const *rows, int n, int ld,        \
                                        const T *t, T *rhs, T *colsum)                       \
{ MFKIT_ALS_PICK(isa, mf_als_rhs_ptr_##SUF, rows, n, ld, t, rhs, colsum); }                  \
static inline double mf_als_pass_##SUF(int isa, const T *Y, int k, int ld,                   \
        const int32_t *idx, const float *r, int n, T mu, const T *yb, const T *v, T vb,      \
        int residual, T *out, T *outb, T *lines, int pf)                                     \
{                                                                                            \
    return MFKIT_ALS_PICK(isa, mf_als_pass_##SUF, Y, k, ld, idx, r, n, mu, yb, v, vb,        \
                          residual, out, outb, lines, pf);                                   \
}
MFKIT_ALS_DIRECT_DISPATCH(float, f32)
MFKIT_ALS_DIRECT_DISPATCH(double, f64)

#endif /* MFKIT_ALS_DIRECT_H */
