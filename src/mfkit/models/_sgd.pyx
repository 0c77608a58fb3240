# cython: language_level=3
"""SGD epochs for biased matrix factorization (Funk SVD; Koren, Bell, Volinsky 2009).

Ratings come as packed records (user, item, rating) visited in storage order; shuffling
permutes the records themselves, so an epoch streams through memory and only the factor
rows are accessed at random (and prefetched a few ratings ahead). For each record, with
the loss's influence function psi (squared: psi(e) = e; Huber: e clipped to [-delta, delta];
absolute: sign(e)):

    e    = r - (mu + b_u + b_i + p_u . q_i)
    g    = psi(e)
    b_u += lr (g - reg_bias b_u)
    b_i += lr (g - reg_bias b_i)
    p_u += lr (g q_i - reg p_u - prior (p_u - p0_u))
    q_i += lr (g p_u - reg q_i - prior (q_i - q0_i))      (old p_u, q_i on the right)

With AdaGrad accumulators (Gp, Gq, Gbu, Gbi given) the step of a factor row is
lr / sqrt(G_row), and G_row grows by the mean squared gradient coordinate of the step
(Chin, Zhuang, Juan and Lin 2015); a bias has its own accumulator.

`sgd_epoch` is the serial pass over one record array. `sgd_block_epoch` is the stratified
pass (Gemulla, Nijkamp, Haas and Sismanis 2011, "DSGD"): the records are stored block by
block (see `_sgd_layout.build_blocks`), an epoch walks B strata in a seeded order, and
the B blocks of a stratum touch disjoint user and item rows, so they run concurrently
with no locks; each block is shuffled in place (seeded) and swept by exactly one thread.
Nothing depends on which thread runs which block, so the result is the same for any
thread count.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

import numpy as np

from mfkit._core._simd cimport (mf_dot_f32, mf_dot_f64, mf_sgd_pair_f32, mf_sgd_pair_f64,
                                mf_sgd_pair_prior_f32, mf_sgd_pair_prior_f64,
                                mf_sgd_pair_ada_f32, mf_sgd_pair_ada_f64, mf_ada_steps_f32,
                                mf_ada_steps_f64, mf_prefetch_row)

cdef extern from "_isa.h" nogil:
    int mfkit_isa_runs(int isa)

from mfkit.models._sgd_kernel cimport (mfk_rows, mfk_sgd_f32, mfk_sgd_f64, mfk_sgd_fill_f32,
                                       mfk_sgd_fill_f64, mfk_sgd_rows_f32,
                                       mfk_sgd_rows_f64, mfk_sgd_sweep_f32, mfk_sgd_sweep_f64,
                                       mfk_shuffle_records, mfk_order_users, mfk_splitmix64,
                                       MFK_USER_CHUNK)

cdef packed struct Rating:
    int32_t u
    int32_t i
    float r

cdef enum:
    PREFETCH_AHEAD = 8
    # the row-grouped epoch prefetches a user's factor row and scalars this many users
    # ahead, and the start of the user's ratings half as many
    USERS_AHEAD = 8

#: loss codes understood by the kernels
LOSS_SQUARED = 0
LOSS_HUBER = 1
LOSS_ABSOLUTE = 2


cdef inline floating _psi(floating e, int loss, floating delta) noexcept nogil:
    """Influence function of the loss: minus its derivative in the prediction."""
    if loss == 0:
        return e
    if loss == 1:
        if e > delta:
            return delta
        if e < -delta:
            return -delta
        return e
    if e > 0:
        return 1
    if e < 0:
        return -1
    return 0


cdef Py_ssize_t _sweep(const Rating *recs, Py_ssize_t n,
                       floating *P, floating *Q, floating *bu, floating *bi, int k,
                       floating mu, floating lr, floating reg, floating reg_bias, bint biases,
                       const floating *P0, const floating *Q0, floating prior,
                       int loss, floating delta,
                       floating *Gp, floating *Gq, floating *Gbu, floating *Gbi,
                       double *sse_out, int isa, Py_ssize_t ss=1) noexcept nogil:
    """One pass over recs[0:n] in order. P0 == NULL: no prior; Gp == NULL: plain steps.
    Returns -1 on success, else the position of the first rating whose residual was not
    finite (the factors up to that rating have been updated). isa > 0 runs the fused sweep
    of _sgd_kernel.h on that path; 0 the portable loop below. `ss` is the stride of the
    per-row scalars (bu, Gbu, Gp and bi, Gbi, Gq): 1 for separate arrays, 4 when packed (see
    `_Packed`); the portable loop takes separate arrays only."""
    cdef mfk_sgd_f32 a32
    cdef mfk_sgd_f64 a64
    if isa > 0:
        if floating is float:
            mfk_sgd_fill_f32(&a32, P, Q, bu, bi, P0, Q0, Gp, Gq, Gbu, Gbi, mu, lr, reg,
                             reg_bias, prior, delta, k, biases, loss, ss)
            return mfk_sgd_sweep_f32(isa, recs, n, &a32, sse_out)
        else:
            mfk_sgd_fill_f64(&a64, P, Q, bu, bi, P0, Q0, Gp, Gq, Gbu, Gbi, mu, lr, reg,
                             reg_bias, prior, delta, k, biases, loss, ss)
            return mfk_sgd_sweep_f64(isa, recs, n, &a64, sse_out)
    cdef Py_ssize_t t, ahead
    cdef int row_bytes = k * sizeof(floating)
    cdef int32_t u, i
    cdef floating pred, e, g, b, gb, sp, sq
    cdef floating steps[4]
    # 1/k: exact for the usual powers of two, within one rounding of "/ k" otherwise
    cdef floating inv_k = (<floating>1) / k
    cdef floating *p
    cdef floating *q
    cdef const floating *p0
    cdef const floating *q0
    cdef bint has_prior = P0 != NULL
    cdef bint adagrad = Gp != NULL
    cdef double sse = 0.0
    cdef Py_ssize_t bad = -1
    for t in range(n):
        ahead = t + PREFETCH_AHEAD
        if ahead < n:
            u = recs[ahead].u
            i = recs[ahead].i
            mf_prefetch_row(P + <Py_ssize_t>u * k, row_bytes)
            mf_prefetch_row(Q + <Py_ssize_t>i * k, row_bytes)
            # the scalars of the same rating live in other arrays: ask for their lines too
            if biases:
                mf_prefetch_row(bu + u, 1)
                mf_prefetch_row(bi + i, 1)
                if adagrad:
                    mf_prefetch_row(Gbu + u, 1)
                    mf_prefetch_row(Gbi + i, 1)
            if adagrad:
                mf_prefetch_row(Gp + u, 1)
                mf_prefetch_row(Gq + i, 1)
        u = recs[t].u
        i = recs[t].i
        p = P + <Py_ssize_t>u * k
        q = Q + <Py_ssize_t>i * k
        if floating is float:
            pred = mu + mf_dot_f32(p, q, k)
        else:
            pred = mu + mf_dot_f64(p, q, k)
        if biases:
            pred = pred + bu[u] + bi[i]
        e = <floating>recs[t].r - pred
        if not (fabs(e) < 1e30):
            bad = t
            break
        sse += <double>e * e
        g = _psi(e, loss, delta)
        if not adagrad:
            if biases:
                b = bu[u]
                bu[u] = b + lr * (g - reg_bias * b)
                b = bi[i]
                bi[i] = b + lr * (g - reg_bias * b)
            if has_prior:
                if floating is float:
                    mf_sgd_pair_prior_f32(p, q, P0 + <Py_ssize_t>u * k,
                                          Q0 + <Py_ssize_t>i * k, k, g, lr, reg, prior)
                else:
                    mf_sgd_pair_prior_f64(p, q, P0 + <Py_ssize_t>u * k,
                                          Q0 + <Py_ssize_t>i * k, k, g, lr, reg, prior)
            else:
                if floating is float:
                    mf_sgd_pair_f32(p, q, k, g, lr, reg)
                else:
                    mf_sgd_pair_f64(p, q, k, g, lr, reg)
        else:
            # steps from the accumulators before this rating: [p_u, q_i, b_u, b_i]
            if floating is float:
                mf_ada_steps_f32(lr, Gp[u], Gq[i], Gbu[u] if biases else 1,
                                 Gbi[i] if biases else 1, steps)
            else:
                mf_ada_steps_f64(lr, Gp[u], Gq[i], Gbu[u] if biases else 1,
                                 Gbi[i] if biases else 1, steps)
            if biases:
                b = bu[u]
                gb = g - reg_bias * b
                bu[u] = b + steps[2] * gb
                Gbu[u] = Gbu[u] + gb * gb
                b = bi[i]
                gb = g - reg_bias * b
                bi[i] = b + steps[3] * gb
                Gbi[i] = Gbi[i] + gb * gb
            p0 = NULL
            q0 = NULL
            if has_prior:
                p0 = P0 + <Py_ssize_t>u * k
                q0 = Q0 + <Py_ssize_t>i * k
            if floating is float:
                mf_sgd_pair_ada_f32(p, q, p0, q0, k, g, steps[0], steps[1], reg, prior,
                                    &sp, &sq)
            else:
                mf_sgd_pair_ada_f64(p, q, p0, q0, k, g, steps[0], steps[1], reg, prior,
                                    &sp, &sq)
            Gp[u] = Gp[u] + sp * inv_k
            Gq[i] = Gq[i] + sq * inv_k
    sse_out[0] = sse
    return bad


cdef void _shuffle(Rating *recs, Py_ssize_t n, uint64_t seed) noexcept nogil:
    """Fisher-Yates shuffle of recs[0:n] driven by splitmix64 from `seed` (the permutation
    of _common's shuffles; see mfk_shuffle_records)."""
    mfk_shuffle_records(recs, n, seed)


cdef floating *_opt_ptr(floating[::1] a) noexcept:
    if a is None or a.shape[0] == 0:
        return NULL
    return &a[0]


def _check_state(floating[:, ::1] P, floating[:, ::1] Q, floating[::1] bu, floating[::1] bi,
                 bint biases, P0, Q0, int loss, double delta, Gp, Gq, Gbu, Gbi, int isa=0):
    if not mfkit_isa_runs(isa):
        runs = [j for j in range(4) if mfkit_isa_runs(j)]
        raise ValueError(f"isa={isa} is not a kernel path this CPU runs: use one of {runs}"
                         " (mfkit.isa_level() gives the current one)")
    if Q.shape[1] != P.shape[1]:
        raise ValueError("P and Q must have the same number of columns")
    if P.shape[0] == 0 or Q.shape[0] == 0 or P.shape[1] == 0:
        raise ValueError("P and Q must have at least one row and one column")
    if biases and (bu.shape[0] != P.shape[0] or bi.shape[0] != Q.shape[0]):
        raise ValueError("bias arrays must match the factor rows")
    if (P0 is None) != (Q0 is None):
        raise ValueError("give both prior factors P0 and Q0, or neither")
    if P0 is not None and (P0.shape[0] != P.shape[0] or Q0.shape[0] != Q.shape[0]
                           or P0.shape[1] != P.shape[1] or Q0.shape[1] != Q.shape[1]):
        raise ValueError("prior factors must have the shapes of the factors")
    if loss not in (LOSS_SQUARED, LOSS_HUBER, LOSS_ABSOLUTE):
        raise ValueError(f"unknown loss code {loss}")
    if loss == LOSS_HUBER and not delta > 0:
        raise ValueError("huber delta must be > 0")
    if Gp is None:
        if Gq is not None or Gbu is not None or Gbi is not None:
            raise ValueError("AdaGrad accumulators must all be given, or none")
    else:
        if Gq is None or Gp.shape[0] != P.shape[0] or Gq.shape[0] != Q.shape[0]:
            raise ValueError("AdaGrad accumulators Gp, Gq must have one entry per factor row")
        if biases and (Gbu is None or Gbi is None or Gbu.shape[0] != P.shape[0]
                       or Gbi.shape[0] != Q.shape[0]):
            raise ValueError("AdaGrad bias accumulators must have one entry per bias")


cdef int _check_plan(const int64_t[::1] strata, int n_threads) except -1:
    """The checks of a stratified epoch's plan: the strata a permutation of 0..B-1 (B their
    count), at least one thread."""
    cdef Py_ssize_t B = strata.shape[0], si
    seen = np.zeros(B, dtype=bool)
    for si in range(B):
        if strata[si] < 0 or strata[si] >= B or seen[strata[si]]:
            raise ValueError("strata must be a permutation of 0..B-1")
        seen[strata[si]] = True
    if n_threads < 1:
        raise ValueError("n_threads must be >= 1")
    return 0


cdef object _pack(floating[::1] b, floating[::1] gb, floating[::1] g):
    """The per-row scalars of one side (bias, its accumulator, the row's accumulator) packed
    one row per 4 slots, so that a rating touches one cache line for them instead of three.
    Only a layout: the fused sweep does the same arithmetic on it (the same bits)."""
    out = np.zeros((g.shape[0], 4), dtype=np.asarray(g).dtype)
    out[:, 0] = np.asarray(b)
    out[:, 1] = np.asarray(gb)
    out[:, 2] = np.asarray(g)
    return out


cdef void _unpack(object packed, floating[::1] b, floating[::1] gb, floating[::1] g):
    np.asarray(b)[:] = packed[:, 0]
    np.asarray(gb)[:] = packed[:, 1]
    np.asarray(g)[:] = packed[:, 2]


cdef object _packed_sides(int isa, bint biases, floating[::1] bu, floating[::1] bi,
                          floating[::1] Gbu, floating[::1] Gbi, floating[::1] Gp,
                          floating[::1] Gq):
    """(users, items) packed for a fast path with biases and AdaGrad, else None."""
    if isa > 0 and biases and Gp is not None and Gp.shape[0] > 0:
        return _pack(bu, Gbu, Gp), _pack(bi, Gbi, Gq)
    return None


cdef void _point(object packed, floating **b, floating **gb, floating **g):
    """Point b, gb, g at the three columns of one packed side (kept alive by the caller)."""
    cdef floating[:, ::1] side = packed
    b[0] = &side[0, 0]
    gb[0] = &side[0, 1]
    g[0] = &side[0, 2]


cdef object _scalars(int isa, bint biases, floating[::1] bu, floating[::1] bi,
                     floating[::1] Gbu, floating[::1] Gbi, floating[::1] Gp, floating[::1] Gq,
                     floating **pbu, floating **pbi, floating **gbu, floating **gbi,
                     floating **gp, floating **gq, Py_ssize_t *ss):
    """Point the kernels at the per-row scalars: the two packed sides (returned, with
    *ss = 4; the caller keeps them alive and hands them to `_restore` after the sweep) on a
    fast path with biases and AdaGrad, else the arrays themselves (None, *ss = 1; NULL for
    an array not given)."""
    pbu[0] = _opt_ptr(bu)
    pbi[0] = _opt_ptr(bi)
    gbu[0] = _opt_ptr(Gbu)
    gbi[0] = _opt_ptr(Gbi)
    gp[0] = _opt_ptr(Gp)
    gq[0] = _opt_ptr(Gq)
    ss[0] = 1
    packed = _packed_sides(isa, biases, bu, bi, Gbu, Gbi, Gp, Gq)
    if packed is not None:
        _point(packed[0], pbu, gbu, gp)
        _point(packed[1], pbi, gbi, gq)
        ss[0] = 4
    return packed


cdef void _restore(object packed, floating[::1] bu, floating[::1] bi, floating[::1] Gbu,
                   floating[::1] Gbi, floating[::1] Gp, floating[::1] Gq):
    """Copy packed sides (from `_scalars`) back into the arrays; nothing when None."""
    if packed is not None:
        _unpack(packed[0], bu, Gbu, Gp)
        _unpack(packed[1], bi, Gbi, Gq)


def sgd_epoch(const Rating[::1] recs, floating[:, ::1] P, floating[:, ::1] Q,
              floating[::1] bu, floating[::1] bi, double mu, double lr, double reg,
              double reg_bias, bint biases, const floating[:, ::1] P0=None,
              const floating[:, ::1] Q0=None, double prior=0.0, *, int loss=LOSS_SQUARED,
              double delta=1.0, floating[::1] Gp=None, floating[::1] Gq=None,
              floating[::1] Gbu=None, floating[::1] Gbi=None, int isa=0):
    """One serial SGD pass over `recs` (a RATING_DTYPE array) in storage order.

    `loss` is a LOSS_* code (`delta` the Huber threshold); giving the AdaGrad
    accumulators Gp, Gq (and Gbu, Gbi with biases) switches to row-adaptive steps.
    `isa` is the kernel path (mfkit._core.isa.isa_level(): 0 the portable loop, the same
    bits everywhere; 1 AVX2+FMA, 2 AVX-512 and 3 NEON (aarch64), the fused sweep of
    _sgd_kernel.h, which give the same bits as each other); a path the CPU lacks is a
    ValueError.
    Returns (sum of squared residuals seen, position of the first non-finite residual or -1).
    """
    cdef double sse = 0.0
    cdef Py_ssize_t bad
    cdef int k = P.shape[1]
    cdef const floating *p0 = NULL
    cdef const floating *q0 = NULL
    _check_state(P, Q, bu, bi, biases, P0, Q0, loss, delta, Gp, Gq, Gbu, Gbi, isa)
    if P0 is not None:
        p0 = &P0[0, 0]
        q0 = &Q0[0, 0]
    cdef floating *pbu, *pbi, *gp, *gq, *gbu, *gbi  # the per-row scalars (_scalars)
    cdef Py_ssize_t n = recs.shape[0]
    if n == 0:
        return 0.0, -1
    cdef Py_ssize_t ss
    packed = _scalars(isa, biases, bu, bi, Gbu, Gbi, Gp, Gq, &pbu, &pbi, &gbu, &gbi, &gp,
                      &gq, &ss)
    with nogil:
        bad = _sweep(&recs[0], n, &P[0, 0], &Q[0, 0], pbu, pbi, k, <floating>mu,
                     <floating>lr, <floating>reg, <floating>reg_bias, biases, p0, q0,
                     <floating>prior, loss, <floating>delta, gp, gq, gbu, gbi, &sse, isa,
                     ss)
    _restore(packed, bu, bi, Gbu, Gbi, Gp, Gq)
    return sse, bad


def shuffle_records(Rating[::1] recs, uint64_t seed):
    """Fisher-Yates shuffle of the records driven by splitmix64 from `seed`."""
    cdef Py_ssize_t n = recs.shape[0]
    if n > 1:
        with nogil:
            _shuffle(&recs[0], n, seed)


def sgd_block_epoch(Rating[::1] recs, const int64_t[::1] offsets, const int64_t[::1] strata,
                    const uint64_t[::1] block_seeds, bint shuffle, int n_threads,
                    floating[:, ::1] P, floating[:, ::1] Q, floating[::1] bu,
                    floating[::1] bi, double mu, double lr, double reg, double reg_bias,
                    bint biases, const floating[:, ::1] P0=None,
                    const floating[:, ::1] Q0=None, double prior=0.0, *,
                    int loss=LOSS_SQUARED, double delta=1.0, floating[::1] Gp=None,
                    floating[::1] Gq=None, floating[::1] Gbu=None, floating[::1] Gbi=None,
                    int isa=0):
    """One stratified SGD epoch over records laid out by `build_blocks`.

    For each s in `strata` in order, the blocks s*B + g (g = 0..B-1) are processed in
    parallel; block b is first shuffled in place with seed `block_seeds[b]` (when
    `shuffle`), then swept in storage order by one thread with the update of `sgd_epoch`.
    The result does not depend on `n_threads`. `isa` as in `sgd_epoch`. Returns (sum of
    squared residuals seen, -1 on success or the first block index with a non-finite residual).
    """
    cdef Py_ssize_t B = strata.shape[0], nb, si, g, blk, a, m, n = recs.shape[0]
    cdef int k = P.shape[1]
    cdef int64_t s
    cdef const floating *p0 = NULL
    cdef const floating *q0 = NULL
    cdef double sse = 0.0
    cdef Py_ssize_t status = -1
    _check_state(P, Q, bu, bi, biases, P0, Q0, loss, delta, Gp, Gq, Gbu, Gbi, isa)
    nb = B * B
    if B < 1 or offsets.shape[0] != nb + 1 or block_seeds.shape[0] != nb:
        raise ValueError("offsets must have B*B + 1 and block_seeds B*B entries")
    if offsets[0] != 0 or offsets[nb] != n:
        raise ValueError("offsets must start at 0 and end at the number of records")
    for blk in range(nb):
        if offsets[blk + 1] < offsets[blk]:
            raise ValueError("offsets must not decrease")
    _check_plan(strata, n_threads)
    if P0 is not None:
        p0 = &P0[0, 0]
        q0 = &Q0[0, 0]
    cdef floating *pP = &P[0, 0]
    cdef floating *pQ = &Q[0, 0]
    cdef floating *pbu, *pbi, *gp, *gq, *gbu, *gbi  # the per-row scalars (_scalars)
    if n == 0:
        return 0.0, -1
    sse_arr = np.zeros(nb, dtype=np.float64)
    bad_arr = np.full(nb, -1, dtype=np.intp)
    cdef double[::1] sse_b = sse_arr
    cdef Py_ssize_t[::1] bad_b = bad_arr
    cdef double *psse = &sse_b[0]
    cdef Py_ssize_t *pbad = &bad_b[0]
    cdef Rating *base = &recs[0]
    cdef Py_ssize_t ss
    packed = _scalars(isa, biases, bu, bi, Gbu, Gbi, Gp, Gq, &pbu, &pbi, &gbu, &gbi, &gp,
                      &gq, &ss)
    with nogil:
        for si in range(B):
            s = strata[si]
            for g in prange(B, num_threads=n_threads, schedule='dynamic', chunksize=1):
                blk = s * B + g
                a = offsets[blk]
                m = offsets[blk + 1] - a
                if m > 0:
                    if shuffle:
                        _shuffle(base + a, m, block_seeds[blk])
                    pbad[blk] = _sweep(base + a, m, pP, pQ, pbu, pbi, k, <floating>mu,
                                       <floating>lr, <floating>reg, <floating>reg_bias,
                                       biases, p0, q0, <floating>prior, loss,
                                       <floating>delta, gp, gq, gbu, gbi, psse + blk, isa,
                                       ss)
            for blk in range(s * B, s * B + B):
                if pbad[blk] >= 0:
                    status = blk
                    break
            if status >= 0:
                break
        # a fixed summation order keeps the reported loss independent of the threads too
        for blk in range(nb):
            sse += psse[blk]
    _restore(packed, bu, bi, Gbu, Gbi, Gp, Gq)
    return sse, status


cdef void _rows_pair(const int32_t *indices, const float *values, const int64_t *seg,
                     Py_ssize_t stride, const Py_ssize_t *h, const int32_t **users,
                     const Py_ssize_t *n_block, int nblk, bint shuffle, Py_ssize_t chunk,
                     const uint64_t *seed, Py_ssize_t max_seg, floating *P, floating *Q,
                     floating *bu, floating *bi, int k, floating mu, floating lr, floating reg,
                     floating reg_bias, bint biases, const floating *P0, const floating *Q0,
                     floating prior, int loss, floating delta, floating *Gp, floating *Gq,
                     floating *Gbu, floating *Gbi, double *sse_out, Py_ssize_t *bad_out, int isa,
                     Py_ssize_t ss) noexcept nogil:
    """Blocks 0 .. nblk - 1 (one or two, of one stratum: no user and no item in common) of
    the row-grouped epoch.

    Block b's users users[b][0:n_block[b]] (ascending) are put in their visiting order by
    `mfk_order_users` from seed[b] (chunks of `chunk` consecutive entries in a
    Fisher-Yates order, then each chunk's users in one of their own); then, for each user in
    that order, one more draw x of the same stream fixes
    the order of the user's m ratings in item group h[b]: a rotation of their CSR run
    starting at offset ((x >> 32) * m) >> 32, forwards when x is even and backwards when odd
    (no shuffle: users ascending, every run forwards from its start). On a fast path with k
    in 16, 32, 64, 128 and no prior, the kernel's `rows` body walks the runs with p_u held
    in registers, the two blocks' ratings interleaved (their step-size chains overlap; each
    row sees the same updates as with the blocks one after the other); otherwise each run
    is written as records into a scratch array and swept by `_sweep`. Either way the
    arithmetic is the record sweep's on this visiting order (the same bits). bad_out[b] is
    -1, the CSR position of block b's first rating with a non-finite residual, or -2 when
    the scratch could not be allocated; sse_out[b] its squared residuals."""
    cdef int32_t *order[2]
    cdef const mfk_rows *rp[2]
    cdef mfk_rows r[2]
    cdef mfk_sgd_f32 a32
    cdef mfk_sgd_f64 a64
    cdef uint64_t state[2]
    cdef Py_ssize_t status = -2, n_chunks
    cdef int b
    order[0] = order[1] = NULL
    rp[1] = NULL
    for b in range(nblk):
        sse_out[b] = 0.0
        bad_out[b] = -2
        # the order, then (with shuffle) the scratch of its chunk numbers
        n_chunks = (n_block[b] + chunk - 1) // chunk
        order[b] = <int32_t *>malloc((n_block[b] + n_chunks + 1) * sizeof(int32_t))
        if order[b] == NULL:
            free(order[0])
            return
        state[b] = seed[b]
        if shuffle:
            mfk_order_users(order[b], order[b] + n_block[b], users[b], n_block[b], chunk,
                            &state[b])
        elif n_block[b] > 0:
            memcpy(order[b], users[b], n_block[b] * sizeof(int32_t))
        r[b].order = order[b]
        r[b].n = n_block[b]
        r[b].seg = seg
        r[b].stride = stride
        r[b].h = h[b]
        r[b].indices = indices
        r[b].values = values
        r[b].state = state[b]
        r[b].shuffle = shuffle
        rp[b] = &r[b]
    if isa > 0 and P0 == NULL and (k == 16 or k == 32 or k == 64 or k == 128):
        if floating is float:
            mfk_sgd_fill_f32(&a32, P, Q, bu, bi, NULL, NULL, Gp, Gq, Gbu, Gbi, mu, lr, reg,
                             reg_bias, 0, delta, k, biases, loss, ss)
            status = mfk_sgd_rows_f32(isa, rp, &a32, sse_out, bad_out)
        else:
            mfk_sgd_fill_f64(&a64, P, Q, bu, bi, NULL, NULL, Gp, Gq, Gbu, Gbi, mu, lr, reg,
                             reg_bias, 0, delta, k, biases, loss, ss)
            status = mfk_sgd_rows_f64(isa, rp, &a64, sse_out, bad_out)
    if status == -2:
        for b in range(nblk):
            bad_out[b] = _records_block(order[b], n_block[b], seg, stride, h[b], indices,
                                        values, state[b], shuffle, max_seg, P, Q, bu, bi, k,
                                        mu, lr, reg, reg_bias, biases, P0, Q0, prior, loss,
                                        delta, Gp, Gq, Gbu, Gbi, sse_out + b, isa, ss)
    free(order[0])
    free(order[1])


cdef Py_ssize_t _records_block(const int32_t *order, Py_ssize_t n_block, const int64_t *seg,
                               Py_ssize_t stride, Py_ssize_t h, const int32_t *indices,
                               const float *values, uint64_t state, bint shuffle,
                               Py_ssize_t max_seg, floating *P, floating *Q, floating *bu,
                               floating *bi, int k, floating mu, floating lr, floating reg,
                               floating reg_bias, bint biases, const floating *P0,
                               const floating *Q0, floating prior, int loss, floating delta,
                               floating *Gp, floating *Gq, floating *Gbu, floating *Gbi,
                               double *sse_out, int isa, Py_ssize_t ss) noexcept nogil:
    """One block of the row-grouped epoch by the record route (see `_rows_pair`): the users
    order[0:n_block] in their visiting order, `state` where their shuffle left the stream.
    Returns -1, the CSR position of the first bad rating, or -2 (no scratch)."""
    cdef Rating *buf = NULL
    cdef uint64_t x
    cdef Py_ssize_t j, t, a, m, off, pos, bad, status = -1
    cdef int32_t u, ua
    cdef int row_bytes = k * sizeof(floating)
    cdef double sse = 0.0, s
    cdef bint back
    buf = <Rating *>malloc((max_seg if max_seg > 0 else 1) * sizeof(Rating))
    if buf == NULL:
        sse_out[0] = 0.0
        return -2
    for j in range(n_block):
        if j + USERS_AHEAD < n_block:
            ua = order[j + USERS_AHEAD]
            mf_prefetch_row(P + <Py_ssize_t>ua * k, row_bytes)
            mf_prefetch_row(seg + <Py_ssize_t>ua * stride + h, 16)
            if biases:
                mf_prefetch_row(bu + <Py_ssize_t>ua * ss, 1)
            if Gp != NULL:
                mf_prefetch_row(Gp + <Py_ssize_t>ua * ss, 1)
        if j + USERS_AHEAD // 2 < n_block:
            a = seg[<Py_ssize_t>order[j + USERS_AHEAD // 2] * stride + h]
            mf_prefetch_row(indices + a, 64)
            mf_prefetch_row(values + a, 64)
        u = order[j]
        a = seg[<Py_ssize_t>u * stride + h]
        m = seg[<Py_ssize_t>u * stride + h + 1] - a
        off = 0
        back = False
        if shuffle:
            x = mfk_splitmix64(&state)
            off = <Py_ssize_t>(((x >> 32) * <uint64_t>m) >> 32)
            back = (x & 1) != 0
        if m == 0:
            continue
        pos = off
        for t in range(m):
            buf[t].u = u
            buf[t].i = indices[a + pos]
            buf[t].r = values[a + pos]
            if back:
                pos = pos - 1 if pos > 0 else m - 1
            else:
                pos = pos + 1 if pos + 1 < m else 0
        bad = _sweep(buf, m, P, Q, bu, bi, k, mu, lr, reg, reg_bias, biases, P0, Q0, prior,
                     loss, delta, Gp, Gq, Gbu, Gbi, &s, isa, ss)
        sse += s
        if bad >= 0:
            # the CSR position of the bad rating (the rotation above, bad steps on)
            if back:
                pos = off - bad
                if pos < 0:
                    pos = pos + m
            else:
                pos = (off + bad) % m
            status = a + pos
            break
    free(buf)
    sse_out[0] = sse
    return status


cdef void _rows_task(Py_ssize_t g, Py_ssize_t half, Py_ssize_t s, Py_ssize_t B,
                     const int64_t[::1] group_ptr, const uint64_t[::1] block_seeds,
                     const int32_t *indices, const float *values, const int64_t *seg,
                     Py_ssize_t stride, const int32_t *users, bint shuffle, Py_ssize_t chunk,
                     Py_ssize_t max_seg,
                     floating *P, floating *Q, floating *bu, floating *bi, int k, floating mu,
                     floating lr, floating reg, floating reg_bias, bint biases,
                     const floating *P0, const floating *Q0, floating prior, int loss,
                     floating delta, floating *Gp, floating *Gq, floating *Gbu, floating *Gbi,
                     double *psse, Py_ssize_t *pbad, int isa, Py_ssize_t ss) noexcept nogil:
    """Task g of stratum s of `sgd_rows_epoch`: user groups g and g + half (when below B)
    with their item groups, by `_rows_pair`; their sse and status into psse/pbad."""
    cdef Py_ssize_t h[2]
    cdef const int32_t *tu[2]
    cdef Py_ssize_t tn[2], tbad[2], gb
    cdef uint64_t tseed[2]
    cdef double tsse[2]
    cdef int nblk = 2 if g + half < B else 1, b
    for b in range(nblk):
        gb = g + b * half
        h[b] = (gb + s) % B
        tu[b] = users + group_ptr[gb]
        tn[b] = group_ptr[gb + 1] - group_ptr[gb]
        tseed[b] = block_seeds[s * B + gb]
    _rows_pair(indices, values, seg, stride, h, tu, tn, nblk, shuffle, chunk, tseed, max_seg,
               P, Q, bu, bi, k, mu, lr, reg, reg_bias, biases, P0, Q0, prior, loss, delta, Gp,
               Gq, Gbu, Gbi, tsse, tbad, isa, ss)
    for b in range(nblk):
        psse[s * B + g + b * half] = tsse[b]
        pbad[s * B + g + b * half] = tbad[b]


def sgd_rows_epoch(const int64_t[::1] indptr, const int32_t[::1] indices,
                   const float[::1] values, const int64_t[:, ::1] seg,
                   const int32_t[::1] group_users, const int64_t[::1] group_ptr,
                   const int64_t[::1] strata, const uint64_t[::1] block_seeds, bint shuffle,
                   int n_threads, floating[:, ::1] P, floating[:, ::1] Q, floating[::1] bu,
                   floating[::1] bi, double mu, double lr, double reg, double reg_bias,
                   bint biases, const floating[:, ::1] P0=None,
                   const floating[:, ::1] Q0=None, double prior=0.0, *,
                   int loss=LOSS_SQUARED, double delta=1.0, floating[::1] Gp=None,
                   floating[::1] Gq=None, floating[::1] Gbu=None, floating[::1] Gbi=None,
                   int isa=0, Py_ssize_t user_chunk=MFK_USER_CHUNK):
    """One stratified SGD epoch visiting the ratings grouped by user, straight from the CSR
    arrays (no record copy).

    Users are in B groups (group g's users ascending in group_users[group_ptr[g]:
    group_ptr[g + 1]]) and items in B contiguous ranges; `seg` (from `row_segments`) gives
    each user's run of ratings in each item range. Block b = s * B + g is user group g with
    item group (g + s) mod B; for each s in `strata` in order the B blocks of stratum s run
    in parallel (they share no user and no item), block b visited as `_rows_pair` says with
    seed block_seeds[b] (when `shuffle`; its users shuffled in chunks of `user_chunk`, 16 in
    every fit; 1 is one Fisher-Yates order of them all, for the benchmark's comparison). A
    user's consecutive ratings update its row in turn, each step from the row the previous
    one left: the record sweep's arithmetic on this visiting order, so every path gives the
    bits `sgd_epoch` gives on the same records in the same order, and nothing depends on
    `n_threads`. The item indices must be in range (``Ratings`` guarantees it;
    `row_segments` checks them). `isa` as in `sgd_epoch`. Returns (sum of squared residuals
    seen, -1 on success or the first block index with a non-finite residual).
    """
    cdef Py_ssize_t B = strata.shape[0], nb, si, g, blk, n_users = indptr.shape[0] - 1
    cdef Py_ssize_t stride, u, c, max_seg = 0, n = indices.shape[0]
    cdef int k = P.shape[1]
    cdef int64_t s
    cdef const floating *p0 = NULL
    cdef const floating *q0 = NULL
    cdef double sse = 0.0
    cdef Py_ssize_t status = -1
    cdef bint bad_seg = False
    _check_state(P, Q, bu, bi, biases, P0, Q0, loss, delta, Gp, Gq, Gbu, Gbi, isa)
    nb = B * B
    if B < 1 or block_seeds.shape[0] != nb or group_ptr.shape[0] != B + 1:
        raise ValueError("block_seeds must have B*B and group_ptr B + 1 entries")
    if n_users != P.shape[0] or values.shape[0] != n:
        raise ValueError("indptr must have one entry per factor row plus one, and values "
                         "one per index")
    if indptr[0] != 0 or indptr[n_users] != n:
        raise ValueError("indptr must start at 0 and end at the number of ratings")
    if seg.shape[0] != n_users or seg.shape[1] != B + 1:
        raise ValueError("seg must have one row per user and B + 1 columns (row_segments)")
    if group_ptr[0] != 0 or group_ptr[B] != group_users.shape[0]:
        raise ValueError("group_ptr must start at 0 and end at the number of grouped users")
    for g in range(B):
        if group_ptr[g + 1] < group_ptr[g]:
            raise ValueError("group_ptr must not decrease")
    for c in range(group_users.shape[0]):
        if group_users[c] < 0 or group_users[c] >= n_users:
            raise ValueError("group_users holds a user index out of range")
    _check_plan(strata, n_threads)
    if user_chunk < 1 or user_chunk > 1 << 30:
        raise ValueError(f"user_chunk must be a positive count of users, got {user_chunk}")
    with nogil:
        # the runs must lie inside their rows: a wrong seg would read out of bounds
        for u in range(n_users):
            if seg[u, 0] != indptr[u] or seg[u, B] != indptr[u + 1]:
                bad_seg = True
                break
            for c in range(B):
                if seg[u, c + 1] < seg[u, c]:
                    bad_seg = True
                if seg[u, c + 1] - seg[u, c] > max_seg:
                    max_seg = seg[u, c + 1] - seg[u, c]
    if bad_seg:
        raise ValueError("seg does not describe runs of the CSR rows (use row_segments)")
    if P0 is not None:
        p0 = &P0[0, 0]
        q0 = &Q0[0, 0]
    cdef floating *pP = &P[0, 0]
    cdef floating *pQ = &Q[0, 0]
    cdef floating *pbu, *pbi, *gp, *gq, *gbu, *gbi  # the per-row scalars (_scalars)
    if n == 0:
        return 0.0, -1
    sse_arr = np.zeros(nb, dtype=np.float64)
    bad_arr = np.full(nb, -1, dtype=np.intp)
    cdef double[::1] sse_b = sse_arr
    cdef Py_ssize_t[::1] bad_b = bad_arr
    cdef double *psse = &sse_b[0]
    cdef Py_ssize_t *pbad = &bad_b[0]
    cdef const int32_t *pidx = &indices[0]
    cdef const float *pval = &values[0]
    cdef const int64_t *pseg = &seg[0, 0]
    cdef const int32_t *pusers = &group_users[0] if group_users.shape[0] > 0 else NULL
    stride = B + 1
    cdef Py_ssize_t ss
    packed = _scalars(isa, biases, bu, bi, Gbu, Gbi, Gp, Gq, &pbu, &pbi, &gbu, &gbi, &gp,
                      &gq, &ss)
    # a task is blocks g and g + half of a stratum (interleaved by the fast paths) while
    # that leaves every thread a task, else one block; the factors are the same either way
    cdef Py_ssize_t half = (B + 1) // 2 if B >= 2 * n_threads else B
    with nogil:
        for si in range(B):
            s = strata[si]
            for g in prange(half, num_threads=n_threads, schedule='dynamic', chunksize=1):
                _rows_task(g, half, s, B, group_ptr, block_seeds, pidx, pval, pseg, stride,
                           pusers, shuffle, user_chunk, max_seg, pP, pQ, pbu, pbi, k,
                           <floating>mu,
                           <floating>lr, <floating>reg, <floating>reg_bias, biases, p0, q0,
                           <floating>prior, loss, <floating>delta, gp, gq, gbu, gbi, psse,
                           pbad, isa, ss)
            for blk in range(s * B, s * B + B):
                if pbad[blk] != -1:
                    status = blk
                    break
            if status >= 0:
                break
        for blk in range(nb):
            sse += psse[blk]
    _restore(packed, bu, bi, Gbu, Gbi, Gp, Gq)
    if status >= 0 and bad_arr[status] == -2:
        raise MemoryError("no memory for the scratch of the row-grouped SGD epoch")
    return sse, status
