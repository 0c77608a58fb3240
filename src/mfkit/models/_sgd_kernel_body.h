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
 * at compile time and no prior: each user's row p_u is loaded into registers once, takes
 * the steps of all the user's ratings in the block, and is stored once. Rating by rating
 * the operations are those of sweep_fixed on the same visiting order (p_u is the value
 * the previous step left, whether it comes from a register or from memory), so the bits
 * are the same. Returns -1 or the CSR position of the first non-finite residual. */
MFK_TARGET MFK_AI ptrdiff_t MFK_F(rows_fixed)(const mfk_rows *r, const MFK_X(mfk_sgd) *args,
                                              double *sse_out, const int NC, const int ada)
{
    const MFK_X(mfk_sgd) A = *args, *const a = &A;
    const int k = 16 * NC, row_bytes = k * (int)sizeof(MFK_T);
    const MFK_T inv_k = (MFK_T)1 / k;
    const MFK_F(C) vreg = MFK_F(set1)(a->reg), zero = MFK_F(zero)();
    const MFK_F(mask) msk = MFK_F(mk)(16);
    MFK_T *const P = a->P, *const Q = a->Q;
    const int32_t *const order = r->order, *const indices = r->indices;
    const float *const values = r->values;
    const int64_t *const seg = r->seg;
    const ptrdiff_t n = r->n, stride = r->stride, h = r->h, ss = a->ss;
    uint64_t state = r->state;
    double sse = 0.0;
    ptrdiff_t bad = -1;
    uint64_t xnext = (r->shuffle && n > 0) ? mfk_splitmix64(&state) : 0;
    for (ptrdiff_t j = 0; j < n; j++) {
        if (j + MFK_USERS_AHEAD < n) {
            const int32_t ua = order[j + MFK_USERS_AHEAD];
            const char *pa = (const char *)(P + (ptrdiff_t)ua * k);
            for (int off = 0; off < row_bytes; off += 64) __builtin_prefetch(pa + off, 1, 3);
            __builtin_prefetch(seg + (ptrdiff_t)ua * stride + h, 0, 3);
            if (a->biases) __builtin_prefetch(a->bu + (ptrdiff_t)ua * ss, 1, 3);
            if (ada) __builtin_prefetch(a->Gp + (ptrdiff_t)ua * ss, 1, 3);
        }
        if (j + MFK_USERS_AHEAD / 2 < n) { /* every line of that user's run */
            const int64_t *sa = seg + (ptrdiff_t)order[j + MFK_USERS_AHEAD / 2] * stride + h;
            const int64_t a2 = sa[0], e2 = sa[1];
            for (int64_t x = a2 & ~(int64_t)15; x < e2; x += 16) {
                __builtin_prefetch(indices + x, 0, 3);
                __builtin_prefetch(values + x, 0, 3);
            }
        }
        const int32_t u = order[j];
        const int64_t a0 = seg[(ptrdiff_t)u * stride + h];
        const ptrdiff_t m = (ptrdiff_t)(seg[(ptrdiff_t)u * stride + h + 1] - a0);
        /* this user's draw was taken one user ahead; take the next user's now (the same
         * stream in the same order) and prefetch that user's first item row */
        const uint64_t xcur = xnext;
        if (j + 1 < n) {
            const int32_t u1 = order[j + 1];
            const int64_t b0 = seg[(ptrdiff_t)u1 * stride + h];
            const ptrdiff_t m1 = (ptrdiff_t)(seg[(ptrdiff_t)u1 * stride + h + 1] - b0);
            ptrdiff_t pos1 = 0;
            if (r->shuffle) {
                xnext = mfk_splitmix64(&state);
                pos1 = (ptrdiff_t)(((xnext >> 32) * (uint64_t)m1) >> 32);
            }
            if (m1 > 0) {
                const char *qa = (const char *)(Q + (ptrdiff_t)indices[b0 + pos1] * k);
                for (int off = 0; off < row_bytes; off += 64) __builtin_prefetch(qa + off, 1, 3);
            }
        }
        ptrdiff_t pos = 0;
        int back = 0;
        if (r->shuffle) {
            pos = (ptrdiff_t)(((xcur >> 32) * (uint64_t)m) >> 32);
            back = (int)(xcur & 1);
        }
        if (m == 0) continue;
        MFK_T *const p = P + (ptrdiff_t)u * k;
        MFK_F(C) pr[8], qr[8]; /* NC <= 8 */
        for (int c = 0; c < NC; c++) pr[c] = MFK_F(load)(p + 16 * c);
        /* the user's scalars (bias, its accumulator, p_u's accumulator) stay in registers
         * for the run, as p_u does: the same values without a store and reload per
         * rating on the step-size chain; written back when the run ends */
        MFK_T gpu = ada ? a->Gp[u * ss] : 0, bu_u = a->biases ? a->bu[u * ss] : 0;
        MFK_T gbu_u = a->biases && ada ? a->Gbu[u * ss] : 1;
        for (ptrdiff_t t = 0; t < m; t++) {
            const ptrdiff_t next = back ? (pos > 0 ? pos - 1 : m - 1) : (pos + 1 < m ? pos + 1 : 0);
            const int32_t i = indices[a0 + pos];
            const float rv = values[a0 + pos];
            {
                const char *qa = (const char *)(Q + (ptrdiff_t)indices[a0 + next] * k);
                for (int off = 0; off < row_bytes; off += 64) __builtin_prefetch(qa + off, 1, 3);
            }
            MFK_T *const q = Q + (ptrdiff_t)i * k;
            MFK_T steps[4] = {a->lr, a->lr, a->lr, a->lr}, g;
            if (ada)
                MFK_X(mfk_steps)(a->lr, gpu, a->Gq[i * ss], gbu_u,
                                 a->biases ? a->Gbi[i * ss] : 1, steps);
            MFK_F(C) acc = zero;
            for (int c = 0; c < NC; c++) {
                qr[c] = MFK_F(load)(q + 16 * c);
                acc = MFK_F(fma)(pr[c], qr[c], acc);
            }
            if (!MFK_X(mfk_scalar)(a, &bu_u, &gbu_u, i, rv, MFK_F(red)(acc), steps, ada, &g,
                                   &sse)) {
                bad = (ptrdiff_t)a0 + pos;
                break;
            }
            const MFK_F(C) eg = MFK_F(set1)(g), lp = MFK_F(set1)(steps[0]),
                           lq = MFK_F(set1)(steps[1]);
            MFK_F(C) ap = zero, aq = zero, pn, qn;
            for (int c = 0; c < NC; c++) {
                MFK_F(step)(pr[c], qr[c], NULL, NULL, 0, eg, vreg, zero, lp, lq, &ap, &aq, &pn,
                            &qn, ada, 0, 0, msk);
                pr[c] = pn;
                MFK_F(store)(q + 16 * c, qn);
            }
            if (ada) {
                gpu = gpu + MFK_F(red)(ap) * inv_k;
                a->Gq[i * ss] = a->Gq[i * ss] + MFK_F(red)(aq) * inv_k;
            }
            pos = next;
        }
        for (int c = 0; c < NC; c++) MFK_F(store)(p + 16 * c, pr[c]);
        if (ada) a->Gp[u * ss] = gpu;
        if (a->biases) {
            a->bu[u * ss] = bu_u;
            if (ada) a->Gbu[u * ss] = gbu_u;
        }
        if (bad >= 0) break;
    }
    *sse_out = sse;
    return bad;
}

/* The row-grouped block of this path; -2 when k or the variant has no body here (a prior,
 * or k not in 16, 32, 64, 128: the caller takes its scratch-record route). */
MFK_TARGET static ptrdiff_t MFK_F(rows)(const mfk_rows *r, const MFK_X(mfk_sgd) *a,
                                        double *sse)
{
    const int ada = a->Gp != NULL;
    if (a->P0 != NULL) return -2;
    switch (a->k) {
#define MFK_CASE(NC)                                                                     \
    case 16 * NC:                                                                        \
        return ada ? MFK_F(rows_fixed)(r, a, sse, NC, 1) : MFK_F(rows_fixed)(r, a, sse, NC, 0);
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
