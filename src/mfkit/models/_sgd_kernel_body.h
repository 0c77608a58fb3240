/* The body of the fused SGD sweep, included by _sgd_kernel.h once per path and dtype with
 * MFK_T (float or double), MFK_S (f32 or f64), MFK_ISA (avx2 or avx512) and MFK_TARGET
 * (the path's target attribute) defined. No include guard: that is the point. */

#define MFK_G3_(a, b, c) a##_##b##_##c
#define MFK_G3(a, b, c) MFK_G3_(a, b, c)
#define MFK_F(name) MFK_G3(MFK_ISA, MFK_S, name)
#define MFK_G2_(a, b) a##_##b
#define MFK_G2(a, b) MFK_G2_(a, b)
#define MFK_X(name) MFK_G2(name, MFK_S)
#define MFK_HOLD(NC) (4 * (NC) * MFK_F(VPC) <= MFK_G2(MFK_ISA, REGS))

typedef MFK_F(c16) MFK_F(C);

/* The step of one 16-lane chunk (coordinates f..f+15; p0, q0 the prior rows) of both rows: d_p = e q - (reg p [+ prior (p - p0)]),
 * d_q likewise, p' = p + lp d_p, q' = q + lq d_q, and with AdaGrad ap += d_p^2, aq += d_q^2. */
MFK_TARGET MFK_AI void MFK_F(step)(MFK_F(C) pc, MFK_F(C) qc, const MFK_T *p0, const MFK_T *q0,
                                   int f, MFK_F(C) eg, MFK_F(C) vreg, MFK_F(C) vprior, MFK_F(C) lp,
                                   MFK_F(C) lq, MFK_F(C) *ap, MFK_F(C) *aq, MFK_F(C) *pn,
                                   MFK_F(C) *qn, const int ada, const int prior,
                                   const int masked, MFK_F(mask) m)
{
    MFK_F(C) tp = MFK_F(mul)(vreg, pc), tq = MFK_F(mul)(vreg, qc);
    if (prior) {
        MFK_F(C) p0c = masked ? MFK_F(loadm)(p0 + f, m) : MFK_F(load)(p0 + f);
        MFK_F(C) q0c = masked ? MFK_F(loadm)(q0 + f, m) : MFK_F(load)(q0 + f);
        tp = MFK_F(fma)(vprior, MFK_F(sub)(pc, p0c), tp);
        tq = MFK_F(fma)(vprior, MFK_F(sub)(qc, q0c), tq);
    }
    MFK_F(C) dp = MFK_F(fms)(eg, qc, tp), dq = MFK_F(fms)(eg, pc, tq);
    *pn = MFK_F(fma)(lp, dp, pc);
    *qn = MFK_F(fma)(lq, dq, qc);
    if (ada) {
        *ap = MFK_F(fma)(dp, dp, *ap);
        *aq = MFK_F(fma)(dq, dq, *aq);
    }
}

/* Prefetch the rows and per-row scalars of the rating MFK_PREFETCH_AHEAD places ahead. */
MFK_TARGET MFK_AI void MFK_F(prefetch)(const mfk_rating *recs, ptrdiff_t t, ptrdiff_t n,
                                       const MFK_X(mfk_sgd) *a, int row_bytes, int ada)
{
    ptrdiff_t ahead = t + MFK_PREFETCH_AHEAD;
    if (ahead >= n) return;
    int32_t u = recs[ahead].u, i = recs[ahead].i;
    const char *pu = (const char *)(a->P + (ptrdiff_t)u * a->k);
    const char *qi = (const char *)(a->Q + (ptrdiff_t)i * a->k);
    for (int off = 0; off < row_bytes; off += 64) {
        __builtin_prefetch(pu + off, 1, 3);
        __builtin_prefetch(qi + off, 1, 3);
    }
    if (a->ss > 1) { /* packed: one line holds a row's bias and both accumulators */
        __builtin_prefetch(a->bu + u * a->ss, 1, 3);
        __builtin_prefetch(a->bi + i * a->ss, 1, 3);
        return;
    }
    if (a->biases) {
        __builtin_prefetch(a->bu + u, 1, 3);
        __builtin_prefetch(a->bi + i, 1, 3);
        if (ada) {
            __builtin_prefetch(a->Gbu + u, 1, 3);
            __builtin_prefetch(a->Gbi + i, 1, 3);
        }
    }
    if (ada) {
        __builtin_prefetch(a->Gp + u, 1, 3);
        __builtin_prefetch(a->Gq + i, 1, 3);
    }
}

/* The sweep with k = 16 NC fixed at compile time: both rows stay in registers between the
 * dot product and the step when they fit in half the registers (MFK_HOLD), else the step
 * reads them again. No prior (that takes the generic body). */
MFK_TARGET MFK_AI ptrdiff_t MFK_F(sweep_fixed)(const mfk_rating *recs, ptrdiff_t n,
                                               const MFK_X(mfk_sgd) *args, double *sse_out,
                                               const int NC, const int ada)
{
    /* a local copy: the compiler keeps it in registers (stores through the factor
     * pointers cannot change it) */
    const MFK_X(mfk_sgd) A = *args, *const a = &A;
    const int k = 16 * NC, row_bytes = k * (int)sizeof(MFK_T);
    const MFK_T inv_k = (MFK_T)1 / k;
    const MFK_F(C) vreg = MFK_F(set1)(a->reg), zero = MFK_F(zero)();
    const MFK_F(mask) m = MFK_F(mk)(16);
    MFK_T *const P = a->P, *const Q = a->Q;
    double sse = 0.0;
    ptrdiff_t bad = -1;
    for (ptrdiff_t t = 0; t < n; t++) {
        MFK_F(prefetch)(recs, t, n, a, row_bytes, ada);
        const int32_t u = recs[t].u, i = recs[t].i;
        MFK_T *p = P + (ptrdiff_t)u * k, *q = Q + (ptrdiff_t)i * k;
        MFK_T steps[4] = {a->lr, a->lr, a->lr, a->lr}, g;
        if (ada)
            MFK_X(mfk_steps)(a->lr, a->Gp[u * a->ss], a->Gq[i * a->ss], a->biases ? a->Gbu[u * a->ss] : 1,
                             a->biases ? a->Gbi[i * a->ss] : 1, steps);
        MFK_F(C) pr[8], qr[8], acc = zero; /* NC <= 8 */
        for (int c = 0; c < NC; c++) {
            pr[c] = MFK_F(load)(p + 16 * c);
            qr[c] = MFK_F(load)(q + 16 * c);
            acc = MFK_F(fma)(pr[c], qr[c], acc);
        }
        if (!MFK_X(mfk_scalar)(a, MFK_X(mfk_ub)(a, u), MFK_X(mfk_ugb)(a, u, ada), i, recs[t].r,
                               MFK_F(red)(acc), steps, ada, &g, &sse)) {
            bad = t;
            break;
        }
        const MFK_F(C) eg = MFK_F(set1)(g), lp = MFK_F(set1)(steps[0]),
                       lq = MFK_F(set1)(steps[1]);
        MFK_F(C) ap = zero, aq = zero, pn, qn;
        for (int c = 0; c < NC; c++) {
            if (!MFK_HOLD(NC)) {
                pr[c] = MFK_F(load)(p + 16 * c);
                qr[c] = MFK_F(load)(q + 16 * c);
            }
            MFK_F(step)(pr[c], qr[c], NULL, NULL, 0, eg, vreg, zero, lp, lq, &ap, &aq, &pn, &qn,
                        ada, 0, 0, m);
            MFK_F(store)(p + 16 * c, pn);
            MFK_F(store)(q + 16 * c, qn);
        }
        if (ada) {
            a->Gp[u * a->ss] = a->Gp[u * a->ss] + MFK_F(red)(ap) * inv_k;
            a->Gq[i * a->ss] = a->Gq[i * a->ss] + MFK_F(red)(aq) * inv_k;
        }
    }
    *sse_out = sse;
    return bad;
}

/* Any k (full chunks, then the last k mod 16 coordinates masked), with or without a prior:
 * the rows are read from memory (the first level cache) a second time for the step. */
MFK_TARGET MFK_AI ptrdiff_t MFK_F(sweep_generic)(const mfk_rating *recs, ptrdiff_t n,
                                                 const MFK_X(mfk_sgd) *args, double *sse_out,
                                                 const int ada, const int prior)
{
    /* a local copy: the compiler keeps it in registers (stores through the factor
     * pointers cannot change it) */
    const MFK_X(mfk_sgd) A = *args, *const a = &A;
    const int k = a->k, nfull = k / 16, rem = k % 16, row_bytes = k * (int)sizeof(MFK_T);
    const int tail = 16 * nfull;
    const MFK_T inv_k = (MFK_T)1 / k;
    const MFK_F(C) vreg = MFK_F(set1)(a->reg), vprior = MFK_F(set1)(a->prior),
                   zero = MFK_F(zero)();
    const MFK_F(mask) m = MFK_F(mk)(rem);
    MFK_T *const P = a->P, *const Q = a->Q;
    double sse = 0.0;
    ptrdiff_t bad = -1;
    for (ptrdiff_t t = 0; t < n; t++) {
        MFK_F(prefetch)(recs, t, n, a, row_bytes, ada);
        const int32_t u = recs[t].u, i = recs[t].i;
        MFK_T *p = P + (ptrdiff_t)u * k, *q = Q + (ptrdiff_t)i * k;
        const MFK_T *p0 = prior ? a->P0 + (ptrdiff_t)u * k : NULL;
        const MFK_T *q0 = prior ? a->Q0 + (ptrdiff_t)i * k : NULL;
        MFK_T steps[4] = {a->lr, a->lr, a->lr, a->lr}, g;
        if (ada)
            MFK_X(mfk_steps)(a->lr, a->Gp[u * a->ss], a->Gq[i * a->ss], a->biases ? a->Gbu[u * a->ss] : 1,
                             a->biases ? a->Gbi[i * a->ss] : 1, steps);
        MFK_F(C) acc = zero;
        for (int f = 0; f < tail; f += 16)
            acc = MFK_F(fma)(MFK_F(load)(p + f), MFK_F(load)(q + f), acc);
        if (rem)
            acc = MFK_F(fma)(MFK_F(loadm)(p + tail, m), MFK_F(loadm)(q + tail, m), acc);
        if (!MFK_X(mfk_scalar)(a, MFK_X(mfk_ub)(a, u), MFK_X(mfk_ugb)(a, u, ada), i, recs[t].r,
                               MFK_F(red)(acc), steps, ada, &g, &sse)) {
            bad = t;
            break;
        }
        const MFK_F(C) eg = MFK_F(set1)(g), lp = MFK_F(set1)(steps[0]),
                       lq = MFK_F(set1)(steps[1]);
        MFK_F(C) ap = zero, aq = zero, pn, qn;
        for (int f = 0; f < tail; f += 16) {
            MFK_F(step)(MFK_F(load)(p + f), MFK_F(load)(q + f), p0, q0, f, eg, vreg,
                        vprior, lp, lq, &ap, &aq, &pn, &qn, ada, prior, 0, m);
            MFK_F(store)(p + f, pn);
            MFK_F(store)(q + f, qn);
        }
        if (rem) {
            MFK_F(step)(MFK_F(loadm)(p + tail, m), MFK_F(loadm)(q + tail, m), p0, q0,
                        tail, eg, vreg, vprior, lp, lq, &ap, &aq, &pn, &qn, ada, prior,
                        1, m);
            MFK_F(storem)(p + tail, m, pn);
            MFK_F(storem)(q + tail, m, qn);
        }
        if (ada) {
            a->Gp[u * a->ss] = a->Gp[u * a->ss] + MFK_F(red)(ap) * inv_k;
            a->Gq[i * a->ss] = a->Gq[i * a->ss] + MFK_F(red)(aq) * inv_k;
        }
    }
    *sse_out = sse;
    return bad;
}

/* One block of the row-grouped epoch (see mfk_rows in _sgd_kernel.h) with k = 16 NC fixed
 * at compile time and no prior, walked by a `lane`: each user's row p_u is loaded into
 * registers once, takes the steps of all the user's ratings in the block, and is stored
 * once. Rating by rating the operations are those of sweep_fixed on the same visiting
 * order (p_u is the value the previous step left, whether it comes from a register or from
 * memory), so the bits are the same. */
typedef struct {
    const int32_t *order, *indices;
    const float *values;
    const int64_t *seg;
    ptrdiff_t n, stride, h, j, m, t, pos, bad;
    int64_t a0;
    uint64_t state, xnext;
    int shuffle, back;
    int32_t u;
    MFK_T gpu, bu_u, gbu_u; /* the user's scalars, held for the run as p_u is */
    double sse;
} MFK_F(lane);

MFK_TARGET MFK_AI void MFK_F(lane_start)(MFK_F(lane) *L, const mfk_rows *r)
{
    L->order = r->order;
    L->indices = r->indices;
    L->values = r->values;
    L->seg = r->seg;
    L->n = r->n;
    L->stride = r->stride;
    L->h = r->h;
    L->j = 0;
    L->m = L->t = L->pos = 0;
    L->bad = -1;
    L->state = r->state;
    L->shuffle = r->shuffle;
    L->xnext = (r->shuffle && r->n > 0) ? mfk_splitmix64(&L->state) : 0;
    L->sse = 0.0;
}

/* Move the lane to its next user with ratings in the block (taking the draws and
 * prefetches of the users passed over, in order), load p_u and the user's scalars, and
 * return 1; 0 when the block is done. */
MFK_TARGET MFK_AI int MFK_F(lane_user)(MFK_F(lane) *L, const MFK_X(mfk_sgd) *a,
                                       MFK_F(C) *pr, const int NC, const int ada)
{
    const int k = 16 * NC, row_bytes = k * (int)sizeof(MFK_T);
    const ptrdiff_t n = L->n, stride = L->stride, h = L->h, ss = a->ss;
    while (L->j < n) {
        const ptrdiff_t j = L->j++;
        if (j + MFK_USERS_AHEAD < n) {
            const int32_t ua = L->order[j + MFK_USERS_AHEAD];
            const char *pa = (const char *)(a->P + (ptrdiff_t)ua * k);
            for (int off = 0; off < row_bytes; off += 64) __builtin_prefetch(pa + off, 1, 3);
            __builtin_prefetch(L->seg + (ptrdiff_t)ua * stride + h, 0, 3);
            if (a->biases) __builtin_prefetch(a->bu + (ptrdiff_t)ua * ss, 1, 3);
            if (ada) __builtin_prefetch(a->Gp + (ptrdiff_t)ua * ss, 1, 3);
        }
        if (j + MFK_USERS_AHEAD / 2 < n) { /* every line of that user's run */
            const int64_t *sa = L->seg + (ptrdiff_t)L->order[j + MFK_USERS_AHEAD / 2] * stride + h;
            const int64_t a2 = sa[0], e2 = sa[1];
            for (int64_t x = a2 & ~(int64_t)15; x < e2; x += 16) {
                __builtin_prefetch(L->indices + x, 0, 3);
                __builtin_prefetch(L->values + x, 0, 3);
            }
        }
        const int32_t u = L->order[j];
        const int64_t a0 = L->seg[(ptrdiff_t)u * stride + h];
        const ptrdiff_t m = (ptrdiff_t)(L->seg[(ptrdiff_t)u * stride + h + 1] - a0);
        /* this user's draw was taken one user ahead; take the next user's now (the same
         * stream in the same order) and prefetch that user's first item row */
        const uint64_t xcur = L->xnext;
        if (j + 1 < n) {
            const int32_t u1 = L->order[j + 1];
            const int64_t b0 = L->seg[(ptrdiff_t)u1 * stride + h];
            const ptrdiff_t m1 = (ptrdiff_t)(L->seg[(ptrdiff_t)u1 * stride + h + 1] - b0);
            ptrdiff_t pos1 = 0;
            if (L->shuffle) {
                L->xnext = mfk_splitmix64(&L->state);
                pos1 = (ptrdiff_t)(((L->xnext >> 32) * (uint64_t)m1) >> 32);
            }
            if (m1 > 0) {
                const char *qa = (const char *)(a->Q + (ptrdiff_t)L->indices[b0 + pos1] * k);
                for (int off = 0; off < row_bytes; off += 64) __builtin_prefetch(qa + off, 1, 3);
            }
        }
        if (m == 0) continue;
        L->pos = L->shuffle ? (ptrdiff_t)(((xcur >> 32) * (uint64_t)m) >> 32) : 0;
        L->back = L->shuffle ? (int)(xcur & 1) : 0;
        L->u = u;
        L->a0 = a0;
        L->m = m;
        L->t = 0;
        const MFK_T *p = a->P + (ptrdiff_t)u * k;
        for (int c = 0; c < NC; c++) pr[c] = MFK_F(load)(p + 16 * c);
        L->gpu = ada ? a->Gp[u * ss] : 0;
        L->bu_u = a->biases ? a->bu[u * ss] : 0;
        L->gbu_u = a->biases && ada ? a->Gbu[u * ss] : 1;
        return 1;
    }
    return 0;
}

/* The lane's next rating up to its residual, with no side effect but prefetches: its item
 * and value, the item row in qr, p_u . q_i and the AdaGrad steps. Two lanes take this half
 * one after the other before either finishes (rows_fixed), so that the second lane's loads
 * and dot product are in the instruction stream ahead of the first lane's step-size chain. */
typedef struct {
    MFK_T dot, steps[4];
    ptrdiff_t next;
    int32_t i;
    float rv;
} MFK_F(half);

MFK_TARGET MFK_AI void MFK_F(lane_load)(const MFK_F(lane) *L, const MFK_X(mfk_sgd) *a,
                                        const MFK_F(C) *pr, MFK_F(C) *qr, MFK_F(half) *x,
                                        const int NC, const int ada)
{
    const int k = 16 * NC, row_bytes = k * (int)sizeof(MFK_T);
    const ptrdiff_t m = L->m, pos = L->pos, ss = a->ss;
    const int32_t i = L->indices[L->a0 + pos];
    x->next = L->back ? (pos > 0 ? pos - 1 : m - 1) : (pos + 1 < m ? pos + 1 : 0);
    x->i = i;
    x->rv = L->values[L->a0 + pos];
    {
        const char *qa = (const char *)(a->Q + (ptrdiff_t)L->indices[L->a0 + x->next] * k);
        for (int off = 0; off < row_bytes; off += 64) __builtin_prefetch(qa + off, 1, 3);
    }
    const MFK_T *const q = a->Q + (ptrdiff_t)i * k;
    for (int s = 0; s < 4; s++) x->steps[s] = a->lr;
    if (ada)
        MFK_X(mfk_steps)(a->lr, L->gpu, a->Gq[i * ss], L->gbu_u, a->biases ? a->Gbi[i * ss] : 1,
                         x->steps);
    MFK_F(C) acc = MFK_F(zero)();
    for (int c = 0; c < NC; c++) {
        qr[c] = MFK_F(load)(q + 16 * c);
        acc = MFK_F(fma)(pr[c], qr[c], acc);
    }
    x->dot = MFK_F(red)(acc);
}

/* The rest of the rating lane_load began: 0 (and L->bad set to its CSR position, nothing
 * updated) when its residual is not finite, else the steps taken and 1. */
MFK_TARGET MFK_AI int MFK_F(lane_finish)(MFK_F(lane) *L, const MFK_X(mfk_sgd) *a,
                                         MFK_F(C) *pr, const MFK_F(C) *qr,
                                         const MFK_F(half) *x, const int NC, const int ada)
{
    const int k = 16 * NC;
    const MFK_T inv_k = (MFK_T)1 / k;
    const MFK_F(C) vreg = MFK_F(set1)(a->reg), zero = MFK_F(zero)();
    const MFK_F(mask) msk = MFK_F(mk)(16);
    const ptrdiff_t ss = a->ss;
    const int32_t i = x->i;
    MFK_T *const q = a->Q + (ptrdiff_t)i * k;
    MFK_T g;
    if (!MFK_X(mfk_scalar)(a, &L->bu_u, &L->gbu_u, i, x->rv, x->dot, x->steps, ada, &g,
                           &L->sse)) {
        L->bad = (ptrdiff_t)L->a0 + L->pos;
        return 0;
    }
    const MFK_F(C) eg = MFK_F(set1)(g), lp = MFK_F(set1)(x->steps[0]),
                   lq = MFK_F(set1)(x->steps[1]);
    MFK_F(C) ap = zero, aq = zero, pn, qn;
    for (int c = 0; c < NC; c++) {
        MFK_F(step)(pr[c], qr[c], NULL, NULL, 0, eg, vreg, zero, lp, lq, &ap, &aq, &pn, &qn, ada,
                    0, 0, msk);
        pr[c] = pn;
        MFK_F(store)(q + 16 * c, qn);
    }
    if (ada) {
        L->gpu = L->gpu + MFK_F(red)(ap) * inv_k;
        a->Gq[i * ss] = a->Gq[i * ss] + MFK_F(red)(aq) * inv_k;
    }
    L->pos = x->next;
    L->t++;
    return 1;
}

/* Store p_u and the user's scalars when the lane's run ends (or stops at a bad rating). */
MFK_TARGET MFK_AI void MFK_F(lane_end)(MFK_F(lane) *L, const MFK_X(mfk_sgd) *a,
                                       const MFK_F(C) *pr, const int NC, const int ada)
{
    const ptrdiff_t u = L->u, ss = a->ss;
    MFK_T *const p = a->P + u * 16 * NC;
    for (int c = 0; c < NC; c++) MFK_F(store)(p + 16 * c, pr[c]);
    if (ada) a->Gp[u * ss] = L->gpu;
    if (a->biases) {
        a->bu[u * ss] = L->bu_u;
        if (ada) a->Gbu[u * ss] = L->gbu_u;
    }
}

/* After the lane's rating (ok: lane_finish's answer): at the end of its run or at a bad
 * rating p_u stored and, unless the rating was bad, the next user loaded; 1 while the lane
 * has ratings left. */
MFK_TARGET MFK_AI int MFK_F(lane_next)(MFK_F(lane) *L, const MFK_X(mfk_sgd) *a,
                                       MFK_F(C) *pr, const int ok, const int NC, const int ada)
{
    if (ok && L->t < L->m) return 1;
    MFK_F(lane_end)(L, a, pr, NC, ada);
    return ok ? MFK_F(lane_user)(L, a, pr, NC, ada) : 0;
}

/* The lane's next rating, then lane_next. */
MFK_TARGET MFK_AI int MFK_F(lane_step)(MFK_F(lane) *L, const MFK_X(mfk_sgd) *a,
                                       MFK_F(C) *pr, const int NC, const int ada)
{
    MFK_F(C) qr[8]; /* NC <= 8 */
    MFK_F(half) x;
    MFK_F(lane_load)(L, a, pr, qr, &x, NC, ada);
    const int ok = MFK_F(lane_finish)(L, a, pr, qr, &x, NC, ada);
    return MFK_F(lane_next)(L, a, pr, ok, NC, ada);
}

/* Blocks r[0] and r[1] of one stratum (no user and no item in common, or r[1] == NULL for
 * one block), their ratings interleaved one for one: the two step-size chains overlap,
 * while each row sees the updates it would see with the blocks swept one after the other
 * (the same bits). Both lanes take the first half of their rating (lane_load) before either
 * finishes it. In the order load 0, finish 0, load 1, finish 1 the two chains overlapped
 * far less (most likely the first lane's waiting step instructions held the core's
 * scheduler, so the second lane's loads queued behind them; the machine measured had no
 * performance counters to confirm it). In a kernel probe on Zen 4 (k=64, AdaGrad with
 * biases) a rating took 22-24 ns before and 18-19 ns after with its rows in the first level
 * cache, and 31-34 ns before and 25-26 ns after with 2000 item rows and 20000 user rows per
 * block. sse[b] and bad[b] are block b's squared residuals and -1 or the CSR position of
 * its first non-finite residual (the other block still runs to its end). */
MFK_TARGET MFK_AI void MFK_F(rows_fixed)(const mfk_rows *const *r, const MFK_X(mfk_sgd) *args,
                                         double *sse, ptrdiff_t *bad, const int NC,
                                         const int ada)
{
    const MFK_X(mfk_sgd) A = *args, *const a = &A;
    MFK_F(lane) L0, L1;
    MFK_F(C) pr0[8], pr1[8]; /* NC <= 8 */
    MFK_F(lane_start)(&L0, r[0]);
    int act0 = MFK_F(lane_user)(&L0, a, pr0, NC, ada), act1 = 0;
    if (r[1] != NULL) {
        MFK_F(lane_start)(&L1, r[1]);
        act1 = MFK_F(lane_user)(&L1, a, pr1, NC, ada);
        while (act0 && act1) {
            MFK_F(C) qr0[8], qr1[8]; /* NC <= 8 */
            MFK_F(half) x0, x1;
            MFK_F(lane_load)(&L0, a, pr0, qr0, &x0, NC, ada);
            MFK_F(lane_load)(&L1, a, pr1, qr1, &x1, NC, ada);
            const int ok0 = MFK_F(lane_finish)(&L0, a, pr0, qr0, &x0, NC, ada);
            const int ok1 = MFK_F(lane_finish)(&L1, a, pr1, qr1, &x1, NC, ada);
            act0 = MFK_F(lane_next)(&L0, a, pr0, ok0, NC, ada);
            act1 = MFK_F(lane_next)(&L1, a, pr1, ok1, NC, ada);
        }
        while (act1) act1 = MFK_F(lane_step)(&L1, a, pr1, NC, ada);
        sse[1] = L1.sse;
        bad[1] = L1.bad;
    }
    while (act0) act0 = MFK_F(lane_step)(&L0, a, pr0, NC, ada);
    sse[0] = L0.sse;
    bad[0] = L0.bad;
}

/* One or two row-grouped blocks of this path (see rows_fixed); 0, or -2 when k or the
 * variant has no body here (a prior, or k not in 16, 32, 64, 128: the caller takes its
 * scratch-record route). */
MFK_TARGET static ptrdiff_t MFK_F(rows)(const mfk_rows *const *r, const MFK_X(mfk_sgd) *a,
                                        double *sse, ptrdiff_t *bad)
{
    const int ada = a->Gp != NULL;
    if (a->P0 != NULL) return -2;
    switch (a->k) {
#define MFK_CASE(NC)                                                                     \
    case 16 * NC:                                                                        \
        if (ada)                                                                         \
            MFK_F(rows_fixed)(r, a, sse, bad, NC, 1);                                    \
        else                                                                             \
            MFK_F(rows_fixed)(r, a, sse, bad, NC, 0);                                    \
        return 0;
    MFK_CASE(1)
    MFK_CASE(2)
    MFK_CASE(4)
    MFK_CASE(8)
#undef MFK_CASE
    default:
        return -2;
    }
}

/* The entry of this path: the body for the sweep's k and variant. */
MFK_TARGET static ptrdiff_t MFK_F(sweep)(const mfk_rating *recs, ptrdiff_t n,
                                         const MFK_X(mfk_sgd) *a, double *sse)
{
    const int ada = a->Gp != NULL, prior = a->P0 != NULL;
    if (!prior) {
        switch (a->k) {
#define MFK_CASE(NC)                                                                     \
        case 16 * NC:                                                                    \
            return ada ? MFK_F(sweep_fixed)(recs, n, a, sse, NC, 1)                      \
                       : MFK_F(sweep_fixed)(recs, n, a, sse, NC, 0);
        MFK_CASE(1)
        MFK_CASE(2)
        MFK_CASE(4)
        MFK_CASE(8)
#undef MFK_CASE
        default:
            break;
        }
    }
    if (ada)
        return prior ? MFK_F(sweep_generic)(recs, n, a, sse, 1, 1)
                     : MFK_F(sweep_generic)(recs, n, a, sse, 1, 0);
    return prior ? MFK_F(sweep_generic)(recs, n, a, sse, 0, 1)
                 : MFK_F(sweep_generic)(recs, n, a, sse, 0, 0);
}

#undef MFK_G3_
#undef MFK_G3
#undef MFK_F
#undef MFK_G2_
#undef MFK_G2
#undef MFK_X
#undef MFK_HOLD
