/* A test driver of the NEON path of mfkit's fused SGD sweep (models/_sgd_kernel.h).
 *
 * tests/test_neon.py builds it for aarch64 (static, -O2 -ffp-contract=off as the package
 * build) and runs it under user-mode emulation, so that an x86-64 machine can compare the
 * NEON path bit for bit with its own AVX2 / AVX-512 paths. It does, on the kernel alone,
 * what mfkit.models._sgd's entries do around it on the fast paths:
 *
 *   mode 0  sgd_epoch: the record sweep over the records in storage order;
 *   mode 1  sgd_rows_epoch with one block (B = 1): all users, ascending, shuffled with the
 *           epoch's seed when `shuffle`, each user's CSR run visited by the row-grouped
 *           body (k in 16, 32, 64, 128, no prior);
 *
 * with the per-row scalars packed four to a row (ss = 4) when biases and AdaGrad are both
 * on, as the package does.
 *
 * Usage: neon_driver IN OUT [IN OUT ...]. IN (native little-endian):
 *   int64[16]   mode, itemsize (4 or 8), k, n_users, n_items, n (records or ratings),
 *               biases, ada, prior, loss, shuffle, epochs, then zeros
 *   float64[8]  mu, lr, reg, reg_bias, prior, delta, then zeros
 *   uint64[epochs] the row-grouped epochs' seeds
 *   mode 0: n records (int32 u, int32 i, float32 r)
 *   mode 1: int64 indptr[n_users + 1], int32 indices[n], float32 values[n]
 *   T P[n_users k], Q[n_items k], bu[n_users], bi[n_items], P0, Q0 (read when prior),
 *     Gp[n_users], Gq[n_items], Gbu[n_users], Gbi[n_items] (read when ada)
 * OUT: float64 sse (summed over the epochs), int64 status (-1, or the first bad position),
 *   then T P, Q, bu, bi, Gp, Gq, Gbu, Gbi.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "_sgd_kernel.h"

#if !MFKIT_HAVE_NEON_PATHS
#error "neon_driver.c is built for aarch64 (the NEON path of _sgd_kernel.h)"
#endif

static void die(const char *what, const char *path)
{
    fprintf(stderr, "neon_driver: %s: %s\n", what, path);
    exit(2);
}

static void *take(FILE *f, size_t nbytes, const char *path)
{
    void *p = malloc(nbytes ? nbytes : 1);
    if (p == NULL) die("out of memory", path);
    if (nbytes && fread(p, 1, nbytes, f) != nbytes) die("short input", path);
    return p;
}

static void give(FILE *f, const void *p, size_t nbytes, const char *path)
{
    if (nbytes && fwrite(p, 1, nbytes, f) != nbytes) die("cannot write", path);
}

/* One problem in dtype T (suffix S): read the rest of IN, run, write OUT. */
#define MFK_DRIVER(T, S)                                                                    \
static void run_##S(FILE *in, FILE *out, const int64_t *h, const double *x,                 \
                    const char *ipath, const char *opath)                                   \
{                                                                                           \
    const int64_t mode = h[0], k = h[2], nu = h[3], ni = h[4], n = h[5], epochs = h[11];    \
    const int biases = (int)h[6], ada = (int)h[7], prior = (int)h[8], shuffle = (int)h[10]; \
    uint64_t *seeds = take(in, (size_t)epochs * 8, ipath);                                  \
    mfk_rating *recs = NULL;                                                                \
    int64_t *indptr = NULL;                                                                 \
    int32_t *indices = NULL;                                                                \
    float *values = NULL;                                                                   \
    if (mode == 0) {                                                                        \
        recs = take(in, (size_t)n * sizeof(mfk_rating), ipath);                             \
    } else {                                                                                \
        indptr = take(in, (size_t)(nu + 1) * 8, ipath);                                     \
        indices = take(in, (size_t)n * 4, ipath);                                           \
        values = take(in, (size_t)n * 4, ipath);                                            \
    }                                                                                       \
    T *P = take(in, (size_t)(nu * k) * sizeof(T), ipath);                                   \
    T *Q = take(in, (size_t)(ni * k) * sizeof(T), ipath);                                   \
    T *bu = take(in, (size_t)nu * sizeof(T), ipath), *bi = take(in, (size_t)ni * sizeof(T), ipath); \
    T *P0 = take(in, (size_t)(nu * k) * sizeof(T), ipath);                                  \
    T *Q0 = take(in, (size_t)(ni * k) * sizeof(T), ipath);                                  \
    T *Gp = take(in, (size_t)nu * sizeof(T), ipath), *Gq = take(in, (size_t)ni * sizeof(T), ipath); \
    T *Gbu = take(in, (size_t)nu * sizeof(T), ipath);                                       \
    T *Gbi = take(in, (size_t)ni * sizeof(T), ipath);                                       \
    /* biases and AdaGrad: one row's bias and accumulators packed in 4 slots */             \
    const int packed = biases && ada;                                                       \
    T *pu = calloc((size_t)nu * 4, sizeof(T)), *pi = calloc((size_t)ni * 4, sizeof(T));     \
    if (pu == NULL || pi == NULL) die("out of memory", ipath);                              \
    mfk_sgd_##S a;                                                                          \
    memset(&a, 0, sizeof a);                                                                \
    a.P = P; a.Q = Q; a.bu = bu; a.bi = bi;                                                 \
    a.P0 = prior ? P0 : NULL; a.Q0 = prior ? Q0 : NULL;                                     \
    if (ada) { a.Gp = Gp; a.Gq = Gq; a.Gbu = Gbu; a.Gbi = Gbi; }                             \
    a.mu = (T)x[0]; a.lr = (T)x[1]; a.reg = (T)x[2]; a.reg_bias = (T)x[3];                  \
    a.prior = (T)x[4]; a.delta = (T)x[5];                                                   \
    a.k = (int)k; a.biases = biases; a.loss = (int)h[9]; a.ss = 1;                          \
    if (packed) {                                                                           \
        for (int64_t r = 0; r < nu; r++) {                                                  \
            pu[4 * r] = bu[r]; pu[4 * r + 1] = Gbu[r]; pu[4 * r + 2] = Gp[r];               \
        }                                                                                   \
        for (int64_t r = 0; r < ni; r++) {                                                  \
            pi[4 * r] = bi[r]; pi[4 * r + 1] = Gbi[r]; pi[4 * r + 2] = Gq[r];               \
        }                                                                                   \
        a.bu = pu; a.Gbu = pu + 1; a.Gp = pu + 2;                                           \
        a.bi = pi; a.Gbi = pi + 1; a.Gq = pi + 2;                                           \
        a.ss = 4;                                                                           \
    }                                                                                       \
    double sse = 0.0, s;                                                                    \
    int64_t status = -1;                                                                    \
    /* order[0:nu], then the ascending users and the chunk scratch of mfk_order_users */    \
    int32_t *order = malloc((size_t)(nu > 0 ? 3 * nu : 1) * 4);                             \
    int64_t *seg = malloc((size_t)(nu > 0 ? nu : 1) * 16);                                  \
    if (order == NULL || seg == NULL) die("out of memory", ipath);                          \
    for (int64_t e = 0; e < epochs && status == -1; e++) {                                  \
        ptrdiff_t bad;                                                                      \
        if (mode == 0) {                                                                    \
            bad = mfk_sgd_sweep_##S(MFKIT_ISA_NEON, recs, (ptrdiff_t)n, &a, &s);            \
        } else {                                                                            \
            uint64_t state = seeds[e];                                                      \
            for (int64_t u = 0; u < nu; u++) {                                              \
                order[u] = order[nu + u] = (int32_t)u;                                      \
                seg[2 * u] = indptr[u];                                                     \
                seg[2 * u + 1] = indptr[u + 1];                                             \
            }                                                                               \
            if (shuffle)                                                                    \
                mfk_order_users(order, order + 2 * nu, order + nu, (ptrdiff_t)nu,           \
                                MFK_USER_CHUNK, &state);                                    \
            mfk_rows r = {order, (ptrdiff_t)nu, seg, 2, 0, indices, values, state, shuffle}; \
            const mfk_rows *rr[2] = {&r, NULL};                                             \
            double s2[2];                                                                   \
            ptrdiff_t b2[2];                                                                \
            if (mfk_sgd_rows_##S(MFKIT_ISA_NEON, rr, &a, s2, b2) != 0)                       \
                die("no NEON row body for this k", ipath);                                  \
            s = s2[0];                                                                      \
            bad = b2[0];                                                                    \
        }                                                                                   \
        sse += s;                                                                           \
        if (bad != -1) status = (int64_t)bad;                                               \
    }                                                                                       \
    if (packed) {                                                                           \
        for (int64_t r = 0; r < nu; r++) {                                                  \
            bu[r] = pu[4 * r]; Gbu[r] = pu[4 * r + 1]; Gp[r] = pu[4 * r + 2];               \
        }                                                                                   \
        for (int64_t r = 0; r < ni; r++) {                                                  \
            bi[r] = pi[4 * r]; Gbi[r] = pi[4 * r + 1]; Gq[r] = pi[4 * r + 2];               \
        }                                                                                   \
    }                                                                                       \
    give(out, &sse, 8, opath);                                                              \
    give(out, &status, 8, opath);                                                           \
    give(out, P, (size_t)(nu * k) * sizeof(T), opath);                                      \
    give(out, Q, (size_t)(ni * k) * sizeof(T), opath);                                      \
    give(out, bu, (size_t)nu * sizeof(T), opath);                                           \
    give(out, bi, (size_t)ni * sizeof(T), opath);                                           \
    give(out, Gp, (size_t)nu * sizeof(T), opath);                                           \
    give(out, Gq, (size_t)ni * sizeof(T), opath);                                           \
    give(out, Gbu, (size_t)nu * sizeof(T), opath);                                          \
    give(out, Gbi, (size_t)ni * sizeof(T), opath);                                          \
    free(seeds); free(recs); free(indptr); free(indices); free(values);                     \
    free(P); free(Q); free(bu); free(bi); free(P0); free(Q0);                               \
    free(Gp); free(Gq); free(Gbu); free(Gbi); free(pu); free(pi); free(order); free(seg);   \
}
MFK_DRIVER(float, f32)
MFK_DRIVER(double, f64)

int main(int argc, char **argv)
{
    if (argc < 3 || argc % 2 == 0) {
        fprintf(stderr, "usage: neon_driver IN OUT [IN OUT ...]\n");
        return 2;
    }
    if (!mfkit_isa_runs(MFKIT_ISA_NEON)) {
        fprintf(stderr, "neon_driver: this build does not run the NEON path\n");
        return 2;
    }
    for (int j = 1; j + 1 < argc; j += 2) {
        FILE *in = fopen(argv[j], "rb"), *out = fopen(argv[j + 1], "wb");
        if (in == NULL) die("cannot open", argv[j]);
        if (out == NULL) die("cannot create", argv[j + 1]);
        int64_t h[16];
        double x[8];
        if (fread(h, 8, 16, in) != 16 || fread(x, 8, 8, in) != 8) die("short header", argv[j]);
        if (h[1] == 4)
            run_f32(in, out, h, x, argv[j], argv[j + 1]);
        else if (h[1] == 8)
            run_f64(in, out, h, x, argv[j], argv[j + 1]);
        else
            die("itemsize must be 4 or 8", argv[j]);
        fclose(in);
        if (fclose(out) != 0) die("cannot write", argv[j + 1]);
    }
    return 0;
}
