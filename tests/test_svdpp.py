"""SVD++ (SGD(implicit_feedback=True)): the chunked, stratified epoch against a plain-NumPy
SVD++ update written from the equations in the documented order, the layout and the seeded
plan against independent re-implementations, thread independence, and the model around it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mfkit
from mfkit.models import _blocks, _svdpp
from mfkit.models.sgd import (
    RATING_DTYPE,
    SVDPP_CHUNK_COUPLING,
    balanced_groups,
    resolve_svdpp_blocks,
    svdpp_chunks,
    svdpp_threads,
)
from tests.test_sgd_parallel import SplitMix64, fisher_yates


def small_ratings(seed: int, n_users: int = 30, n_items: int = 25, density: float = 0.3):
    """A random sparse rating set where every user has at least one rating."""
    g = np.random.default_rng(seed)
    mask = g.random((n_users, n_items)) < density
    mask[np.arange(n_users), g.integers(n_items, size=n_users)] = True
    u, i = np.nonzero(mask)
    r = g.integers(1, 6, size=len(u)).astype(np.float32)
    return mfkit.Ratings.from_triplets(u, i, r, shape=(n_users, n_items), map_ids=False)


class Layout:
    """The kernel's inputs for C chunks and B groups, built here with NumPy: records sorted
    stably by block (c * B + s) * B + g, users by (chunk, group)."""

    def __init__(self, X: mfkit.Ratings, C: int, B: int, seed: int) -> None:
        g = np.random.default_rng(seed)
        self.C, self.B = C, B
        self.uc = g.integers(C, size=X.n_users).astype(np.int32)
        self.ug = g.integers(B, size=X.n_users).astype(np.int32)
        self.ig = g.integers(B, size=X.n_items).astype(np.int32)
        users = X.user_index()
        s = (self.ig[X.indices] - self.ug[users]) % B
        block = (self.uc[users].astype(np.int64) * B + s) * B + self.ug[users]
        order = np.argsort(block, kind="stable")
        self.expected = np.empty(X.nnz, dtype=RATING_DTYPE)
        self.expected["u"], self.expected["i"] = users[order], X.indices[order]
        self.expected["r"] = X.values[order]
        self.expected_offsets = np.concatenate(
            [[0], np.cumsum(np.bincount(block, minlength=C * B * B))]
        ).astype(np.int64)
        self.records = np.empty(X.nnz, dtype=RATING_DTYPE)
        self.offsets = np.empty(C * B * B + 1, dtype=np.int64)
        _svdpp.build_layout(
            X.indptr,
            X.indices,
            X.values,
            self.uc,
            self.ug,
            self.ig,
            C,
            B,
            self.records,
            self.offsets,
        )
        key = self.uc.astype(np.int64) * B + self.ug
        self.chunk_users = np.argsort(key, kind="stable").astype(np.int32)
        self.chunk_ptr = np.concatenate([[0], np.cumsum(np.bincount(key, minlength=C * B))]).astype(
            np.int64
        )
        self.indptr, self.indices = X.indptr.astype(np.int64), X.indices.astype(np.int32)


def reference_epoch(L, order, strata, state, mu, lr, reg, reg_b, biases, acc=None, huber=None):
    """One SVD++ epoch in float64, written from the module's equations in its documented
    order, on the records as the kernel left them (each block in the order it was swept):
    for each chunk c in `order`: its strata in order, in each stratum its blocks
    g = 0..B-1 one after the other (they share no row, so this is the parallel result),
    z_u and a_u formed for the chunk's users of group g before block g of the first
    stratum; then for each item group h, the blocks (c, s, (h - s) mod B) in strata order,
    every record (u, j) giving y_j the proximal step with a_u."""
    P, Q, Y, Z, A, bu, bi = state
    B, k = L.B, P.shape[1]
    counts = np.diff(L.indptr)
    recs = L.records
    sse = 0.0
    for c in order:
        cs = strata[c * B : (c + 1) * B]
        for si, s in enumerate(cs):
            for g in range(B):
                if si == 0:
                    for u in L.chunk_users[L.chunk_ptr[c * B + g] : L.chunk_ptr[c * B + g + 1]]:
                        items = L.indices[L.indptr[u] : L.indptr[u + 1]]
                        Z[u] = Y[items].sum(axis=0) / math.sqrt(len(items)) if len(items) else 0
                        A[u] = 0
                blk = (c * B + s) * B + g
                for rec in recs[L.offsets[blk] : L.offsets[blk + 1]]:
                    u, i, r = int(rec["u"]), int(rec["i"]), float(rec["r"])
                    pred = mu + Q[i] @ (P[u] + Z[u]) + ((bu[u] + bi[i]) if biases else 0.0)
                    e = r - pred
                    sse += e * e
                    gr = e if huber is None else float(np.clip(e, -huber, huber))
                    if acc is None:
                        lp = lq = lbu = lbi = lr
                    else:
                        Gp, Gq, Gy, Gbu, Gbi = acc
                        lp, lq = lr / np.sqrt(Gp[u]), lr / np.sqrt(Gq[i])
                        lbu, lbi = lr / np.sqrt(Gbu[u]), lr / np.sqrt(Gbi[i])
                    if biases:
                        gbu, gbi = gr - reg_b * bu[u], gr - reg_b * bi[i]
                        bu[u] += lbu * gbu
                        bi[i] += lbi * gbi
                        if acc is not None:
                            Gbu[u] += gbu * gbu
                            Gbi[i] += gbi * gbi
                    p_old, q_old = P[u].copy(), Q[i].copy()
                    A[u] += gr * q_old
                    dp = gr * q_old - reg * p_old
                    dq = gr * (p_old + Z[u]) - reg * q_old
                    P[u] = p_old + lp * dp
                    Q[i] = q_old + lq * dq
                    if acc is not None:
                        Gp[u] += dp @ dp / k
                        Gq[i] += dq @ dq / k
        for h in range(B):
            for s in cs:
                blk = (c * B + s) * B + (h - s) % B
                for rec in recs[L.offsets[blk] : L.offsets[blk + 1]]:
                    u, j = int(rec["u"]), int(rec["i"])
                    n = counts[u]
                    ly = lr
                    if acc is not None:
                        Gy = acc[2]
                        ly = lr / np.sqrt(Gy[j])
                        d = A[u] / math.sqrt(n) - reg * n * Y[j]
                        Gy[j] += d @ d / k
                    Y[j] = (Y[j] + ly * A[u] / math.sqrt(n)) / (1.0 + ly * reg * n)
    return sse


def start_state(X: mfkit.Ratings, k: int, seed: int, dtype=np.float64):
    g = np.random.default_rng(seed)
    return [
        (0.1 * g.standard_normal((X.n_users, k))).astype(dtype),
        (0.1 * g.standard_normal((X.n_items, k))).astype(dtype),
        (0.1 * g.standard_normal((X.n_items, k))).astype(dtype),
        np.full((X.n_users, k), np.nan, dtype=dtype),  # Z: scratch, formed by the epoch
        np.full((X.n_users, k), np.nan, dtype=dtype),  # A: scratch, cleared by the epoch
        (0.1 * g.standard_normal(X.n_users)).astype(dtype),
        (0.1 * g.standard_normal(X.n_items)).astype(dtype),
    ]


def test_layout_is_a_stable_sort_by_block() -> None:
    X = small_ratings(0)
    L = Layout(X, 3, 4, seed=1)
    np.testing.assert_array_equal(L.offsets, L.expected_offsets)
    assert L.records.tobytes() == L.expected.tobytes()


@pytest.mark.parametrize(("C", "B"), [(1, 1), (3, 3), (5, 2)])
def test_epoch_plan_matches_independent_splitmix(C: int, B: int) -> None:
    order, strata, seeds = _svdpp.epoch_plan(np.uint64(12345), C, B)
    rng = SplitMix64(12345)
    want_order = list(range(C))
    fisher_yates(want_order, rng)
    want_strata = []
    for _ in range(C):
        cs = list(range(B))
        fisher_yates(cs, rng)
        want_strata += cs
    assert order.tolist() == want_order
    assert strata.tolist() == want_strata
    assert seeds.tolist() == [rng.next() for _ in range(C * B * B)]


# (C, B) = (1, 1) is the serial path: one chunk, one block, one thread does the ratings
@pytest.mark.parametrize(("C", "B", "n_threads"), [(1, 1, 1), (4, 3, 2), (2, 4, 3)])
@pytest.mark.parametrize("adagrad", [False, True])
@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("huber", [None, 0.5])
def test_epoch_matches_numpy_reference(
    C: int, B: int, n_threads: int, adagrad: bool, biases: bool, huber: float | None
) -> None:
    X = small_ratings(0)
    L = Layout(X, C, B, seed=2)
    order, strata, seeds = _svdpp.epoch_plan(np.uint64(77), C, B)
    k = 6
    mu = float(X.values.mean())
    lr, reg, reg_b = (0.08 if adagrad else 0.02), 0.05, 0.03
    state = start_state(X, k, 1)
    ref = [a.copy() for a in state]
    kw: dict = {}
    acc_ref = None
    if adagrad:
        g2 = np.random.default_rng(3)
        acc = [1 + g2.random(n) for n in (X.n_users, X.n_items, X.n_items, X.n_users, X.n_items)]
        acc_ref = tuple(a.copy() for a in acc)
        kw = dict(zip(("Gp", "Gq", "Gy", "Gbu", "Gbi"), acc, strict=True))
    if huber is not None:
        kw["loss"], kw["delta"] = 1, huber
    before = L.records.copy()
    sse, bad = _svdpp.svdpp_epoch(
        L.records,
        L.offsets,
        L.chunk_ptr,
        L.chunk_users,
        L.indptr,
        L.indices,
        order,
        strata,
        seeds,
        True,
        n_threads,
        *state,
        mu,
        lr,
        reg,
        reg_b,
        biases,
        **kw,
    )
    assert bad == -1
    # each block was shuffled in place (and only within itself) by its seed
    for blk in range(C * B * B):
        a, b = L.offsets[blk], L.offsets[blk + 1]
        items = before[a:b].tolist()
        fisher_yates(items, SplitMix64(int(seeds[blk])))
        assert L.records[a:b].tolist() == items
    sse_ref = reference_epoch(
        L, order, strata, ref, mu, lr, reg, reg_b, biases, acc=acc_ref, huber=huber
    )
    assert sse == pytest.approx(sse_ref, rel=1e-12)
    names = ("P", "Q", "Y", "Z", "A", "bu", "bi")
    for name, got, want in zip(names, state, ref, strict=True):
        if not biases and name in ("bu", "bi"):
            continue
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10, err_msg=name)
    if adagrad:
        for got, want in zip(acc, acc_ref, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    # the effective factors prediction uses: p_u + |N(u)|^-1/2 sum_j y_j
    P, Y = state[0], state[2]
    out = np.empty_like(P)
    _svdpp.effective_user_factors(L.indptr, L.indices, P, Y, out, n_threads)
    counts = np.diff(X.indptr)
    for u in range(X.n_users):
        items = X.indices[X.indptr[u] : X.indptr[u + 1]]
        np.testing.assert_allclose(
            out[u], P[u] + Y[items].sum(axis=0) / np.sqrt(counts[u]), rtol=0, atol=1e-12
        )


def test_float32_close_to_float64() -> None:
    X = small_ratings(1)
    L64, L32 = Layout(X, 2, 2, seed=0), Layout(X, 2, 2, seed=0)
    order, strata, seeds = _svdpp.epoch_plan(np.uint64(5), 2, 2)
    s64 = start_state(X, 5, 2)
    s32 = [a.astype(np.float32) for a in s64]
    args = (float(X.values.mean()), 0.02, 0.05, 0.05, True)
    for L, st in ((L64, s64), (L32, s32)):
        _svdpp.svdpp_epoch(
            L.records,
            L.offsets,
            L.chunk_ptr,
            L.chunk_users,
            L.indptr,
            L.indices,
            order,
            strata,
            seeds,
            True,
            2,
            *st,
            *args,
        )
    for a, b in zip(s32, s64, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_model_epoch_is_the_reference_epoch() -> None:
    """SGD(implicit_feedback=True, shuffle=False) from init= and y = 0: the layout from the
    seeded groups and chunks of the documented rule, chunks and strata in index order;
    user_factors_ are p_u + z_u."""
    X = small_ratings(2, n_users=200, n_items=40)
    k, seed = 4, 0
    g = np.random.default_rng(5)
    P0, Q0 = 0.1 * g.standard_normal((X.n_users, k)), 0.1 * g.standard_normal((X.n_items, k))
    model = mfkit.SGD(
        factors=k,
        epochs=1,
        learning_rate=0.03,
        learning_rate_schedule="constant",
        regularization=0.04,
        implicit_feedback=True,
        shuffle=False,
        blocks=2,
        dtype="float64",
        random_state=seed,
    ).fit(X, init=(P0, Q0))
    C = svdpp_chunks(X.user_counts(), X.n_items)
    assert C > 1 and model.blocks_ == 2
    # the fit draws its three layout seeds first (init= given: no factor draws)
    useed, iseed, cseed = (int(s) for s in np.random.default_rng(seed).integers(2**63, size=3))
    L = Layout(X, C, 2, seed=0)
    L.ug = balanced_groups(X.user_counts(), 2, useed)
    L.ig = balanced_groups(X.item_counts(), 2, iseed)
    L.uc = balanced_groups(X.user_counts(), C, cseed, chunk=1)
    _svdpp.build_layout(X.indptr, X.indices, X.values, L.uc, L.ug, L.ig, C, 2, L.records, L.offsets)
    key = L.uc.astype(np.int64) * 2 + L.ug
    L.chunk_users = np.argsort(key, kind="stable").astype(np.int32)
    L.chunk_ptr = np.concatenate([[0], np.cumsum(np.bincount(key, minlength=2 * C))])
    mu = float(np.mean(X.values, dtype=np.float64))
    st = [
        P0.copy(),
        Q0.copy(),
        np.zeros((X.n_items, k)),
        np.zeros((X.n_users, k)),
        np.zeros((X.n_users, k)),
        np.zeros(X.n_users),
        np.zeros(X.n_items),
    ]
    sse = reference_epoch(L, np.arange(C), np.tile(np.arange(2), C), st, mu, 0.03, 0.04, 0.04, True)
    P, Q, Y, _, _, bu, bi = st
    counts = np.diff(X.indptr)
    z = np.stack(
        [
            Y[X.indices[X.indptr[u] : X.indptr[u + 1]]].sum(axis=0) / np.sqrt(counts[u])
            for u in range(X.n_users)
        ]
    )
    np.testing.assert_allclose(model.user_factors_, P + z, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.item_factors_, Q, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.user_biases_, bu, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.item_biases_, bi, rtol=0, atol=1e-10)
    assert model.history_["train_rmse"][0] == pytest.approx(np.sqrt(sse / X.nnz), rel=1e-12)
    # prediction is mu + b_u + b_i + q_i . (p_u + z_u)
    u, i = 3, int(X.indices[X.indptr[3]])
    assert model.predict(u, i) == pytest.approx(mu + bu[u] + bi[i] + Q[i] @ (P[u] + z[u]))


def test_chunk_rule() -> None:
    counts = np.array([3, 10, 0, 50, 7])
    coupling = (9 + 100 + 2500 + 49) / 8
    assert svdpp_chunks(counts, 8) == math.ceil(coupling / SVDPP_CHUNK_COUPLING) == 3
    big = np.full(100, 400)
    assert svdpp_chunks(big, 2000) == math.ceil(100 * 400**2 / 2000 / SVDPP_CHUNK_COUPLING) == 63
    assert svdpp_chunks(np.full(3, 10_000), 1) == 3  # at most one chunk per user
    assert svdpp_chunks(np.zeros(0), 5) == 1
    assert resolve_svdpp_blocks("auto", 19_999, 1000, 1000) == 1
    assert resolve_svdpp_blocks("auto", 20_000, 1000, 1000) == 4
    assert resolve_svdpp_blocks("auto", 20_000, 100, 1000) == 1  # too narrow for groups
    assert resolve_svdpp_blocks(7, 10, 10, 10) == 7
    # threads only with at least SVDPP_PARALLEL_WORK updates between synchronisations
    work = _blocks.SVDPP_PARALLEL_WORK
    assert svdpp_threads(4, work * 10, 1, 2, 4) == 4  # 10 * work / (2 * 5) = work
    assert svdpp_threads(4, work * 10 - 10, 1, 2, 4) == 1


@pytest.mark.parametrize("schedule", ["adagrad", "constant"])
@pytest.mark.parametrize("blocks", [1, 3, "auto"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bit_identical_for_any_thread_count(
    schedule: str, blocks, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # threads on however little work, so that the parallel epoch really runs
    monkeypatch.setattr(_blocks, "SVDPP_PARALLEL_WORK", 0)
    data = small_ratings(9, n_users=300, n_items=40, density=0.4)
    assert svdpp_chunks(data.user_counts(), data.n_items) > 1
    fits = [
        mfkit.SGD(
            factors=8,
            epochs=3,
            implicit_feedback=True,
            learning_rate_schedule=schedule,
            regularization=0.05,
            blocks=blocks,
            dtype=dtype,
            random_state=11,
            n_threads=t,
        ).fit(data)
        for t in (1, 2, 3)
    ]
    for m in fits[1:]:
        assert m.user_factors_.tobytes() == fits[0].user_factors_.tobytes()
        assert m.item_factors_.tobytes() == fits[0].item_factors_.tobytes()
        assert m.user_biases_.tobytes() == fits[0].user_biases_.tobytes()
        assert m.item_biases_.tobytes() == fits[0].item_biases_.tobytes()
        assert m.history_["train_rmse"] == fits[0].history_["train_rmse"]


def test_chunks_keep_popular_items_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason for the chunks: with all users in one chunk the y steps of a popular
    item's many raters pile up unseen and the fit goes astray; the chunked epoch converges.
    Users with many ratings on a few popular items (coupling far above the limit)."""
    g = np.random.default_rng(4)
    n_users, n_items, k = 300, 60, 3
    Qt, Pt = g.normal(size=(n_items, k)), g.normal(size=(n_users, k))
    pop = np.exp(g.normal(0, 1.0, n_items))
    u_list, i_list = [], []
    for u in range(n_users):
        n = int(g.integers(20, 50))
        items = g.choice(n_items, size=n, replace=False, p=pop / pop.sum())
        u_list += [u] * n
        i_list += items.tolist()
    uu, ii = np.array(u_list), np.array(i_list)
    r = np.clip(np.round(3 + (Qt[ii] * Pt[uu]).sum(1) / 2 + 0.3 * g.standard_normal(len(uu))), 1, 5)
    X = mfkit.Ratings.from_triplets(
        uu, ii, r.astype(np.float32), shape=(n_users, n_items), map_ids=False
    )
    assert svdpp_chunks(X.user_counts(), X.n_items) >= 4
    common = dict(
        factors=10,
        epochs=30,
        learning_rate=0.007,
        learning_rate_schedule="constant",
        regularization=0.02,
        implicit_feedback=True,
        random_state=0,
        blocks=1,
    )
    chunked = mfkit.SGD(**common).fit(X)
    monkeypatch.setattr(_blocks, "SVDPP_CHUNK_COUPLING", 1e30)  # one chunk for all
    one = mfkit.SGD(**common).fit(X)
    h_chunked, h_one = chunked.history_["train_rmse"], one.history_["train_rmse"]
    assert np.all(np.diff(h_chunked) <= 1e-6)
    assert h_chunked[-1] < h_one[-1]


def test_implicit_term_lowers_error_on_data_that_needs_it() -> None:
    """Ratings whose user effect is carried by which items the user rated: the implicit
    term recovers it for users with few ratings, so SVD++ beats plain SGD on held-out data."""
    g = np.random.default_rng(8)
    n_users, n_items, k = 400, 120, 3
    Yt = g.normal(size=(n_items, k))
    Qt = g.normal(size=(n_items, k))
    u_list, i_list, r_list = [], [], []
    for u in range(n_users):
        n = int(g.integers(4, 30))
        items = g.choice(n_items, size=n, replace=False)
        pu = Yt[items].sum(axis=0) / np.sqrt(n)
        u_list += [u] * n
        i_list += items.tolist()
        r_list += (Qt[items] @ pu + 0.1 * g.standard_normal(n)).tolist()
    X = mfkit.Ratings.from_triplets(
        np.array(u_list),
        np.array(i_list),
        np.array(r_list, dtype=np.float32),
        shape=(n_users, n_items),
        map_ids=False,
    )
    test = np.random.default_rng(1).random(X.nnz) < 0.2
    train, val = X.subset(~test), X.subset(test)
    common = dict(factors=k, epochs=40, regularization=0.02, random_state=0)
    plain = mfkit.SGD(**common).fit(train, validation=val)
    svdpp = mfkit.SGD(implicit_feedback=True, **common).fit(train, validation=val)
    assert svdpp.history_["val_rmse"][-1] < 0.97 * plain.history_["val_rmse"][-1]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"implicit_feedback": 1}, "implicit_feedback must be True or False"),
        (
            {"implicit_feedback": True, "prior_regularization": 0.1},
            "does not support prior_regularization",
        ),
        ({"implicit_feedback": True, "blocks": 0}, "blocks"),
    ],
)
def test_bad_parameters_named(params: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        mfkit.SGD(**params).fit(small_ratings(5))


def test_kernel_refuses_bad_layout() -> None:
    X = small_ratings(6)
    L = Layout(X, 2, 2, seed=0)
    order, strata, seeds = _svdpp.epoch_plan(np.uint64(1), 2, 2)
    st = start_state(X, 3, 0)
    args = (3.0, 0.01, 0.1, 0.1, True)

    def run(**over):
        a = dict(
            recs=L.records,
            offsets=L.offsets,
            chunk_ptr=L.chunk_ptr,
            chunk_users=L.chunk_users,
            indptr=L.indptr,
            indices=L.indices,
            chunk_order=order,
            strata=strata,
            block_seeds=seeds,
        )
        a.update(over)
        return _svdpp.svdpp_epoch(*a.values(), True, 1, *st, *args)

    with pytest.raises(ValueError, match="chunk_order must be a permutation"):
        run(chunk_order=np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="strata must be a permutation"):
        run(strata=np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="offsets"):
        run(offsets=L.offsets[:-1].copy())
    bad = L.records.copy()
    bad["i"][0] = X.n_items
    with pytest.raises(ValueError, match="records must index rows"):
        run(recs=bad)
    with pytest.raises(ValueError, match="same k"):
        _svdpp.svdpp_epoch(
            L.records,
            L.offsets,
            L.chunk_ptr,
            L.chunk_users,
            L.indptr,
            L.indices,
            order,
            strata,
            seeds,
            True,
            1,
            st[0],
            st[1],
            st[2][:, :2].copy(),
            *st[3:],
            *args,
        )
    with pytest.raises(ValueError, match="group or chunk index out of range"):
        _svdpp.build_layout(
            X.indptr, X.indices, X.values, L.uc + 5, L.ug, L.ig, 2, 2, L.records, L.offsets
        )


def test_save_load_round_trip(tmp_path) -> None:
    X = small_ratings(7)
    m = mfkit.SGD(factors=4, epochs=2, implicit_feedback=True, random_state=0).fit(X)
    m.save(tmp_path / "m.npz")
    back = mfkit.load(tmp_path / "m.npz")
    assert back.implicit_feedback is True
    u = np.arange(X.n_users)
    np.testing.assert_array_equal(back.predict(u, u % X.n_items), m.predict(u, u % X.n_items))
