"""The row-grouped SGD epoch (``SGD(order='rows')``) against plain Python and NumPy.

The visiting order is rebuilt here from its definition (``mfkit.models._sgd``: users of a
block in chunks of 16 consecutive entries, the chunks and then each chunk's users in a
splitmix64 Fisher-Yates order, each user's run of ratings in the block's item range rotated
by one more draw), written with Python integers, and the item ranges found by
masking each CSR row; the update is then the NumPy reference of ``test_sgd_kernel`` run
over the ratings in that order. The baseline path must match it bit for bit, every path the
float64 reference to 1e-10, and every path must give the bits its own record sweep gives on
the same records in the same order (the row walk, with p_u held in registers on the fast
paths, is a reordering of the visit only).
"""

from __future__ import annotations

import numpy as np
import pytest

import mfkit
from mfkit import Ratings
from mfkit._core.isa import isa_level
from mfkit.models import _sgd, _sgd_layout
from mfkit.models.sgd import (
    RATING_DTYPE,
    balanced_groups,
    range_groups,
    resolve_row_blocks,
    row_layout,
)
from tests.test_sgd_kernel import (
    DELTA,
    F32_ATOL,
    LOSSES,
    LR,
    MU,
    PRIOR,
    REG,
    REG_BIAS,
    VARIANTS,
    _assert_bits,
    reference_epoch,
    run_kernel,
)

PATHS = mfkit.available_isas()
MASK = (1 << 64) - 1
USER_CHUNK = 16  # MFK_USER_CHUNK of _sgd_kernel.h


class SplitMix:
    """splitmix64 (Steele, Lea and Flood 2014) on Python integers."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def bounded(self, n: int) -> int:
        """Uniform in [0, n) by Lemire's multiply-and-reject."""
        m = self.next() * n
        if (m & MASK) < n:
            t = ((1 << 64) - n) % n
            while (m & MASK) < t:
                m = self.next() * n
        return m >> 64


def fisher_yates(a: list[int], rng: SplitMix) -> None:
    """Shuffle a in place: position j, from the end, swapped with a uniform r in [0, j]."""
    for j in range(len(a) - 1, 0, -1):
        r = rng.bounded(j + 1)
        a[j], a[r] = a[r], a[j]


def chunked_order(users: list[int], rng: SplitMix, chunk: int = USER_CHUNK) -> list[int]:
    """A block's users (ascending) in their visiting order: cut into chunks of `chunk`
    consecutive entries, the chunk numbers shuffled, then each chunk's users shuffled in
    turn, in the order the chunks are visited, all from one stream."""
    chunks = [users[c : c + chunk] for c in range(0, len(users), chunk)]
    perm = list(range(len(chunks)))
    fisher_yates(perm, rng)
    out: list[int] = []
    for c in perm:
        part = list(chunks[c])
        fisher_yates(part, rng)
        out += part
    return out


def visit_order(X: Ratings, ug, ig, B, strata, seeds, shuffle=True, chunk=USER_CHUNK) -> np.ndarray:
    """The ratings of one row-grouped epoch as records, in the order they are visited."""
    u_all, i_all, r_all = [], [], []
    for s in strata:
        for g in range(B):
            h = (g + s) % B
            users = [int(u) for u in np.flatnonzero(ug == g)]
            rng = SplitMix(int(seeds[s * B + g]))
            if shuffle:
                users = chunked_order(users, rng, chunk)
            for u in users:
                lo, hi = X.indptr[u], X.indptr[u + 1]
                items, vals = X.indices[lo:hi], X.values[lo:hi]
                mine = np.flatnonzero(ig[items] == h)
                m = len(mine)
                off, back = 0, False
                if shuffle:
                    x = rng.next()
                    off, back = ((x >> 32) * m) >> 32, bool(x & 1)
                steps = [(off - t) % m if back else (off + t) % m for t in range(m)]
                for t in steps:
                    u_all.append(u)
                    i_all.append(items[mine[t]])
                    r_all.append(vals[mine[t]])
    recs = np.empty(len(u_all), dtype=RATING_DTYPE)
    recs["u"], recs["i"], recs["r"] = u_all, i_all, r_all
    return recs


def _data(n_users=40, n_items=70, n=900, seed=3, empty_users=(5, 17), empty_items=(9,)):
    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, size=n, replace=False)
    u, i = cells // n_items, cells % n_items
    keep = ~np.isin(u, empty_users) & ~np.isin(i, empty_items)
    r = rng.integers(1, 6, n).astype(np.float32)
    return Ratings.from_triplets(u[keep], i[keep], r[keep], shape=(n_users, n_items), map_ids=False)


def _state(X, k, seed=4):
    rng = np.random.default_rng(seed)
    nu, ni = X.shape
    P, Q = rng.normal(0, 0.3, (nu, k)), rng.normal(0, 0.3, (ni, k))
    prior = (rng.normal(0, 0.3, (nu, k)), rng.normal(0, 0.3, (ni, k)))
    return (P, Q, rng.normal(0, 0.1, nu), rng.normal(0, 0.1, ni)), prior


def run_rows(X, lay, state, dtype, path, strata, seeds, *, shuffle=True, loss=0, prior=None,
             ada=False, n_threads=2, user_chunk=USER_CHUNK):  # fmt: skip
    P, Q, bu, bi = (np.array(a, dtype=dtype) for a in state[:4])
    G = [np.ones(len(P), dtype), np.ones(len(Q), dtype), np.ones(len(P), dtype)]
    G.append(np.ones(len(Q), dtype))
    kw = {"loss": loss, "delta": DELTA, "isa": isa_level(path), "user_chunk": user_chunk}
    if ada:
        kw.update(Gp=G[0], Gq=G[1], Gbu=G[2], Gbi=G[3])
    P0, Q0 = (None, None) if prior is None else (a.astype(dtype) for a in prior)
    args = (P, Q, bu, bi, MU, LR, REG, REG_BIAS, True, P0, Q0, PRIOR if prior else 0.0)
    sse, bad = _sgd.sgd_rows_epoch(
        X.indptr, X.indices, X.values, lay.segments, lay.group_users, lay.group_ptr,
        strata, seeds, shuffle, n_threads, *args, **kw,
    )  # fmt: skip
    assert bad == -1
    return (P, Q, bu, bi, *G), sse


B = 3
STRATA = np.array([2, 0, 1], dtype=np.int64)
SEEDS = np.array([11, 5, 2**63 + 7, 3, 99, 1, 123456789, 0, 42], dtype=np.uint64)
# k = 20 and 37: no register body (the scratch-record route); 16 and 64: the row bodies
KS = [16, 20, 37, 64]


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_baseline_path_is_the_reference_bit_for_bit(dtype, variant, k):
    _, loss, ada, use_prior = variant
    X = _data()
    lay = row_layout(X, B, 8)
    state, prior = _state(X, k)
    kw = {"loss": LOSSES[loss], "ada": ada, "prior": prior if use_prior else None}
    recs = visit_order(X, lay.user_groups, lay.item_groups, B, STRATA, SEEDS)
    assert len(recs) == X.nnz
    want, want_sse = reference_epoch(recs, state, dtype, lanes=8, **kw)
    got, sse = run_rows(X, lay, state, dtype, "baseline", STRATA, SEEDS, **kw)
    _assert_bits(got if ada else got[:4], want if ada else want[:4])
    assert sse == pytest.approx(want_sse, rel=1e-10)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_every_path_matches_the_reference_and_its_record_sweep(path, variant, k):
    _, loss, ada, use_prior = variant
    X = _data()
    lay = row_layout(X, B, 8)
    state, prior = _state(X, k)
    kw = {"loss": LOSSES[loss], "ada": ada, "prior": prior if use_prior else None}
    # one thread takes blocks 0 and 2 of each stratum together (interleaved on the fast
    # paths) and block 1 alone; two threads take one block at a time
    runs = ((np.float64, 1e-10, 1), (np.float32, F32_ATOL, 1), (np.float32, F32_ATOL, 2))
    _check_rows_epoch(X, lay, state, path, B, STRATA, SEEDS, runs, **kw)


def _check_rows_epoch(X, lay, state, path, b, strata, seeds, runs, chunk=USER_CHUNK, **kw):
    """Each (dtype, atol, n_threads) of `runs`: the row-grouped epoch on `path` matches the
    float64 reference over the visiting order to atol, and has the bits of the path's own
    record sweep over that order; the reference moves the factors well past atol."""
    recs = visit_order(X, lay.user_groups, lay.item_groups, b, strata, seeds, chunk=chunk)
    want, want_sse = reference_epoch(recs, state, np.float64, lanes=16, **kw)
    n = 6 if kw.get("ada") else 4
    for dtype, atol, nt in runs:
        got, sse = run_rows(
            X, lay, state, dtype, path, strata, seeds, n_threads=nt, user_chunk=chunk, **kw
        )
        for a, ref in zip(got[:n], want[:n], strict=True):
            np.testing.assert_allclose(a, ref, rtol=0, atol=atol)
        assert sse == pytest.approx(want_sse, rel=1e-10 if dtype == np.float64 else 1e-4)
        # the same bits as the path's own record sweep over the same order
        same, _ = run_kernel(recs, state, dtype, path, **kw)
        _assert_bits(got, same)
    assert np.abs(want[0] - state[0]).max() > 100 * F32_ATOL


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("k", [16, 64])
@pytest.mark.parametrize("ada", [False, True])
@pytest.mark.parametrize(
    ("b", "nt"),
    # one thread, B = 4: blocks (0, 2) and (1, 3) interleaved; B = 5: (0, 3), (1, 4) and 2
    # alone; B = 8 on two threads: four tasks of two blocks
    [(4, 1), (5, 1), (8, 2)],
)
def test_interleaved_blocks_keep_the_bits_for_other_block_counts(path, k, ada, b, nt):
    X = _data()
    lay = row_layout(X, b, 8)
    state, _ = _state(X, k, seed=3)
    strata = np.random.default_rng(b).permutation(b).astype(np.int64)
    seeds = np.random.default_rng(b + 1).integers(0, 2**63, b * b, dtype=np.uint64)
    runs = ((np.float64, 1e-10, nt), (np.float32, F32_ATOL, nt))
    _check_rows_epoch(X, lay, state, path, b, strata, seeds, runs, ada=ada)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("b", [1, 2])
@pytest.mark.parametrize("chunk", [USER_CHUNK, 1, 5])
def test_users_are_shuffled_in_chunks(path, b, chunk):
    # blocks of several chunks of users, the last one partial (the blocks above hold fewer
    # users than one chunk, where the chunked order is one Fisher-Yates order of them all)
    X = _data(150, 80, 3000, seed=5, empty_users=(3, 40), empty_items=(2,))
    lay = row_layout(X, b, 8)
    n_block = np.bincount(lay.user_groups, minlength=b)
    assert n_block.min() > 2 * USER_CHUNK and (n_block % USER_CHUNK != 0).any()
    state, _ = _state(X, 16, seed=3)
    strata = np.arange(b, dtype=np.int64)[::-1].copy()
    seeds = np.random.default_rng(7).integers(0, 2**63, b * b, dtype=np.uint64)
    runs = ((np.float64, 1e-10, 1), (np.float32, F32_ATOL, 2))
    _check_rows_epoch(X, lay, state, path, b, strata, seeds, runs, chunk=chunk, ada=True)
    if chunk == 1:  # one Fisher-Yates order of all the block's users
        rng, users = SplitMix(int(seeds[0])), [int(u) for u in np.flatnonzero(lay.user_groups == 0)]
        want = list(users)
        fisher_yates(want, rng)
        assert chunked_order(users, SplitMix(int(seeds[0])), 1) == want
        return
    # the users of a chunk come one after the other: in block 0's visit, the first
    # users with ratings in it lie in one chunk of the ascending list
    recs = visit_order(X, lay.user_groups, lay.item_groups, b, strata[:1], seeds, chunk=chunk)
    users = np.flatnonzero(lay.user_groups == 0)
    pos = {int(u): j // chunk for j, u in enumerate(users)}
    first = list(dict.fromkeys(int(u) for u in recs["u"]))[: min(chunk, 4)]
    assert len({pos[u] for u in first}) == 1


@pytest.mark.parametrize("path", PATHS)
def test_without_shuffle_users_ascend_and_runs_go_forwards(path):
    X = _data(seed=6)
    lay = row_layout(X, B, 1)
    state, _ = _state(X, 16)
    strata = np.arange(B, dtype=np.int64)
    seeds = np.zeros(B * B, dtype=np.uint64)
    recs = visit_order(X, lay.user_groups, lay.item_groups, B, strata, seeds, shuffle=False)
    want, _ = run_kernel(recs, state, np.float64, path, ada=True)
    got, _ = run_rows(X, lay, state, np.float64, path, strata, seeds, shuffle=False, ada=True)
    _assert_bits(got, want)


def test_row_segments_are_the_runs_of_each_row_for_any_thread_count():
    X = _data(200, 300, 9000, seed=2)
    for b in (1, 2, 5, 8):
        ig = range_groups(X.item_counts(), b, chunk=4)
        assert np.all(np.diff(ig) >= 0) and ig.min() == 0 and ig.max() == b - 1
        want = np.empty((X.n_users, b + 1), dtype=np.int64)
        for u in range(X.n_users):
            lo, hi = X.indptr[u], X.indptr[u + 1]
            want[u] = lo + np.searchsorted(ig[X.indices[lo:hi]], np.arange(b + 1), side="left")
            want[u, b] = hi
        for n_threads in (1, 2, 3):
            got = np.empty_like(want)
            _sgd_layout.row_segments(X.indptr, X.indices, ig, b, got, n_threads=n_threads)
            assert np.array_equal(got, want)


def test_range_groups_balance_ratings_in_contiguous_runs():
    counts = np.random.default_rng(0).integers(0, 50, 1000)
    g = range_groups(counts, 8)
    assert np.all(np.diff(g) >= 0)
    assert np.all(np.diff(np.flatnonzero(np.diff(g)) + 1) % 16 == 0)  # cuts at runs of 16
    per = np.bincount(g, weights=counts, minlength=8)
    assert per.max() - per.min() <= 2 * counts.reshape(-1, 8).sum(axis=1).max() * 2
    assert np.abs(per - counts.sum() / 8).max() < 16 * 50


def test_bad_layouts_are_refused():
    X = _data()
    lay = row_layout(X, B, 8)
    state, _ = _state(X, 16)
    P, Q, bu, bi = (np.array(a, dtype=np.float32) for a in state)
    args = (P, Q, bu, bi, MU, LR, REG, REG_BIAS, True)

    def call(seg=lay.segments, users=lay.group_users, ptr=lay.group_ptr, strata=STRATA, **kw):
        return _sgd.sgd_rows_epoch(
            X.indptr, X.indices, X.values, seg, users, ptr, strata, SEEDS, True, 1, *args, **kw
        )

    bad = lay.segments.copy()
    bad[3, 1] = bad[3, 0] - 1
    with pytest.raises(ValueError, match="seg does not describe runs"):
        call(seg=bad)
    bad = lay.segments.copy()
    bad[0, B] += 1
    with pytest.raises(ValueError, match="seg does not describe runs"):
        call(seg=bad)
    with pytest.raises(ValueError, match="B \\+ 1 columns"):
        call(seg=lay.segments[:, :B].copy())
    users = lay.group_users.copy()
    users[0] = X.n_users
    with pytest.raises(ValueError, match="user index out of range"):
        call(users=users)
    with pytest.raises(ValueError, match="permutation"):
        call(strata=np.array([0, 0, 1], dtype=np.int64))
    for chunk in (0, -3):
        with pytest.raises(ValueError, match="user_chunk must be a positive"):
            call(user_chunk=chunk)
    with pytest.raises(ValueError, match="must not decrease with the item"):
        _sgd_layout.row_segments(X.indptr, X.indices, lay.item_groups[::-1].copy(), B, lay.segments)
    idx = X.indices.copy()
    idx[5] = X.n_items
    with pytest.raises(ValueError, match="item index out of range"):
        _sgd_layout.row_segments(X.indptr, idx, lay.item_groups, B, lay.segments.copy())


@pytest.mark.parametrize("path", PATHS)
def test_a_non_finite_residual_stops_the_epoch_at_that_rating(path):
    X = _data()
    lay = row_layout(X, B, 8)
    recs = visit_order(X, lay.user_groups, lay.item_groups, B, STRATA, SEEDS)
    stop = len(recs) // 2  # a rating in the middle of the epoch
    pos = int(
        np.flatnonzero((X.user_index() == recs["u"][stop]) & (X.indices == recs["i"][stop]))[0]
    )
    values = X.values.copy()
    values[pos] = np.inf
    state, _ = _state(X, 16)
    P, Q, bu, bi = (np.array(a, dtype=np.float64) for a in state)
    _, bad = _sgd.sgd_rows_epoch(
        X.indptr, X.indices, values, lay.segments, lay.group_users, lay.group_ptr,
        STRATA, SEEDS, True, 1, P, Q, bu, bi, MU, LR, REG, REG_BIAS, True, isa=isa_level(path),
    )  # fmt: skip
    g = int(lay.user_groups[recs["u"][stop]])
    h = int(lay.item_groups[recs["i"][stop]])
    assert bad == ((h - g) % B) * B + g  # the block of that rating


def _fit(path, n_threads, X, **kw):
    params = {"factors": 32, "epochs": 3, "regularization": 0.05, "random_state": 7}
    params.update(kw)
    with mfkit.use_isa(path):
        return mfkit.SGD(order="rows", n_threads=n_threads, **params).fit(X)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "kw",
    [
        {"blocks": 6},
        {"blocks": 5, "learning_rate_schedule": "constant", "dtype": "float64"},
        {"blocks": 4, "factors": 20, "loss": "huber"},
        {"blocks": 1, "factors": 64, "loss": "absolute"},
    ],
)
def test_bit_identical_for_1_2_3_threads_on_every_path(path, kw):
    X = _data(300, 200, 18000, seed=2, empty_users=(0, 150), empty_items=(7, 8))
    fits = [_fit(path, t, X, **kw) for t in (1, 2, 3)]
    assert all(m.isa_ == path for m in fits)
    for m in fits[1:]:
        for name in ("user_factors_", "item_factors_", "user_biases_", "item_biases_"):
            assert np.array_equal(getattr(m, name), getattr(fits[0], name)), (path, name)
        assert m.history_["train_rmse"] == fits[0].history_["train_rmse"]
    # the users without ratings kept their initial rows; the others moved
    assert np.isfinite(fits[0].user_factors_).all()


def test_prior_regularization_runs_the_row_order():
    X = _data(300, 200, 18000, seed=2)
    first = mfkit.SGD(factors=16, epochs=2, regularization=0.05, random_state=1).fit(X)
    init = (first.user_factors_, first.item_factors_)
    kw = {"factors": 16, "epochs": 2, "prior_regularization": 0.1, "random_state": 2}
    fits = [mfkit.SGD(order="rows", blocks=4, n_threads=t, **kw).fit(X, init=init) for t in (1, 3)]
    assert np.array_equal(fits[0].user_factors_, fits[1].user_factors_)


def test_order_is_checked():
    X = _data()
    with pytest.raises(ValueError, match="order"):
        mfkit.SGD(order="sorted").fit(X)
    with pytest.raises(ValueError, match="order='rows' is for plain SGD"):
        mfkit.SGD(order="rows", implicit_feedback=True).fit(X)


def test_rows_layout_is_smaller_than_the_records():
    X = _data(300, 200, 18000, seed=2)
    rows = mfkit.SGD(order="rows", blocks=4, epochs=1, regularization=0.05).fit(X)
    recs = mfkit.SGD(order="shuffle", blocks=4, epochs=1, regularization=0.05).fit(X)
    assert rows.fit_nbytes_ < recs.fit_nbytes_ - X.nnz * 12 // 2


def test_auto_blocks_of_the_row_order():
    assert resolve_row_blocks("auto", 100_000, 943, 1682) == 1
    assert resolve_row_blocks("auto", 10_000_054, 69_878, 10_677, 256) == 4
    assert resolve_row_blocks("auto", 100_480_507, 480_189, 17_770, 256) == 8
    assert resolve_row_blocks(7, 10, 5, 5) == 7
    # users are grouped as the shuffled order's
    assert np.array_equal(row_layout(_data(), 3, 8).user_groups, balanced_groups(
        _data().user_counts(), 3, 8))  # fmt: skip
