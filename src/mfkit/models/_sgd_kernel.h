/* The fused SGD sweep of mfkit's fast kernel paths (AVX2+FMA, AVX-512 and aarch64 NEON).
 *
 * One pass per rating does the dot product, the residual, the bias steps, both row steps
 * and the AdaGrad accumulators, with the two factor rows loaded once into vector
 * registers (k = 16, 32, 64, 128 have bodies with the row length fixed at compile time;
 * any other k runs a generic body with a masked tail). The update is the one of
 * _sgd.pyx's portable sweep (see its docstring); only the rounding differs:
 *
 *   - every sum over the k coordinates (the dot product p.q and the squared gradient norms
 *     of AdaGrad) has 16 partial sums, coordinate f going to lane f mod 16, each lane
 *     accumulated with a fused multiply-add in increasing f, then combined in the fixed tree
 *     s8[j] = a[j] + a[j+8], s4[j] = s8[j] + s8[j+4], s2[j] = s4[j] + s4[j+2], s2[0] + s2[1];
 *   - a row step is d = e q - (reg p [+ prior (p - p0)]) with the product e q fused into
 *     the subtraction, then p + step d as one fused multiply-add (and so for q);
 *   - the scalar part (prediction, residual, loss, bias and accumulator steps) is the
 *     portable sweep's, operation for operation.
 *
 * The AVX2 path holds a 16-lane chunk in two (float) or four (double) 256-bit registers,
 * the AVX-512 path in one or two 512-bit registers, the NEON path in four (float) or eight
 * (double) 128-bit registers; each lane sees the same operations in the same order, the
 * reduction trees are the same, and the scalar part's square roots and divisions are
 * correctly rounded on all three, so the three paths give bit-identical results. They
 * differ from the portable (baseline) path, which has eight partial sums and rounds every
 * product separately, by a few units in the last place per step.
 *
 * The body is written once in _sgd_kernel_body.h and compiled here for each path and
 * dtype of the build's architecture (avx2 and avx512 on x86-64, neon on aarch64);
 * mfk_sgd_sweep_f32/_f64 dispatch on the `isa` argument (MFKIT_ISA_AVX2, MFKIT_ISA_AVX512
 * or MFKIT_ISA_NEON; the caller runs its portable sweep for MFKIT_ISA_BASELINE and must
 * not pass a path the build or CPU lacks: mfkit_isa_runs).
 */
#ifndef MFKIT_SGD_KERNEL_H
#define MFKIT_SGD_KERNEL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#include "_isa.h"

/* One rating as the kernels read it (mfkit.models.sgd.RATING_DTYPE, 12 bytes). */
typedef struct {
    int32_t u;
    int32_t i;
    float r;
} mfk_rating;

/* The state and settings of one sweep. bu, bi are only read when `biases`; P0 == NULL means
 * no prior; Gp == NULL means plain steps (else Gp, Gq and, with biases, Gbu, Gbi are the
 * AdaGrad accumulators). */
#define MFK_DEFINE_ARGS(T, S)                                                            \
    typedef struct {                                                                     \
        T *P, *Q, *bu, *bi;                                                              \
        const T *P0, *Q0;                                                                \
        T *Gp, *Gq, *Gbu, *Gbi;                                                          \
        T mu, lr, reg, reg_bias, prior, delta;                                           \
        int k, biases, loss;                                                             \
        ptrdiff_t ss; /* stride of the per-row scalars bu, Gbu, Gp (bi, Gbi, Gq): 1 when  \
                         they are separate arrays, 4 when packed one row per 16/32 bytes */ \
    } mfk_sgd_##S;
MFK_DEFINE_ARGS(float, f32)
MFK_DEFINE_ARGS(double, f64)

/* Fill an argument block field by field (the one place that knows its layout). */
#define MFK_DEFINE_FILL(T, S)                                                            \
    static inline void mfk_sgd_fill_##S(mfk_sgd_##S *a, T *P, T *Q, T *bu, T *bi,         \
                                        const T *P0, const T *Q0, T *Gp, T *Gq, T *Gbu,   \
                                        T *Gbi, T mu, T lr, T reg, T reg_bias, T prior,   \
                                        T delta, int k, int biases, int loss,             \
                                        ptrdiff_t ss)                                     \
    {                                                                                    \
        a->P = P; a->Q = Q; a->bu = bu; a->bi = bi; a->P0 = P0; a->Q0 = Q0;               \
        a->Gp = Gp; a->Gq = Gq; a->Gbu = Gbu; a->Gbi = Gbi;                               \
        a->mu = mu; a->lr = lr; a->reg = reg; a->reg_bias = reg_bias; a->prior = prior;   \
        a->delta = delta; a->k = k; a->biases = biases; a->loss = loss; a->ss = ss;       \
    }
MFK_DEFINE_FILL(float, f32)
MFK_DEFINE_FILL(double, f64)

/* Fisher-Yates shuffle of recs[0:n] driven by splitmix64 from `seed`, position j (from the
 * end) swapped with a uniform r in [0, j] by Lemire's nearly divisionless method: the
 * permutation of mfkit._core._common's shuffles, written here so that the generator inlines
 * into the loop (a call per record into another module cost a fifth of an epoch). */
static inline uint64_t mfk_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t mfk_bounded(uint64_t *state, uint64_t n)
{
    unsigned __int128 m = (unsigned __int128)mfk_splitmix64(state) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t t = (0 - n) % n;
        while (lo < t) {
            m = (unsigned __int128)mfk_splitmix64(state) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

static void mfk_shuffle_records(void *records, ptrdiff_t n, uint64_t seed)
{
    mfk_rating *recs = (mfk_rating *)records;
    uint64_t state = seed;
    for (ptrdiff_t j = n - 1; j > 0; j--) {
        ptrdiff_t r = (ptrdiff_t)mfk_bounded(&state, (uint64_t)(j + 1));
        mfk_rating tmp = recs[j];
        recs[j] = recs[r];
        recs[r] = tmp;
    }
}

/* A uniform permutation of a[0:n] (Fisher-Yates driven by splitmix64 from *state: position
 * j, from the end, swapped with a uniform r in [0, j], as in mfk_shuffle_records); *state
 * is left where the shuffle ended. */
static void mfk_shuffle_i32(int32_t *a, ptrdiff_t n, uint64_t *state)
{
    for (ptrdiff_t j = n - 1; j > 0; j--) {
        ptrdiff_t r = (ptrdiff_t)mfk_bounded(state, (uint64_t)(j + 1));
        int32_t tmp = a[j];
        a[j] = a[r];
        a[r] = tmp;
    }
}

/* Users of a row-grouped block are shuffled in chunks of this many consecutive entries of
 * its ascending user list. A user's visit reads its factor row, its run starts, its ratings
 * and its scalars at scattered places; with the users of a chunk (mostly consecutive ids:
 * users join groups in runs of GROUP_CHUNK = 16, mfkit.models._blocks) visited one after
 * the other, those reads fall on shared cache lines and pages and in streams the hardware
 * prefetcher follows. Measured on Zen 4 (k=64, float32, AdaGrad, one kernel epoch, chunks
 * of 1 and 16 alternated in one process): 1.05-1.10x on two threads and 1.08x on one on
 * the MovieLens-10M shape, 1.06x on two and 1.27x on one on the Netflix shape (whose user
 * rows do not fit the last level cache); chunks of 64 were no faster there than 16. Held-out
 * RMSE was unchanged (real MovieLens-100K, 10 folds; synthetic 1M and 10M shapes, several
 * seeds).
 * sgd_rows_epoch's user_chunk=1 is the earlier order (one shuffle of all the users). */
#define MFK_USER_CHUNK 16

/* The visiting order of one block of the row-grouped epoch (mfkit.models._sgd,
 * `sgd_rows_epoch`, with shuffle): order[0:n] gets the block's users users[0:n] (given in
 * ascending order), the list cut into chunks of C >= 1 (MFK_USER_CHUNK in a fit) consecutive
 * entries (the last one shorter when n is not a multiple), the chunk numbers put in a
 * uniform order (mfk_shuffle_i32 on chunks[0:nc], nc = ceil(n / C), scratch), then chunk by
 * chunk in that order its users, each chunk's users in a uniform order of their own: all
 * the draws from *state in that order, which is left where the last shuffle ended so that
 * the per-user draws continue the same stream. */
static void mfk_order_users(int32_t *order, int32_t *chunks, const int32_t *users,
                            ptrdiff_t n, ptrdiff_t C, uint64_t *state)
{
    const ptrdiff_t nc = (n + C - 1) / C;
    ptrdiff_t o = 0;
    for (ptrdiff_t c = 0; c < nc; c++) chunks[c] = (int32_t)c;
    mfk_shuffle_i32(chunks, nc, state);
    for (ptrdiff_t c = 0; c < nc; c++) {
        const ptrdiff_t lo = (ptrdiff_t)chunks[c] * C, len = n - lo < C ? n - lo : C;
        memcpy(order + o, users + lo, (size_t)len * sizeof(int32_t));
        mfk_shuffle_i32(order + o, len, state);
        o += len;
    }
}

/* One block of the row-grouped epoch for the fast paths: the users order[0:n] in their
 * visiting order, and for user u its ratings indices/values[seg[u*stride + h] ..
 * seg[u*stride + h + 1]) visited as a rotation: with `shuffle`, one splitmix64 draw x per
 * user from `state` (continuing the stream of the user shuffle) gives the start
 * ((x >> 32) * m) >> 32 of the m ratings and the direction (x odd: backwards); without,
 * forwards from the first. (_sgd.pyx's `_rows_pair` is the same order for the other
 * cases.) */
typedef struct {
    const int32_t *order;
    ptrdiff_t n;
    const int64_t *seg;
    ptrdiff_t stride, h;
    const int32_t *indices;
    const float *values;
    uint64_t state;
    int shuffle;
} mfk_rows;

/* users ahead whose rows and scalars the row-grouped block prefetches (their ratings'
 * start half as many ahead) */
#define MFK_USERS_AHEAD 8

/* Ratings ahead of the current one whose rows are prefetched (as in the portable sweep; 4
 * and 16 timed the same as 8 within the noise of a shared two-core machine, k = 64, on the
 * 1M and 10M synthetic sets with their block layouts). */
#define MFK_PREFETCH_AHEAD 8

#if MFKIT_HAVE_X86_PATHS || MFKIT_HAVE_NEON_PATHS
#define MFK_AI static inline __attribute__((always_inline))
#endif

#if MFKIT_HAVE_X86_PATHS
#include <immintrin.h>

/* ---- the four 16-lane chunk types and their operations --------------------------------
 * load/store (16 values), loadm/storem (the first r of 16; the others read as 0 and are
 * not written), set1, zero, fma(a, b, c) = a b + c, fms(a, b, c) = a b - c, mul, sub, and
 * red (the fixed reduction tree of the header comment). */

/* Registers per 16-lane chunk and registers of the path: a body keeps both rows in
 * registers only when they take at most half of them (else spills would cost more than
 * reading the rows again from the first level cache). */
#define avx512_f32_VPC 1
#define avx512_f64_VPC 2
#define avx2_f32_VPC 2
#define avx2_f64_VPC 4
#define avx512_REGS 32
#define avx2_REGS 16

/* AVX-512, float: one register */
typedef struct { __m512 v; } avx512_f32_c16;
typedef struct { __mmask16 m; } avx512_f32_mask;
#define MFK_T512 MFKIT_TARGET_AVX512 MFK_AI
MFK_T512 avx512_f32_mask avx512_f32_mk(int r) { avx512_f32_mask m = {(__mmask16)((1u << r) - 1u)}; return m; }
MFK_T512 avx512_f32_c16 avx512_f32_load(const float *p) { avx512_f32_c16 c = {_mm512_loadu_ps(p)}; return c; }
MFK_T512 avx512_f32_c16 avx512_f32_loadm(const float *p, avx512_f32_mask m) { avx512_f32_c16 c = {_mm512_maskz_loadu_ps(m.m, p)}; return c; }
MFK_T512 void avx512_f32_store(float *p, avx512_f32_c16 c) { _mm512_storeu_ps(p, c.v); }
MFK_T512 void avx512_f32_storem(float *p, avx512_f32_mask m, avx512_f32_c16 c) { _mm512_mask_storeu_ps(p, m.m, c.v); }
MFK_T512 avx512_f32_c16 avx512_f32_set1(float x) { avx512_f32_c16 c = {_mm512_set1_ps(x)}; return c; }
MFK_T512 avx512_f32_c16 avx512_f32_zero(void) { avx512_f32_c16 c = {_mm512_setzero_ps()}; return c; }
MFK_T512 avx512_f32_c16 avx512_f32_fma(avx512_f32_c16 a, avx512_f32_c16 b, avx512_f32_c16 c) { c.v = _mm512_fmadd_ps(a.v, b.v, c.v); return c; }
MFK_T512 avx512_f32_c16 avx512_f32_fms(avx512_f32_c16 a, avx512_f32_c16 b, avx512_f32_c16 c) { c.v = _mm512_fmsub_ps(a.v, b.v, c.v); return c; }
MFK_T512 avx512_f32_c16 avx512_f32_mul(avx512_f32_c16 a, avx512_f32_c16 b) { a.v = _mm512_mul_ps(a.v, b.v); return a; }
MFK_T512 avx512_f32_c16 avx512_f32_sub(avx512_f32_c16 a, avx512_f32_c16 b) { a.v = _mm512_sub_ps(a.v, b.v); return a; }
MFK_T512 float avx512_f32_red(avx512_f32_c16 a)
{
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a.v), _mm512_extractf32x8_ps(a.v, 1));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

/* AVX-512, double: lanes 0-7 in a, 8-15 in b */
typedef struct { __m512d a, b; } avx512_f64_c16;
typedef struct { __mmask8 a, b; } avx512_f64_mask;
MFK_T512 avx512_f64_mask avx512_f64_mk(int r)
{
    avx512_f64_mask m;
    m.a = (__mmask8)(r >= 8 ? 0xFFu : (1u << r) - 1u);
    m.b = (__mmask8)(r <= 8 ? 0u : (1u << (r - 8)) - 1u);
    return m;
}
MFK_T512 avx512_f64_c16 avx512_f64_load(const double *p) { avx512_f64_c16 c = {_mm512_loadu_pd(p), _mm512_loadu_pd(p + 8)}; return c; }
MFK_T512 avx512_f64_c16 avx512_f64_loadm(const double *p, avx512_f64_mask m) { avx512_f64_c16 c = {_mm512_maskz_loadu_pd(m.a, p), _mm512_maskz_loadu_pd(m.b, p + 8)}; return c; }
MFK_T512 void avx512_f64_store(double *p, avx512_f64_c16 c) { _mm512_storeu_pd(p, c.a); _mm512_storeu_pd(p + 8, c.b); }
MFK_T512 void avx512_f64_storem(double *p, avx512_f64_mask m, avx512_f64_c16 c) { _mm512_mask_storeu_pd(p, m.a, c.a); _mm512_mask_storeu_pd(p + 8, m.b, c.b); }
MFK_T512 avx512_f64_c16 avx512_f64_set1(double x) { avx512_f64_c16 c = {_mm512_set1_pd(x), _mm512_set1_pd(x)}; return c; }
MFK_T512 avx512_f64_c16 avx512_f64_zero(void) { avx512_f64_c16 c = {_mm512_setzero_pd(), _mm512_setzero_pd()}; return c; }
MFK_T512 avx512_f64_c16 avx512_f64_fma(avx512_f64_c16 a, avx512_f64_c16 b, avx512_f64_c16 c) { c.a = _mm512_fmadd_pd(a.a, b.a, c.a); c.b = _mm512_fmadd_pd(a.b, b.b, c.b); return c; }
MFK_T512 avx512_f64_c16 avx512_f64_fms(avx512_f64_c16 a, avx512_f64_c16 b, avx512_f64_c16 c) { c.a = _mm512_fmsub_pd(a.a, b.a, c.a); c.b = _mm512_fmsub_pd(a.b, b.b, c.b); return c; }
MFK_T512 avx512_f64_c16 avx512_f64_mul(avx512_f64_c16 a, avx512_f64_c16 b) { a.a = _mm512_mul_pd(a.a, b.a); a.b = _mm512_mul_pd(a.b, b.b); return a; }
MFK_T512 avx512_f64_c16 avx512_f64_sub(avx512_f64_c16 a, avx512_f64_c16 b) { a.a = _mm512_sub_pd(a.a, b.a); a.b = _mm512_sub_pd(a.b, b.b); return a; }
MFK_T512 double avx512_f64_red(avx512_f64_c16 a)
{
    __m512d s8 = _mm512_add_pd(a.a, a.b);
    __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

/* AVX2, float: lanes 0-7 in a, 8-15 in b */
#define MFK_T256 MFKIT_TARGET_AVX2 MFK_AI
typedef struct { __m256 a, b; } avx2_f32_c16;
typedef struct { __m256i a, b; } avx2_f32_mask;
MFK_T256 avx2_f32_mask avx2_f32_mk(int r)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    avx2_f32_mask m;
    m.a = _mm256_cmpgt_epi32(_mm256_set1_epi32(r), lane);
    m.b = _mm256_cmpgt_epi32(_mm256_set1_epi32(r - 8), lane);
    return m;
}
MFK_T256 avx2_f32_c16 avx2_f32_load(const float *p) { avx2_f32_c16 c = {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; return c; }
MFK_T256 avx2_f32_c16 avx2_f32_loadm(const float *p, avx2_f32_mask m) { avx2_f32_c16 c = {_mm256_maskload_ps(p, m.a), _mm256_maskload_ps(p + 8, m.b)}; return c; }
MFK_T256 void avx2_f32_store(float *p, avx2_f32_c16 c) { _mm256_storeu_ps(p, c.a); _mm256_storeu_ps(p + 8, c.b); }
MFK_T256 void avx2_f32_storem(float *p, avx2_f32_mask m, avx2_f32_c16 c) { _mm256_maskstore_ps(p, m.a, c.a); _mm256_maskstore_ps(p + 8, m.b, c.b); }
MFK_T256 avx2_f32_c16 avx2_f32_set1(float x) { avx2_f32_c16 c = {_mm256_set1_ps(x), _mm256_set1_ps(x)}; return c; }
MFK_T256 avx2_f32_c16 avx2_f32_zero(void) { avx2_f32_c16 c = {_mm256_setzero_ps(), _mm256_setzero_ps()}; return c; }
MFK_T256 avx2_f32_c16 avx2_f32_fma(avx2_f32_c16 a, avx2_f32_c16 b, avx2_f32_c16 c) { c.a = _mm256_fmadd_ps(a.a, b.a, c.a); c.b = _mm256_fmadd_ps(a.b, b.b, c.b); return c; }
MFK_T256 avx2_f32_c16 avx2_f32_fms(avx2_f32_c16 a, avx2_f32_c16 b, avx2_f32_c16 c) { c.a = _mm256_fmsub_ps(a.a, b.a, c.a); c.b = _mm256_fmsub_ps(a.b, b.b, c.b); return c; }
MFK_T256 avx2_f32_c16 avx2_f32_mul(avx2_f32_c16 a, avx2_f32_c16 b) { a.a = _mm256_mul_ps(a.a, b.a); a.b = _mm256_mul_ps(a.b, b.b); return a; }
MFK_T256 avx2_f32_c16 avx2_f32_sub(avx2_f32_c16 a, avx2_f32_c16 b) { a.a = _mm256_sub_ps(a.a, b.a); a.b = _mm256_sub_ps(a.b, b.b); return a; }
MFK_T256 float avx2_f32_red(avx2_f32_c16 a)
{
    __m256 s8 = _mm256_add_ps(a.a, a.b);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

/* AVX2, double: lanes 0-3 in a, 4-7 in b, 8-11 in c, 12-15 in d */
typedef struct { __m256d a, b, c, d; } avx2_f64_c16;
typedef struct { __m256i a, b, c, d; } avx2_f64_mask;
MFK_T256 avx2_f64_mask avx2_f64_mk(int r)
{
    const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
    avx2_f64_mask m;
    m.a = _mm256_cmpgt_epi64(_mm256_set1_epi64x(r), lane);
    m.b = _mm256_cmpgt_epi64(_mm256_set1_epi64x(r - 4), lane);
    m.c = _mm256_cmpgt_epi64(_mm256_set1_epi64x(r - 8), lane);
    m.d = _mm256_cmpgt_epi64(_mm256_set1_epi64x(r - 12), lane);
    return m;
}
MFK_T256 avx2_f64_c16 avx2_f64_load(const double *p) { avx2_f64_c16 c = {_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4), _mm256_loadu_pd(p + 8), _mm256_loadu_pd(p + 12)}; return c; }
MFK_T256 avx2_f64_c16 avx2_f64_loadm(const double *p, avx2_f64_mask m) { avx2_f64_c16 c = {_mm256_maskload_pd(p, m.a), _mm256_maskload_pd(p + 4, m.b), _mm256_maskload_pd(p + 8, m.c), _mm256_maskload_pd(p + 12, m.d)}; return c; }
MFK_T256 void avx2_f64_store(double *p, avx2_f64_c16 c) { _mm256_storeu_pd(p, c.a); _mm256_storeu_pd(p + 4, c.b); _mm256_storeu_pd(p + 8, c.c); _mm256_storeu_pd(p + 12, c.d); }
MFK_T256 void avx2_f64_storem(double *p, avx2_f64_mask m, avx2_f64_c16 c) { _mm256_maskstore_pd(p, m.a, c.a); _mm256_maskstore_pd(p + 4, m.b, c.b); _mm256_maskstore_pd(p + 8, m.c, c.c); _mm256_maskstore_pd(p + 12, m.d, c.d); }
MFK_T256 avx2_f64_c16 avx2_f64_set1(double x) { __m256d v = _mm256_set1_pd(x); avx2_f64_c16 c = {v, v, v, v}; return c; }
MFK_T256 avx2_f64_c16 avx2_f64_zero(void) { __m256d v = _mm256_setzero_pd(); avx2_f64_c16 c = {v, v, v, v}; return c; }
MFK_T256 avx2_f64_c16 avx2_f64_fma(avx2_f64_c16 a, avx2_f64_c16 b, avx2_f64_c16 c)
{
    c.a = _mm256_fmadd_pd(a.a, b.a, c.a); c.b = _mm256_fmadd_pd(a.b, b.b, c.b);
    c.c = _mm256_fmadd_pd(a.c, b.c, c.c); c.d = _mm256_fmadd_pd(a.d, b.d, c.d);
    return c;
}
MFK_T256 avx2_f64_c16 avx2_f64_fms(avx2_f64_c16 a, avx2_f64_c16 b, avx2_f64_c16 c)
{
    c.a = _mm256_fmsub_pd(a.a, b.a, c.a); c.b = _mm256_fmsub_pd(a.b, b.b, c.b);
    c.c = _mm256_fmsub_pd(a.c, b.c, c.c); c.d = _mm256_fmsub_pd(a.d, b.d, c.d);
    return c;
}
MFK_T256 avx2_f64_c16 avx2_f64_mul(avx2_f64_c16 a, avx2_f64_c16 b)
{
    a.a = _mm256_mul_pd(a.a, b.a); a.b = _mm256_mul_pd(a.b, b.b);
    a.c = _mm256_mul_pd(a.c, b.c); a.d = _mm256_mul_pd(a.d, b.d);
    return a;
}
MFK_T256 avx2_f64_c16 avx2_f64_sub(avx2_f64_c16 a, avx2_f64_c16 b)
{
    a.a = _mm256_sub_pd(a.a, b.a); a.b = _mm256_sub_pd(a.b, b.b);
    a.c = _mm256_sub_pd(a.c, b.c); a.d = _mm256_sub_pd(a.d, b.d);
    return a;
}
MFK_T256 double avx2_f64_red(avx2_f64_c16 a)
{
    /* s8 = (a + c, b + d): lane j + lane j+8; then lane j + j+4, j + j+2, j + j+1 */
    __m256d s4 = _mm256_add_pd(_mm256_add_pd(a.a, a.c), _mm256_add_pd(a.b, a.d));
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

/* The AdaGrad steps lr / sqrt(G) of [p_u, q_i, b_u, b_i], packed: one square root and one
 * division of four lanes instead of four of each (the divider would otherwise limit small
 * k); both are correctly rounded, so the bits are the portable sweep's. */
MFK_AI void mfk_steps_f32(float lr, float g0, float g1, float g2, float g3, float *out)
{
    _mm_storeu_ps(out, _mm_div_ps(_mm_set1_ps(lr), _mm_sqrt_ps(_mm_set_ps(g3, g2, g1, g0))));
}
MFK_AI void mfk_steps_f64(double lr, double g0, double g1, double g2, double g3, double *out)
{
    __m128d l = _mm_set1_pd(lr);
    _mm_storeu_pd(out, _mm_div_pd(l, _mm_sqrt_pd(_mm_set_pd(g1, g0))));
    _mm_storeu_pd(out + 2, _mm_div_pd(l, _mm_sqrt_pd(_mm_set_pd(g3, g2))));
}
#endif /* MFKIT_HAVE_X86_PATHS */

#if MFKIT_HAVE_NEON_PATHS
#include <arm_neon.h>
#include <string.h>

/* ---- the NEON chunk types (aarch64) -------------------------------------------------
 * The operations of the x86 chunk types, lane for lane: vfmaq is the fused a b + c, and
 * fms(a, b, c) = a b - c is the fused multiply-add of a b and -c (vfmsq would give
 * c - a b, whose negation differs from a b - c in the sign of an exact zero). There is no
 * masked load or store: loadm/storem copy the first r values through a zeroed buffer, so
 * nothing past them is read or written (the generic body's tail only). 32 registers of
 * 128 bits. */
#define neon_f32_VPC 4
#define neon_f64_VPC 8
#define neon_REGS 32

/* float: lanes 4j..4j+3 in v[j] */
typedef struct { float32x4_t v[4]; } neon_f32_c16;
typedef struct { int r; } neon_f32_mask;
MFK_AI neon_f32_mask neon_f32_mk(int r) { neon_f32_mask m = {r}; return m; }
MFK_AI neon_f32_c16 neon_f32_load(const float *p)
{
    neon_f32_c16 c = {{vld1q_f32(p), vld1q_f32(p + 4), vld1q_f32(p + 8), vld1q_f32(p + 12)}};
    return c;
}
MFK_AI void neon_f32_store(float *p, neon_f32_c16 c)
{
    vst1q_f32(p, c.v[0]); vst1q_f32(p + 4, c.v[1]); vst1q_f32(p + 8, c.v[2]); vst1q_f32(p + 12, c.v[3]);
}
MFK_AI neon_f32_c16 neon_f32_loadm(const float *p, neon_f32_mask m)
{
    float buf[16] = {0};
    memcpy(buf, p, (size_t)m.r * sizeof(float));
    return neon_f32_load(buf);
}
MFK_AI void neon_f32_storem(float *p, neon_f32_mask m, neon_f32_c16 c)
{
    float buf[16];
    neon_f32_store(buf, c);
    memcpy(p, buf, (size_t)m.r * sizeof(float));
}
MFK_AI neon_f32_c16 neon_f32_set1(float x)
{
    float32x4_t v = vdupq_n_f32(x);
    neon_f32_c16 c = {{v, v, v, v}};
    return c;
}
MFK_AI neon_f32_c16 neon_f32_zero(void) { return neon_f32_set1(0.0f); }
MFK_AI neon_f32_c16 neon_f32_fma(neon_f32_c16 a, neon_f32_c16 b, neon_f32_c16 c)
{
    for (int j = 0; j < 4; j++) c.v[j] = vfmaq_f32(c.v[j], a.v[j], b.v[j]);
    return c;
}
MFK_AI neon_f32_c16 neon_f32_fms(neon_f32_c16 a, neon_f32_c16 b, neon_f32_c16 c)
{
    for (int j = 0; j < 4; j++) c.v[j] = vfmaq_f32(vnegq_f32(c.v[j]), a.v[j], b.v[j]);
    return c;
}
MFK_AI neon_f32_c16 neon_f32_mul(neon_f32_c16 a, neon_f32_c16 b)
{
    for (int j = 0; j < 4; j++) a.v[j] = vmulq_f32(a.v[j], b.v[j]);
    return a;
}
MFK_AI neon_f32_c16 neon_f32_sub(neon_f32_c16 a, neon_f32_c16 b)
{
    for (int j = 0; j < 4; j++) a.v[j] = vsubq_f32(a.v[j], b.v[j]);
    return a;
}
MFK_AI float neon_f32_red(neon_f32_c16 a)
{
    /* s8 = (v0 + v2, v1 + v3): lane j + lane j+8; s4 = lane j + j+4; s2 = j + j+2 */
    float32x4_t s4 = vaddq_f32(vaddq_f32(a.v[0], a.v[2]), vaddq_f32(a.v[1], a.v[3]));
    float32x2_t s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
    return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
}

/* double: lanes 2j, 2j+1 in v[j] */
typedef struct { float64x2_t v[8]; } neon_f64_c16;
typedef struct { int r; } neon_f64_mask;
MFK_AI neon_f64_mask neon_f64_mk(int r) { neon_f64_mask m = {r}; return m; }
MFK_AI neon_f64_c16 neon_f64_load(const double *p)
{
    neon_f64_c16 c;
    for (int j = 0; j < 8; j++) c.v[j] = vld1q_f64(p + 2 * j);
    return c;
}
MFK_AI void neon_f64_store(double *p, neon_f64_c16 c)
{
    for (int j = 0; j < 8; j++) vst1q_f64(p + 2 * j, c.v[j]);
}
MFK_AI neon_f64_c16 neon_f64_loadm(const double *p, neon_f64_mask m)
{
    double buf[16] = {0};
    memcpy(buf, p, (size_t)m.r * sizeof(double));
    return neon_f64_load(buf);
}
MFK_AI void neon_f64_storem(double *p, neon_f64_mask m, neon_f64_c16 c)
{
    double buf[16];
    neon_f64_store(buf, c);
    memcpy(p, buf, (size_t)m.r * sizeof(double));
}
MFK_AI neon_f64_c16 neon_f64_set1(double x)
{
    neon_f64_c16 c;
    for (int j = 0; j < 8; j++) c.v[j] = vdupq_n_f64(x);
    return c;
}
MFK_AI neon_f64_c16 neon_f64_zero(void) { return neon_f64_set1(0.0); }
MFK_AI neon_f64_c16 neon_f64_fma(neon_f64_c16 a, neon_f64_c16 b, neon_f64_c16 c)
{
    for (int j = 0; j < 8; j++) c.v[j] = vfmaq_f64(c.v[j], a.v[j], b.v[j]);
    return c;
}
MFK_AI neon_f64_c16 neon_f64_fms(neon_f64_c16 a, neon_f64_c16 b, neon_f64_c16 c)
{
    for (int j = 0; j < 8; j++) c.v[j] = vfmaq_f64(vnegq_f64(c.v[j]), a.v[j], b.v[j]);
    return c;
}
MFK_AI neon_f64_c16 neon_f64_mul(neon_f64_c16 a, neon_f64_c16 b)
{
    for (int j = 0; j < 8; j++) a.v[j] = vmulq_f64(a.v[j], b.v[j]);
    return a;
}
MFK_AI neon_f64_c16 neon_f64_sub(neon_f64_c16 a, neon_f64_c16 b)
{
    for (int j = 0; j < 8; j++) a.v[j] = vsubq_f64(a.v[j], b.v[j]);
    return a;
}
MFK_AI double neon_f64_red(neon_f64_c16 a)
{
    /* s8[j] = lane j + lane j+8 (v[i] + v[i+4]); s4 = j + j+4; s2 = j + j+2 (one register) */
    float64x2_t s4lo = vaddq_f64(vaddq_f64(a.v[0], a.v[4]), vaddq_f64(a.v[2], a.v[6]));
    float64x2_t s4hi = vaddq_f64(vaddq_f64(a.v[1], a.v[5]), vaddq_f64(a.v[3], a.v[7]));
    float64x2_t s2 = vaddq_f64(s4lo, s4hi);
    return vgetq_lane_f64(s2, 0) + vgetq_lane_f64(s2, 1);
}

/* The AdaGrad steps (see the x86 ones): vsqrtq and vdivq round correctly, as SSE does. */
MFK_AI void mfk_steps_f32(float lr, float g0, float g1, float g2, float g3, float *out)
{
    const float g[4] = {g0, g1, g2, g3};
    vst1q_f32(out, vdivq_f32(vdupq_n_f32(lr), vsqrtq_f32(vld1q_f32(g))));
}
MFK_AI void mfk_steps_f64(double lr, double g0, double g1, double g2, double g3, double *out)
{
    const double g[4] = {g0, g1, g2, g3};
    float64x2_t l = vdupq_n_f64(lr);
    vst1q_f64(out, vdivq_f64(l, vsqrtq_f64(vld1q_f64(g))));
    vst1q_f64(out + 2, vdivq_f64(l, vsqrtq_f64(vld1q_f64(g + 2))));
}
#endif /* MFKIT_HAVE_NEON_PATHS */

#if MFKIT_HAVE_X86_PATHS || MFKIT_HAVE_NEON_PATHS
/* ---- the scalar part of one rating, shared by every body --------------------------- */

#define MFK_DEFINE_SCALAR(T, S, FABS)                                              \
MFK_AI T mfk_psi_##S(T e, int loss, T delta)                                            \
{                                                                                       \
    if (loss == 0) return e;                                                            \
    if (loss == 1) return e > delta ? delta : (e < -delta ? -delta : e);                \
    return e > 0 ? (T)1 : (e < 0 ? (T)-1 : (T)0);                                       \
}                                                                                       \
/* Residual and bias steps of rating (u, i, r) given dot = p_u . q_i, with the user's bias  \
 * and its accumulator at *ub and *ugb (read only with biases, *ugb only with AdaGrad: a   \
 * row body keeps them in registers for a user's run); returns 0 when the residual is not  \
 * finite (nothing updated), else 1 with the influence g in *g_out.                     */ \
MFK_AI int mfk_scalar_##S(const mfk_sgd_##S *a, T *ub, T *ugb, int32_t i, float r, T dot, \
                          const T *steps, int ada, T *g_out, double *sse)                \
{                                                                                       \
    T pred = a->mu + dot, e, g, b, gb;                                                  \
    if (a->biases) pred = pred + *ub + a->bi[i * a->ss];                                \
    e = (T)r - pred;                                                                    \
    if (!(FABS(e) < 1e30)) return 0;                                                    \
    *sse += (double)e * e;                                                              \
    g = mfk_psi_##S(e, a->loss, a->delta);                                              \
    if (a->biases) {                                                                    \
        if (!ada) {                                                                     \
            b = *ub; *ub = b + a->lr * (g - a->reg_bias * b);                           \
            b = a->bi[i * a->ss]; a->bi[i * a->ss] = b + a->lr * (g - a->reg_bias * b);                 \
        } else {                                                                        \
            b = *ub; gb = g - a->reg_bias * b;                                          \
            *ub = b + steps[2] * gb; *ugb = *ugb + gb * gb;                             \
            b = a->bi[i * a->ss]; gb = g - a->reg_bias * b;                                     \
            a->bi[i * a->ss] = b + steps[3] * gb; a->Gbi[i * a->ss] = a->Gbi[i * a->ss] + gb * gb;              \
        }                                                                               \
    }                                                                                   \
    *g_out = g;                                                                         \
    return 1;                                                                           \
}                                                                                       \
/* user u's bias and bias accumulator in the argument block (NULL where there are none) */ \
MFK_AI T *mfk_ub_##S(const mfk_sgd_##S *a, int32_t u)                                  \
{                                                                                       \
    return a->biases ? a->bu + u * a->ss : NULL;                                        \
}                                                                                       \
MFK_AI T *mfk_ugb_##S(const mfk_sgd_##S *a, int32_t u, int ada)                         \
{                                                                                       \
    return a->biases && ada ? a->Gbu + u * a->ss : NULL;                                \
}
MFK_DEFINE_SCALAR(float, f32, fabsf)
MFK_DEFINE_SCALAR(double, f64, fabs)

/* ---- the bodies, one per path and dtype ------------------------------------------- */
#if MFKIT_HAVE_X86_PATHS
#define MFK_T float
#define MFK_S f32
#define MFK_ISA avx512
#define MFK_TARGET MFKIT_TARGET_AVX512
#include "_sgd_kernel_body.h"
#undef MFK_ISA
#undef MFK_TARGET
#define MFK_ISA avx2
#define MFK_TARGET MFKIT_TARGET_AVX2
#include "_sgd_kernel_body.h"
#undef MFK_T
#undef MFK_S
#undef MFK_ISA
#undef MFK_TARGET
#define MFK_T double
#define MFK_S f64
#define MFK_ISA avx512
#define MFK_TARGET MFKIT_TARGET_AVX512
#include "_sgd_kernel_body.h"
#undef MFK_ISA
#undef MFK_TARGET
#define MFK_ISA avx2
#define MFK_TARGET MFKIT_TARGET_AVX2
#include "_sgd_kernel_body.h"
#undef MFK_T
#undef MFK_S
#undef MFK_ISA
#undef MFK_TARGET

#define MFK_DEFINE_DISPATCH(T, S)                                                        \
static ptrdiff_t mfk_sgd_sweep_##S(int isa, const void *recs, ptrdiff_t n,              \
                                   const mfk_sgd_##S *a, double *sse)                    \
{                                                                                       \
    if (isa == MFKIT_ISA_AVX512)                                                        \
        return avx512_##S##_sweep((const mfk_rating *)recs, n, a, sse);                 \
    return avx2_##S##_sweep((const mfk_rating *)recs, n, a, sse);                       \
}
MFK_DEFINE_DISPATCH(float, f32)
MFK_DEFINE_DISPATCH(double, f64)

#define MFK_DEFINE_ROWS_DISPATCH(T, S)                                                   \
static ptrdiff_t mfk_sgd_rows_##S(int isa, const mfk_rows *const *r,                  \
                                  const mfk_sgd_##S *a, double *sse, ptrdiff_t *bad)    \
{                                                                                       \
    if (isa == MFKIT_ISA_AVX512) return avx512_##S##_rows(r, a, sse, bad);              \
    if (isa == MFKIT_ISA_AVX2) return avx2_##S##_rows(r, a, sse, bad);                  \
    return -2;                                                                          \
}
MFK_DEFINE_ROWS_DISPATCH(float, f32)
MFK_DEFINE_ROWS_DISPATCH(double, f64)
#endif /* MFKIT_HAVE_X86_PATHS: the bodies */

#if MFKIT_HAVE_NEON_PATHS
#define MFK_T float
#define MFK_S f32
#define MFK_ISA neon
#define MFK_TARGET MFKIT_TARGET_NEON
#include "_sgd_kernel_body.h"
#undef MFK_T
#undef MFK_S
#define MFK_T double
#define MFK_S f64
#include "_sgd_kernel_body.h"
#undef MFK_T
#undef MFK_S
#undef MFK_ISA
#undef MFK_TARGET

/* NEON is the one fast path of an aarch64 build */
#define MFK_DEFINE_DISPATCH(T, S)                                                        \
static ptrdiff_t mfk_sgd_sweep_##S(int isa, const void *recs, ptrdiff_t n,              \
                                   const mfk_sgd_##S *a, double *sse)                    \
{                                                                                       \
    (void)isa;                                                                          \
    return neon_##S##_sweep((const mfk_rating *)recs, n, a, sse);                       \
}
MFK_DEFINE_DISPATCH(float, f32)
MFK_DEFINE_DISPATCH(double, f64)

#define MFK_DEFINE_ROWS_DISPATCH(T, S)                                                   \
static ptrdiff_t mfk_sgd_rows_##S(int isa, const mfk_rows *const *r,                  \
                                  const mfk_sgd_##S *a, double *sse, ptrdiff_t *bad)    \
{                                                                                       \
    if (isa == MFKIT_ISA_NEON) return neon_##S##_rows(r, a, sse, bad);                  \
    return -2;                                                                          \
}
MFK_DEFINE_ROWS_DISPATCH(float, f32)
MFK_DEFINE_ROWS_DISPATCH(double, f64)
#endif /* MFKIT_HAVE_NEON_PATHS */

#else /* no fast paths in this build: the caller only ever runs its portable sweep */

#define MFK_DEFINE_DISPATCH(T, S)                                                        \
static ptrdiff_t mfk_sgd_sweep_##S(int isa, const void *recs, ptrdiff_t n,              \
                                   const mfk_sgd_##S *a, double *sse)                    \
{                                                                                       \
    (void)isa; (void)recs; (void)a; *sse = 0.0;                                         \
    return n > 0 ? 0 : -1;                                                              \
}
MFK_DEFINE_DISPATCH(float, f32)
MFK_DEFINE_DISPATCH(double, f64)

#define MFK_DEFINE_ROWS_DISPATCH(T, S)                                                   \
static ptrdiff_t mfk_sgd_rows_##S(int isa, const mfk_rows *const *r,                  \
                                  const mfk_sgd_##S *a, double *sse, ptrdiff_t *bad)    \
{                                                                                       \
    (void)isa; (void)r; (void)a; (void)sse; (void)bad;                                  \
    return -2;                                                                          \
}
MFK_DEFINE_ROWS_DISPATCH(float, f32)
MFK_DEFINE_ROWS_DISPATCH(double, f64)
#endif /* MFKIT_HAVE_X86_PATHS || MFKIT_HAVE_NEON_PATHS */

#endif /* MFKIT_SGD_KERNEL_H */
