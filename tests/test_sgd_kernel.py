"""The SGD sweep on every kernel path against a plain NumPy implementation of the update.

The reference below is written from the update equations (see ``mfkit.models._sgd``) in
NumPy, one rating at a time in a given order. With ``lanes=8`` and the kernel's dtype it
also follows the portable path's order of rounding (eight partial sums per dot product and
squared norm, every product rounded on its own), so the baseline path must match it bit for
bit. The AVX2 and AVX-512 paths fuse multiplies and adds and use 16 partial sums: they must
match the float64 reference to 1e-10 (float64 factors) or the tolerance derived below
(float32), and each other bit for bit.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

import mfkit
from mfkit import Ratings
from mfkit._core.isa import isa_level
from mfkit.models import _sgd, _sgd_layout
from mfkit.models.sgd import RATING_DTYPE, block_layout
from tests.conftest import hidden_low_rank


def _data(n_users: int = 300, n_items: int = 200, n: int = 18000, seed: int = 2) -> Ratings:
    u, i, r, _ = hidden_low_rank(seed, n_users, n_items, n)
    return Ratings.from_triplets(u, i, r, shape=(n_users, n_items))


PATHS = mfkit.available_isas()
FAST = [p for p in PATHS if p != "baseline"]
MU, LR, REG, REG_BIAS, PRIOR, DELTA = 3.0, 0.05, 0.04, 0.03, 0.03, 0.7
LOSSES = {"squared": 0, "huber": 1, "absolute": 2}


def _lane_sum(x: np.ndarray, lanes: int) -> np.generic:
    """sum(x) with coordinate f in partial sum f mod `lanes`, then the kernels' trees:
    eight lanes ((0+4)+(1+5))+((2+6)+(3+7)); sixteen lanes halving (j + j+8, ...)."""
    acc = np.zeros(lanes, dtype=x.dtype)
    full = len(x) // lanes * lanes
    for c in range(0, full, lanes):
        acc = acc + x[c : c + lanes]
    acc[: len(x) - full] = acc[: len(x) - full] + x[full:]
    if lanes == 8:
        s4 = acc[:4] + acc[4:]
        return (s4[0] + s4[1]) + (s4[2] + s4[3])
    while len(acc) > 1:
        acc = acc[: len(acc) // 2] + acc[len(acc) // 2 :]
    return acc[0]


def _psi(e: np.generic, loss: int, delta: np.generic) -> np.generic:
    if loss == 0:
        return e
    if loss == 1:
        return min(max(e, -delta), delta)
    return np.sign(e)


def reference_epoch(recs, state, dtype, *, loss=0, prior=None, ada=False, lanes=8):
    """One SGD pass over `recs` in order on copies of `state` = (P, Q, bu, bi[, G...]) in
    `dtype` arithmetic. Returns the updated arrays and the sum of squared residuals."""
    t = np.dtype(dtype).type
    P, Q, bu, bi = (np.array(a, dtype=dtype) for a in state[:4])
    G = [np.ones(len(P), dtype), np.ones(len(Q), dtype), np.ones(len(P), dtype)]
    G.append(np.ones(len(Q), dtype))
    k = P.shape[1]
    mu, lr, reg, rb, pr, delta = (t(v) for v in (MU, LR, REG, REG_BIAS, PRIOR, DELTA))
    inv_k = t(1) / t(k)
    sse = 0.0
    for u, i, r in zip(recs["u"], recs["i"], recs["r"], strict=True):
        p, q = P[u].copy(), Q[i].copy()
        pred = mu + _lane_sum(p * q, lanes)
        pred = pred + bu[u] + bi[i]
        e = t(r) - pred
        sse += float(e) * float(e)
        g = _psi(e, loss, delta)
        dp = g * q - reg * p
        dq = g * p - reg * q
        if prior is not None:
            dp = dp - pr * (p - prior[0][u].astype(dtype))
            dq = dq - pr * (q - prior[1][i].astype(dtype))
        if ada:
            sp, sq, sbu, sbi = (lr / np.sqrt(G[j][x]) for j, x in enumerate((u, i, u, i)))
            b = bu[u]
            gb = g - rb * b
            bu[u] = b + sbu * gb
            G[2][u] = G[2][u] + gb * gb
            b = bi[i]
            gb = g - rb * b
            bi[i] = b + sbi * gb
            G[3][i] = G[3][i] + gb * gb
            P[u] = p + sp * dp
            Q[i] = q + sq * dq
            G[0][u] = G[0][u] + _lane_sum(dp * dp, lanes) * inv_k
            G[1][i] = G[1][i] + _lane_sum(dq * dq, lanes) * inv_k
        else:
            b = bu[u]
            bu[u] = b + lr * (g - rb * b)
            b = bi[i]
            bi[i] = b + lr * (g - rb * b)
            P[u] = p + lr * dp
            Q[i] = q + lr * dq
    return (P, Q, bu, bi, *G), sse


def _problem(k: int, seed: int = 3, n: int = 1500, n_users: int = 23, n_items: int = 19):
    rng = np.random.default_rng(seed)
    recs = np.empty(n, dtype=RATING_DTYPE)
    recs["u"] = rng.integers(0, n_users, n)
    recs["i"] = rng.integers(0, n_items, n)
    recs["r"] = rng.integers(1, 6, n)
    P = rng.normal(0, 0.3, (n_users, k))
    Q = rng.normal(0, 0.3, (n_items, k))
    bu = rng.normal(0, 0.1, n_users)
    bi = rng.normal(0, 0.1, n_items)
    prior = (rng.normal(0, 0.3, (n_users, k)), rng.normal(0, 0.3, (n_items, k)))
    return recs, (P, Q, bu, bi), prior


def run_kernel(recs, state, dtype, path, *, loss=0, prior=None, ada=False, blocks=None):
    """The kernel's epoch on copies of `state` in `dtype` (blocks: (offsets, B) for the
    stratified entry with the strata in index order and no shuffle)."""
    P, Q, bu, bi = (np.array(a, dtype=dtype) for a in state[:4])
    G = [np.ones(len(P), dtype), np.ones(len(Q), dtype), np.ones(len(P), dtype)]
    G.append(np.ones(len(Q), dtype))
    kw = {"loss": loss, "delta": DELTA, "isa": isa_level(path)}
    if ada:
        kw.update(Gp=G[0], Gq=G[1], Gbu=G[2], Gbi=G[3])
    P0, Q0 = (None, None) if prior is None else (a.astype(dtype) for a in prior)
    args = (P, Q, bu, bi, MU, LR, REG, REG_BIAS, True, P0, Q0, PRIOR if prior else 0.0)
    recs = recs.copy()
    if blocks is None:
        sse, bad = _sgd.sgd_epoch(recs, *args, **kw)
    else:
        offsets, B = blocks
        strata, seeds = np.arange(B, dtype=np.int64), np.zeros(B * B, dtype=np.uint64)
        sse, bad = _sgd.sgd_block_epoch(recs, offsets, strata, seeds, False, 2, *args, **kw)
    assert bad == -1
    return (P, Q, bu, bi, *G), sse


VARIANTS = [
    ("plain", "squared", False, False),
    ("adagrad", "squared", True, False),
    ("prior", "huber", False, True),
    ("adagrad+prior", "absolute", True, True),
    ("adagrad huber", "huber", True, False),
]
KS = [1, 8, 16, 24, 37, 64, 128]


def _assert_bits(got, want):
    for j, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.dtype == b.dtype
        assert np.array_equal(a, b), f"array {j} differs: max {np.abs(a - b).max():.3g}"


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_baseline_path_is_the_reference_bit_for_bit(dtype, variant, k):
    _, loss, ada, use_prior = variant
    recs, state, prior = _problem(k)
    kw = {"loss": LOSSES[loss], "ada": ada, "prior": prior if use_prior else None}
    want, want_sse = reference_epoch(recs, state, dtype, lanes=8, **kw)
    got, sse = run_kernel(recs, state, dtype, "baseline", **kw)
    _assert_bits(got if ada else got[:4], want if ada else want[:4])
    assert sse == pytest.approx(want_sse, rel=1e-12)


# float32 against the float64 reference: a step rounds a handful of operations plus ~k/16
# additions per partial sum, each off by at most the unit roundoff 6e-8 relative, on values
# below 0.5 here: at most ~(4 + 128/16) * 6e-8 * 0.5 = 3.6e-7 per step for k = 128. A row
# takes ~80 steps in the epoch (1500 ratings over 19-23 rows); the errors of successive
# steps have either sign and the small steps contract, so they add like a random walk,
# sqrt(80) * 3.6e-7 = 3e-6. The tolerance is three times that (the worst seen on any path is
# 7e-7); a single wrong operation in the update moves a factor by ~lr * |d| > 1e-3.
F32_ATOL = 1e-5


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_every_path_matches_the_float64_reference(path, variant, k):
    _, loss, ada, use_prior = variant
    recs, state, prior = _problem(k)
    kw = {"loss": LOSSES[loss], "ada": ada, "prior": prior if use_prior else None}
    want, want_sse = reference_epoch(recs, state, np.float64, lanes=16, **kw)
    got64, sse64 = run_kernel(recs, state, np.float64, path, **kw)
    got32, sse32 = run_kernel(recs, state, np.float32, path, **kw)
    n = 6 if ada else 4
    for a64, a32, ref in zip(got64[:n], got32[:n], want[:n], strict=True):
        np.testing.assert_allclose(a64, ref, rtol=0, atol=1e-10)
        np.testing.assert_allclose(a32, ref, rtol=0, atol=F32_ATOL)
    assert sse64 == pytest.approx(want_sse, rel=1e-10)
    assert sse32 == pytest.approx(want_sse, rel=1e-4)
    # the update did something: the factors moved well beyond the tolerance
    assert np.abs(want[0] - state[0]).max() > 100 * F32_ATOL


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avx2_and_avx512_give_the_same_bits(dtype, variant, k):
    """Every fast path this CPU has gives the bits of the first one (on a CPU with one
    fast path, or none, a second run of the same path: the sweep is deterministic)."""
    _, loss, ada, use_prior = variant
    recs, state, prior = _problem(k, seed=11)
    kw = {"loss": LOSSES[loss], "ada": ada, "prior": prior if use_prior else None}
    paths = FAST or ["baseline"]
    first, sse_first = run_kernel(recs, state, dtype, paths[0], **kw)
    for path in paths:
        got, sse = run_kernel(recs, state, dtype, path, **kw)
        _assert_bits(got, first)
        assert sse == sse_first


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stratified_entry_is_the_serial_sweep_in_storage_order(path, dtype):
    """With the strata in index order and no shuffle, the blocks of a stratum touch
    disjoint rows, so the parallel epoch equals the serial sweep over the stored order."""
    X = _data(60, 50, 1200, seed=5)
    layout = block_layout(X, 4, 1, 2)
    rng = np.random.default_rng(0)
    state = (rng.normal(0, 0.3, (60, 64)), rng.normal(0, 0.3, (50, 64)), np.zeros(60), np.zeros(50))
    for ada in (False, True):
        want, _ = run_kernel(layout.records, state, dtype, path, ada=ada)
        got, _ = run_kernel(
            layout.records, state, dtype, path, ada=ada, blocks=(layout.offsets, layout.B)
        )
        _assert_bits(got, want)


def _fit(path: str, n_threads: int, **kw) -> mfkit.SGD:
    X = _data()
    params = {"factors": 32, "epochs": 3, "regularization": 0.05, "random_state": 7}
    params.update(kw)
    with mfkit.use_isa(path):
        return mfkit.SGD(n_threads=n_threads, **params).fit(X)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "kw",
    [
        {"blocks": 6},
        {"blocks": 5, "learning_rate_schedule": "constant", "dtype": "float64"},
        {"blocks": 1, "factors": 20, "loss": "huber"},
    ],
)
def test_bit_identical_for_1_2_3_threads_on_every_path(path, kw):
    fits = [_fit(path, t, **kw) for t in (1, 2, 3)]
    assert all(m.isa_ == path for m in fits)
    for m in fits[1:]:
        for name in ("user_factors_", "item_factors_", "user_biases_", "item_biases_"):
            assert np.array_equal(getattr(m, name), getattr(fits[0], name)), (path, name)
        assert m.history_["train_rmse"] == fits[0].history_["train_rmse"]


def test_fast_paths_differ_from_baseline_only_by_rounding():
    base = _fit("baseline", 2, blocks=4)
    for path in FAST:
        fast = _fit(path, 2, blocks=4)
        np.testing.assert_allclose(fast.user_factors_, base.user_factors_, atol=1e-4)
        np.testing.assert_allclose(fast.item_factors_, base.item_factors_, atol=1e-4)


def test_isa_is_saved_and_loaded(tmp_path):
    m = _fit(PATHS[-1], 1)
    m.save(tmp_path / "m.npz")
    back = mfkit.load(tmp_path / "m.npz")
    assert back.isa_ == m.isa_ == PATHS[-1]


def test_environment_switch_forces_the_portable_path():
    """MFKIT_ISA=baseline in a fresh process: the fit runs (and records) the portable path
    and gives the bits of a baseline fit here."""
    code = (
        "import hashlib, mfkit\n"
        "from tests.test_sgd_kernel import _data\n"
        "m = mfkit.SGD(factors=32, epochs=3, regularization=0.05, random_state=7, blocks=6,"
        " n_threads=2).fit(_data())\n"
        "print(m.isa_, hashlib.sha256(m.user_factors_.tobytes()).hexdigest())\n"
    )
    env = {**os.environ, "MFKIT_ISA": "baseline"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    here = _fit("baseline", 1, blocks=6)
    assert out == ["baseline", hashlib.sha256(here.user_factors_.tobytes()).hexdigest()]


def test_a_path_the_cpu_lacks_is_refused():
    recs, state, _ = _problem(8, n=10)
    P, Q, bu, bi = (np.array(a, dtype=np.float32) for a in state)
    with pytest.raises(ValueError, match="isa=3 is not a kernel path"):
        _sgd.sgd_epoch(recs, P, Q, bu, bi, MU, LR, REG, REG_BIAS, True, isa=3)
    with pytest.raises(ValueError, match="isa=-1 is not a kernel path"):
        _sgd.sgd_epoch(recs, P, Q, bu, bi, MU, LR, REG, REG_BIAS, True, isa=-1)


@pytest.mark.parametrize("B", [1, 3, 8])
def test_block_layout_is_a_stable_sort_by_block_for_any_thread_count(B):
    """The parallel counting sort: ratings grouped by block b = s B + g (s the item group
    minus the user group mod B), CSR order within a block; the same for 1, 2, 3 threads."""
    X = _data(900, 400, 60000, seed=4)
    u, i, r = X.to_triplets()
    base = block_layout(X, B, 5, 6, n_threads=1)
    blk = ((base.item_groups[i] - base.user_groups[u]) % B) * B + base.user_groups[u]
    order = np.argsort(blk, kind="stable")
    want_offsets = np.concatenate([[0], np.cumsum(np.bincount(blk, minlength=B * B))])
    for n_threads in (1, 2, 3):
        lay = block_layout(X, B, 5, 6, n_threads=n_threads)
        assert np.array_equal(lay.offsets, want_offsets)
        assert np.array_equal(lay.records["u"], u[order])
        assert np.array_equal(lay.records["i"], i[order])
        assert np.array_equal(lay.records["r"], r[order].astype(np.float32))


def test_block_layout_refuses_a_bad_group_in_any_run():
    X = _data(900, 400, 60000, seed=4)
    lay = block_layout(X, 4, 5, 6)
    for where in (0, X.n_users - 1):  # in the first and in the last run of users
        groups = lay.user_groups.copy()
        groups[where] = 4
        for n_threads in (1, 3):
            with pytest.raises(ValueError, match="group index out of range"):
                _sgd_layout.build_blocks(
                    X.indptr,
                    X.indices,
                    X.values,
                    groups,
                    lay.item_groups,
                    4,
                    np.empty(X.nnz, dtype=RATING_DTYPE),
                    np.empty(17, dtype=np.int64),
                    n_threads=n_threads,
                )
