"""Block-stratified parallel SGD, learning-rate schedules and robust losses.

The numerical references here are written from the update equations in plain Python/NumPy
(float64); the only thing taken from mfkit is *where* the ratings are (the user and item
groups) and, for the in-block shuffles, a splitmix64 / Fisher-Yates re-implemented below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import mfkit
from mfkit.model_selection import train_test_split
from mfkit.models import _sgd, _sgd_layout
from mfkit.models import sgd as sgd_mod
from tests.conftest import awkward_ratings, hidden_low_rank


def shuffled_sgd(**params: object) -> mfkit.SGD:
    """SGD with order='shuffle' (unless given): the shuffled-record order whose block layout
    and visiting order these tests rebuild (the default order, 'rows', has its own tests in
    test_sgd_rows.py)."""
    return mfkit.SGD(**{"order": "shuffle", **params})  # type: ignore[arg-type]


M64 = (1 << 64) - 1


# ---------------------------------------------------------------- independent RNG replay
class SplitMix64:
    def __init__(self, seed: int) -> None:
        self.state = seed & M64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """Uniform in [0, n) by Lemire's multiply-shift with rejection."""
        m = self.next() * n
        if (m & M64) < n:
            t = ((1 << 64) - n) % n
            while (m & M64) < t:
                m = self.next() * n
        return m >> 64


def fisher_yates(items: list, rng: SplitMix64) -> None:
    j = len(items) - 1
    while j > 0:
        r = rng.below(j + 1)
        items[j], items[r] = items[r], items[j]
        j -= 1


def replay_schedule(seed: int, B: int) -> tuple[list[int], list[int]]:
    rng = SplitMix64(seed)
    strata = list(range(B))
    fisher_yates(strata, rng)
    return strata, [rng.next() for _ in range(B * B)]


# ---------------------------------------------------------------- NumPy reference SGD
def psi(e: float, loss: str, delta: float) -> float:
    if loss == "squared":
        return e
    if loss == "huber":
        return max(-delta, min(delta, e))
    return float(np.sign(e))


class Reference:
    """Plain float64 SGD on the update equations of the SGD docstring."""

    def __init__(self, P, Q, mu, lr, reg, reg_b, loss="squared", delta=1.0, adagrad=False):
        self.P = np.array(P, dtype=np.float64)
        self.Q = np.array(Q, dtype=np.float64)
        self.bu = np.zeros(len(P))
        self.bi = np.zeros(len(Q))
        self.mu, self.lr, self.reg, self.reg_b = mu, lr, reg, reg_b
        self.loss, self.delta, self.adagrad = loss, delta, adagrad
        self.Gp = np.ones(len(P))
        self.Gq = np.ones(len(Q))
        self.Gbu = np.ones(len(P))
        self.Gbi = np.ones(len(Q))

    def step(self, u: int, i: int, r: float, lr: float) -> None:
        p, q = self.P[u].copy(), self.Q[i].copy()
        e = r - (self.mu + self.bu[u] + self.bi[i] + float(p @ q))
        g = psi(e, self.loss, self.delta)
        du = g - self.reg_b * self.bu[u]
        di = g - self.reg_b * self.bi[i]
        dp = g * q - self.reg * p
        dq = g * p - self.reg * q
        if self.adagrad:
            self.bu[u] += lr / math.sqrt(self.Gbu[u]) * du
            self.bi[i] += lr / math.sqrt(self.Gbi[i]) * di
            self.Gbu[u] += du * du
            self.Gbi[i] += di * di
            self.P[u] = p + lr / math.sqrt(self.Gp[u]) * dp
            self.Q[i] = q + lr / math.sqrt(self.Gq[i]) * dq
            self.Gp[u] += float(dp @ dp) / len(p)
            self.Gq[i] += float(dq @ dq) / len(q)
        else:
            self.bu[u] += lr * du
            self.bi[i] += lr * di
            self.P[u] = p + lr * dp
            self.Q[i] = q + lr * dq


def triplets(u, i, r, shape) -> mfkit.Ratings:
    return mfkit.Ratings.from_triplets(u, i, r, shape=shape, map_ids=False)


def test_rmse(model: mfkit.SGD, data: mfkit.Ratings) -> float:
    u, i, r = data.to_triplets()
    return float(np.sqrt(np.mean((model.predict(u, i) - r) ** 2)))


test_rmse.__test__ = False  # a helper, not a test


def factor_bytes(m: mfkit.SGD) -> bytes:
    return b"".join(
        np.ascontiguousarray(a).tobytes()
        for a in (m.user_factors, m.item_factors, m.user_biases, m.item_biases)
    )


# ---------------------------------------------------------------- schedule and layout
@pytest.mark.parametrize("B", [1, 2, 5, 16])
def test_epoch_schedule_matches_independent_splitmix(B):
    for seed in (0, 1, 2**63 - 1, 123456789):
        strata, seeds = sgd_mod.epoch_schedule(seed, B)
        want_strata, want_seeds = replay_schedule(seed, B)
        assert strata.tolist() == want_strata
        assert seeds.tolist() == want_seeds


def test_block_layout_holds_each_block_exactly():
    X = awkward_ratings(0)
    B = 4
    lay = sgd_mod.block_layout(X, B, 11, 22)
    u_all, i_all, r_all = X.to_triplets()
    ug, ig = lay.user_groups, lay.item_groups
    assert lay.offsets[0] == 0 and lay.offsets[-1] == X.nnz
    for s in range(B):
        for g in range(B):
            b = s * B + g
            rec = lay.records[lay.offsets[b] : lay.offsets[b + 1]]
            sel = (ug[u_all] == g) & (ig[i_all] == (g + s) % B)
            # the block holds exactly those ratings, in CSR order
            assert rec["u"].tolist() == u_all[sel].tolist()
            assert rec["i"].tolist() == i_all[sel].tolist()
            assert np.array_equal(rec["r"], r_all[sel].astype(np.float32))
        # blocks of one stratum share no user and no item
        recs = [lay.records[lay.offsets[s * B + g] : lay.offsets[s * B + g + 1]] for g in range(B)]
        for field in ("u", "i"):
            seen = [set(rec[field].tolist()) for rec in recs]
            assert sum(map(len, seen)) == len(set().union(*seen))


def test_groups_are_balanced_by_rating_count():
    rng = np.random.default_rng(3)
    counts = rng.zipf(1.8, 5000).clip(max=2000)
    B = 8
    g = sgd_mod.balanced_groups(counts, B, 99, chunk=1)
    load = np.bincount(g, weights=counts, minlength=B)
    assert np.all(np.abs(load - counts.sum() / B) <= counts.max())
    # chunked: whole runs of consecutive rows stay together
    g16 = sgd_mod.balanced_groups(counts, B, 99)
    assert np.all(g16.reshape(-1, 8)[:, 1:] == g16.reshape(-1, 8)[:, :1])
    load16 = np.bincount(g16, weights=counts, minlength=B)
    run_max = np.add.reduceat(counts, np.arange(0, len(counts), 16)).max()
    assert np.all(np.abs(load16 - counts.sum() / B) <= run_max)
    # fixed by the seed, different for another seed
    assert np.array_equal(g16, sgd_mod.balanced_groups(counts, B, 99))
    assert not np.array_equal(g16, sgd_mod.balanced_groups(counts, B, 100))


def test_auto_blocks_ignores_threads():
    assert sgd_mod.resolve_blocks("auto", 10_000, 100, 100) == 1
    assert sgd_mod.resolve_blocks("auto", 2_000_000, 10_000, 5_000) == sgd_mod.AUTO_BLOCKS
    assert sgd_mod.resolve_blocks("auto", 2_000_000, 640, 5_000) == 10
    assert sgd_mod.resolve_blocks("auto", 2_000_000, 100, 5_000) == 1
    X = awkward_ratings(1)
    for nt in (1, 3):
        m = shuffled_sgd(factors=4, epochs=1, random_state=0, n_threads=nt).fit(X)
        assert m.blocks_ == 1


# ---------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("schedule", ["constant", "decay", "adagrad"])
@pytest.mark.parametrize("loss", ["squared", "huber"])
@pytest.mark.parametrize("B", [3, 4])
def test_bit_identical_for_any_thread_count(schedule, loss, B):
    X = awkward_ratings(7)
    ref = None
    for nt in (1, 2, 3, 4):
        m = shuffled_sgd(
            factors=9,
            epochs=4,
            blocks=B,
            n_threads=nt,
            random_state=2024,
            learning_rate_schedule=schedule,
            loss=loss,
        ).fit(X)
        assert m.blocks_ == B
        got = factor_bytes(m)
        if ref is None:
            ref = got
        else:
            assert got == ref, f"n_threads={nt} differs from n_threads=1"
    # a different seed gives different factors (the comparison above is not vacuous)
    other = shuffled_sgd(
        factors=9,
        epochs=4,
        blocks=B,
        n_threads=2,
        random_state=2025,
        learning_rate_schedule=schedule,
        loss=loss,
    ).fit(X)
    assert factor_bytes(other) != ref


def test_bit_identical_float64_and_larger_blocks():
    u, i, r, _ = hidden_low_rank(5, 300, 200, 6000)
    X = triplets(u, i, r, (300, 200))
    runs = [
        factor_bytes(
            shuffled_sgd(
                factors=16, epochs=3, blocks=16, n_threads=nt, dtype="float64", random_state=1
            ).fit(X)
        )
        for nt in (1, 2, 4)
    ]
    assert runs[0] == runs[1] == runs[2]


def test_generator_and_int_seeds_agree():
    X = awkward_ratings(2)
    a = shuffled_sgd(factors=5, epochs=2, blocks=3, random_state=42).fit(X)
    b = shuffled_sgd(factors=5, epochs=2, blocks=3, random_state=np.random.default_rng(42)).fit(X)
    assert factor_bytes(a) == factor_bytes(b)


# ---------------------------------------------------------------- reference replay
@pytest.mark.parametrize(
    "schedule,loss",
    [
        ("constant", "squared"),
        ("decay", "huber"),
        ("adagrad", "squared"),
        ("adagrad", "absolute"),
    ],
)
@pytest.mark.parametrize("B", [1, 3])
def test_parallel_epochs_match_numpy_reference(schedule, loss, B):
    X = awkward_ratings(11)
    n_users, n_items = X.shape
    k, epochs, seed = 6, 3, 77
    lr = {"constant": 0.02, "decay": 0.03, "adagrad": 0.05}[schedule]
    reg, reg_b, delta, decay = 0.03, 0.01, 0.7, 0.2
    rng0 = np.random.default_rng(5)
    P0 = rng0.normal(0, 0.2, (n_users, k))
    Q0 = rng0.normal(0, 0.2, (n_items, k))
    m = shuffled_sgd(
        factors=k,
        epochs=epochs,
        learning_rate=lr,
        regularization=reg,
        bias_regularization=reg_b,
        dtype="float64",
        random_state=np.random.default_rng(seed),
        n_threads=2,
        learning_rate_schedule=schedule,
        learning_rate_decay=decay,
        loss=loss,
        huber_delta=delta,
        blocks=B,
    ).fit(X, init=(P0, Q0))

    # Replay: the fit draws (with init given) two layout seeds when B > 1, then one seed
    # per epoch, from the same generator.
    rng = np.random.default_rng(seed)
    u_all, i_all, r_all = X.to_triplets()
    r_all = r_all.astype(np.float32).astype(np.float64)
    ref = Reference(
        P0,
        Q0,
        float(np.mean(X.values, dtype=np.float64)),
        lr,
        reg,
        reg_b,
        loss,
        delta,
        adagrad=schedule == "adagrad",
    )
    if B == 1:
        order = list(range(X.nnz))  # CSR order, shuffled in place every epoch
    else:
        useed, iseed = (int(s) for s in rng.integers(2**63, size=2))
        ug = sgd_mod.balanced_groups(X.user_counts(), B, useed)
        ig = sgd_mod.balanced_groups(X.item_counts(), B, iseed)
        blocks = {}
        for s in range(B):
            for g in range(B):
                sel = (ug[u_all] == g) & (ig[i_all] == (g + s) % B)
                blocks[s * B + g] = list(np.flatnonzero(sel))
    for epoch in range(1, epochs + 1):
        step = lr / (1 + decay * (epoch - 1) ** 1.5) if schedule == "decay" else lr
        seed_e = int(rng.integers(2**63))
        if B == 1:
            fisher_yates(order, SplitMix64(seed_e))
            visit = order
        else:
            strata, bseeds = replay_schedule(seed_e, B)
            visit = []
            for s in strata:
                for g in range(B):
                    b = s * B + g
                    fisher_yates(blocks[b], SplitMix64(bseeds[b]))
                    visit += blocks[b]
        for t in visit:
            ref.step(int(u_all[t]), int(i_all[t]), float(r_all[t]), step)
    np.testing.assert_allclose(m.user_factors, ref.P, rtol=0, atol=1e-10)
    np.testing.assert_allclose(m.item_factors, ref.Q, rtol=0, atol=1e-10)
    np.testing.assert_allclose(m.user_biases, ref.bu, rtol=0, atol=1e-10)
    np.testing.assert_allclose(m.item_biases, ref.bi, rtol=0, atol=1e-10)
    # and the factors did move
    assert np.abs(m.user_factors - P0).max() > 1e-3


def test_serial_kernel_given_order_matches_reference():
    """sgd_epoch keeps the serial signature and walks records in storage order."""
    X = awkward_ratings(4)
    k = 5
    rng = np.random.default_rng(0)
    recs = sgd_mod.rating_records(X)[rng.permutation(X.nnz)]
    P = rng.normal(0, 0.3, (X.n_users, k))
    Q = rng.normal(0, 0.3, (X.n_items, k))
    bu, bi = np.zeros(X.n_users), np.zeros(X.n_items)
    ref = Reference(P, Q, 3.0, 0.05, 0.02, 0.01, "huber", 0.5, adagrad=True)
    G = [np.ones(X.n_users), np.ones(X.n_items), np.ones(X.n_users), np.ones(X.n_items)]
    sse, bad = _sgd.sgd_epoch(
        recs,
        P,
        Q,
        bu,
        bi,
        3.0,
        0.05,
        0.02,
        0.01,
        True,
        None,
        None,
        0.0,
        loss=1,
        delta=0.5,
        Gp=G[0],
        Gq=G[1],
        Gbu=G[2],
        Gbi=G[3],
    )
    assert bad == -1 and sse > 0
    for rec in recs:
        ref.step(int(rec["u"]), int(rec["i"]), float(rec["r"]), 0.05)
    np.testing.assert_allclose(P, ref.P, atol=1e-12)
    np.testing.assert_allclose(Q, ref.Q, atol=1e-12)
    np.testing.assert_allclose(bu, ref.bu, atol=1e-12)
    np.testing.assert_allclose(G[0], ref.Gp, atol=1e-12)
    np.testing.assert_allclose(G[3], ref.Gbi, atol=1e-12)


def test_float32_close_to_float64_in_parallel():
    u, i, r, _ = hidden_low_rank(6, 200, 150, 5000)
    X = triplets(u, i, r, (200, 150))
    rng = np.random.default_rng(0)
    init = (rng.normal(0, 0.1, (200, 8)), rng.normal(0, 0.1, (150, 8)))
    kw = dict(factors=8, epochs=5, blocks=4, random_state=3, n_threads=2)
    a = shuffled_sgd(dtype="float32", **kw).fit(X, init=init)
    b = shuffled_sgd(dtype="float64", **kw).fit(X, init=init)
    np.testing.assert_allclose(a.user_factors, b.user_factors, atol=2e-4)
    np.testing.assert_allclose(a.item_biases, b.item_biases, atol=2e-4)


# ---------------------------------------------------------------- convergence
def test_parallel_matches_serial_accuracy():
    u, i, r, clean = hidden_low_rank(21, 3000, 1500, 150_000)
    X = triplets(u, i, r, (3000, 1500))
    train, test = train_test_split(X, 0.1, random_state=0)
    kw = dict(factors=16, epochs=12, random_state=5)
    serial = shuffled_sgd(blocks=1, **kw).fit(train)
    parallel = shuffled_sgd(blocks=16, n_threads=2, **kw).fit(train)
    e_ser, e_par = test_rmse(serial, test), test_rmse(parallel, test)
    assert e_ser < 0.42  # well fitted (noise sd 0.3, ratings sd about 0.8)
    assert abs(e_par - e_ser) <= 0.01 * e_ser


@pytest.mark.parametrize("schedule", ["constant", "decay", "adagrad"])
@pytest.mark.parametrize("size", ["small", "medium"])
def test_each_schedule_converges_untuned(schedule, size):
    n_users, n_items, n = {"small": (800, 500, 50_000), "medium": (4000, 2000, 300_000)}[size]
    u, i, r, clean = hidden_low_rank(8, n_users, n_items, n, noise=0.3)
    X = triplets(u, i, r, (n_users, n_items))
    train, test = train_test_split(X, 0.1, random_state=1)
    blocks = 1 if size == "small" else 8
    m = shuffled_sgd(
        factors=16,
        epochs=30,
        random_state=0,
        learning_rate_schedule=schedule,
        blocks=blocks,
        n_threads=2,
    ).fit(train, validation=test)
    hist = np.array(m.history_["val_rmse"])
    # near the noise level (sd 0.3; the ratings themselves spread with sd ~0.75) ...
    assert float(np.std(test.values)) > 0.7
    assert hist[-1] < 0.40
    # ... and still at its best at the end: no divergence, no drift
    assert hist[-1] <= 1.01 * hist.min()
    assert m.history_["train_rmse"][-1] < 0.7 * m.history_["train_rmse"][0]


@pytest.mark.parametrize("loss", ["huber", "absolute"])
def test_robust_losses_beat_squared_with_outliers(loss):
    n_users, n_items, n = 1500, 800, 80_000
    u, i, r, clean = hidden_low_rank(13, n_users, n_items, n, noise=0.2)
    rng = np.random.default_rng(14)
    order = rng.permutation(n)
    tr, te = order[: int(0.9 * n)], order[int(0.9 * n) :]
    r_train = r[tr].copy()
    bad = rng.random(len(tr)) < 0.05  # 5% gross outliers: +-(6..10) off
    r_train[bad] += rng.choice([-1.0, 1.0], bad.sum()) * rng.uniform(6, 10, bad.sum())
    train = triplets(u[tr], i[tr], r_train, (n_users, n_items))
    test = triplets(u[te], i[te], clean[te], (n_users, n_items))
    kw = dict(factors=8, epochs=25, random_state=3, blocks=4, n_threads=2)
    sq = test_rmse(shuffled_sgd(loss="squared", **kw).fit(train), test)
    rob = test_rmse(shuffled_sgd(loss=loss, **kw).fit(train), test)
    assert rob < 0.9 * sq


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "params,exc,word",
    [
        ({"blocks": 0}, ValueError, "blocks"),
        ({"blocks": 5000}, ValueError, "blocks"),
        ({"blocks": "many"}, ValueError, "blocks"),
        ({"blocks": 2.5}, TypeError, "blocks"),
        ({"learning_rate_schedule": "cosine"}, ValueError, "learning_rate_schedule"),
        ({"loss": "l1"}, ValueError, "loss"),
        ({"huber_delta": 0.0}, ValueError, "huber_delta"),
        ({"learning_rate_decay": -1.0}, ValueError, "learning_rate_decay"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate"),
    ],
)
def test_bad_parameters_are_named(params, exc, word):
    with pytest.raises(exc, match=word):
        shuffled_sgd(**params).fit(awkward_ratings(0))


def test_fit_memory_is_accounted_and_scratch_dropped():
    X = awkward_ratings(3)
    m = shuffled_sgd(factors=4, epochs=1, blocks=3, random_state=0).fit(X)
    n_users, n_items = X.shape
    assert m.fit_nbytes_ == 12 * X.nnz + 8 * (9 + 1) + 4 * 2 * (n_users + n_items)
    assert not hasattr(m, "_records") and not hasattr(m, "_grad_sq")
    m2 = shuffled_sgd(
        factors=4, epochs=1, blocks=1, random_state=0, learning_rate_schedule="constant"
    ).fit(X)
    assert m2.fit_nbytes_ == 12 * X.nnz


def test_saved_parallel_model_round_trips(tmp_path):
    X = awkward_ratings(5)
    m = shuffled_sgd(factors=4, epochs=2, blocks=3, loss="huber", random_state=0).fit(X)
    m.save(tmp_path / "m.npz")
    back = mfkit.load(tmp_path / "m.npz")
    assert back.get_params()["blocks"] == 3 and back.get_params()["loss"] == "huber"
    assert factor_bytes(back) == factor_bytes(m)


def test_divergence_message_names_the_step():
    X = awkward_ratings(6)
    with pytest.raises(mfkit.DivergenceError, match="learning_rate"):
        shuffled_sgd(
            factors=4,
            epochs=30,
            blocks=3,
            learning_rate=50.0,
            learning_rate_schedule="constant",
            random_state=0,
        ).fit(X)


def test_block_kernel_rejects_inconsistent_plans():
    X = awkward_ratings(8)
    B = 3
    lay = sgd_mod.block_layout(X, B, 1, 2)
    P = np.zeros((X.n_users, 4), dtype=np.float32)
    Q = np.zeros((X.n_items, 4), dtype=np.float32)
    bu, bi = np.zeros(X.n_users, np.float32), np.zeros(X.n_items, np.float32)
    seeds = np.zeros(B * B, dtype=np.uint64)
    args = (P, Q, bu, bi, 3.0, 0.01, 0.02, 0.02, True)
    with pytest.raises(ValueError, match="permutation"):
        _sgd.sgd_block_epoch(lay.records, lay.offsets, np.array([0, 0, 1]), seeds, True, 2, *args)
    bad_offsets = lay.offsets.copy()
    bad_offsets[-1] -= 1
    with pytest.raises(ValueError, match="offsets"):
        _sgd.sgd_block_epoch(lay.records, bad_offsets, np.arange(B), seeds, True, 2, *args)
    with pytest.raises(ValueError, match="n_threads"):
        _sgd.sgd_block_epoch(lay.records, lay.offsets, np.arange(B), seeds, True, 0, *args)
    with pytest.raises(ValueError, match="group"):
        bad_groups = lay.user_groups.copy()
        bad_groups[0] = B
        _sgd_layout.build_blocks(
            X.indptr,
            X.indices,
            X.values,
            bad_groups,
            lay.item_groups,
            B,
            np.empty(X.nnz, dtype=sgd_mod.RATING_DTYPE),
            np.empty(B * B + 1, dtype=np.int64),
        )
    # a correct call runs and reports a finite loss
    sse, status = _sgd.sgd_block_epoch(
        lay.records, lay.offsets, np.arange(B), seeds, False, 2, *args
    )
    assert status == -1 and math.isfinite(sse) and sse > 0


def test_serial_path_is_the_shuffled_sgd_whatever_the_threads():
    X = awkward_ratings(9)
    a = shuffled_sgd(factors=6, epochs=3, blocks=1, n_threads=1, random_state=4).fit(X)
    b = shuffled_sgd(factors=6, epochs=3, blocks=1, n_threads=3, random_state=4).fit(X)
    assert factor_bytes(a) == factor_bytes(b)


def test_auto_blocks_grow_with_the_factor_rows_of_a_group() -> None:
    # MovieLens-10M shape: one user group's rows fit the budget at B = 32
    assert sgd_mod.resolve_blocks("auto", 10_000_054, 69_878, 10_677, 64 * 4) == 32
    # Netflix shape, k=64 float32: 480,189 rows of 256 bytes need B = 128 for <= 1 MiB a group
    assert sgd_mod.resolve_blocks("auto", 100_480_507, 480_189, 17_770, 64 * 4) == 128
    # float64 doubles the row size, and the cap holds
    assert sgd_mod.resolve_blocks("auto", 100_480_507, 480_189, 17_770, 64 * 8) == 256
    assert sgd_mod.resolve_blocks("auto", 100_480_507, 480_189, 17_770, 512 * 8) == 256
    # an explicit B is taken as given
    assert sgd_mod.resolve_blocks(7, 100_480_507, 480_189, 17_770, 64 * 4) == 7
