"""BPR (Rendle et al. 2009): the stratified epoch against a plain-NumPy replay of the same
triples, the negatives it draws, thread identity, learning, inputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import mfkit
from mfkit.models import _bpr
from mfkit.models.bpr import item_groups
from mfkit.models.sgd import block_layout, epoch_schedule


def interactions(n_users: int = 50, n_items: int = 36, density: float = 0.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    A = (rng.random((n_users, n_items)) < density).astype(np.float32)
    A[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1
    return mfkit.Ratings.from_scipy(sp.csr_array(A))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("B", [1, 3])
def test_epoch_equals_numpy_replay_of_its_triples(B):
    X = interactions(seed=B)
    rng = np.random.default_rng(B)
    P = rng.standard_normal((X.n_users, 6)) * 0.3
    Q = rng.standard_normal((X.n_items, 6)) * 0.3
    P_ref, Q_ref = P.copy(), Q.copy()
    layout = block_layout(X, B, 11, 12)
    gptr, gitems = item_groups(layout.item_groups, B)
    strata, seeds = epoch_schedule(7, B)
    recs = layout.records
    neg = np.empty(X.nnz, dtype=np.int32)
    lr, reg = 0.1, 0.02
    loss, correct, skipped = _bpr.bpr_block_epoch(
        recs,
        layout.offsets,
        strata,
        seeds,
        X.indptr,
        X.indices,
        gptr,
        gitems,
        P,
        Q,
        lr,
        reg,
        neg,
        2,
    )
    # replay the visited triples in order (the blocks of a stratum share no rows, so any
    # order of them gives the same result)
    seen = X.to_scipy().toarray() > 0
    want_loss, want_correct, want_skipped = 0.0, 0, 0
    for s in strata:
        for g in range(B):
            blk = s * B + g
            group = (g + s) % B
            for pos in range(layout.offsets[blk], layout.offsets[blk + 1]):
                u, i, j = int(recs["u"][pos]), int(recs["i"][pos]), int(neg[pos])
                assert layout.user_groups[u] == g and layout.item_groups[i] == group
                if j < 0:
                    want_skipped += 1
                    continue
                assert not seen[u, j] and layout.item_groups[j] == group
                x = P_ref[u] @ (Q_ref[i] - Q_ref[j])
                z = sigmoid(-x)
                want_loss += -np.log(sigmoid(x))
                want_correct += x > 0
                pu, qi, qj = P_ref[u].copy(), Q_ref[i].copy(), Q_ref[j].copy()
                P_ref[u] = pu + lr * (z * (qi - qj) - reg * pu)
                Q_ref[i] = qi + lr * (z * pu - reg * qi)
                Q_ref[j] = qj + lr * (-z * pu - reg * qj)
    np.testing.assert_allclose(P, P_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(Q, Q_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-10)
    assert correct == want_correct and skipped == want_skipped
    assert sorted(zip(recs["u"], recs["i"], strict=True)) == sorted(
        zip(X.user_index(), X.indices, strict=True)
    )


def test_negatives_cover_the_group_uniformly():
    # one user with one interaction: every other item is a valid negative
    X = mfkit.Ratings.from_scipy(sp.csr_array(np.eye(1, 20, 3, dtype=np.float32)))
    layout = block_layout(X, 1, 0, 0)
    gptr, gitems = item_groups(layout.item_groups, 1)
    counts = np.zeros(20)
    P = np.zeros((1, 2))
    Q = np.zeros((20, 2))
    neg = np.empty(1, dtype=np.int32)
    for e in range(3800):
        strata, seeds = epoch_schedule(e, 1)
        _bpr.bpr_block_epoch(
            layout.records,
            layout.offsets,
            strata,
            seeds,
            X.indptr,
            X.indices,
            gptr,
            gitems,
            P,
            Q,
            0.0,
            0.0,
            neg,
            1,
        )
        counts[neg[0]] += 1
    assert counts[3] == 0
    expected = 3800 / 19
    # chi-square with 18 degrees of freedom: the 99.9% quantile is 42.3
    chi2 = float(np.sum((np.delete(counts, 3) - expected) ** 2 / expected))
    assert chi2 < 42.3


def test_a_user_who_saw_every_item_is_skipped():
    X = mfkit.Ratings.from_scipy(sp.csr_array(np.ones((1, 4), dtype=np.float32)))
    m = mfkit.BPR(factors=2, epochs=1, random_state=0).fit(X)
    assert np.isnan(m.history_["train_accuracy"][0])
    assert m.history_["train_loss"][0] == 0.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_thread_count_does_not_change_a_bit(dtype):
    X = interactions(300, 200, 0.05, seed=4)
    runs = [
        mfkit.BPR(factors=8, epochs=3, blocks=5, dtype=dtype, random_state=3, n_threads=t).fit(X)
        for t in (1, 2, 3)
    ]
    for m in runs[1:]:
        assert np.array_equal(m.user_factors_, runs[0].user_factors_)
        assert np.array_equal(m.item_factors_, runs[0].item_factors_)
        assert m.history_["train_loss"] == runs[0].history_["train_loss"]
    assert runs[0].blocks_ == 5


def test_learns_planted_groups():
    rng = np.random.default_rng(10)
    n_u, n_i = 80, 40
    group = np.arange(n_u) % 2
    own = (np.arange(n_i)[None, :] % 2) == group[:, None]
    C = (own & (rng.random((n_u, n_i)) < 0.5)).astype(np.float32)
    m = mfkit.BPR(factors=4, epochs=40, learning_rate=0.1, random_state=0).fit(sp.csr_array(C))
    items, _ = m.recommend(np.arange(n_u), n=3)
    assert np.mean(items % 2 == group[:, None]) > 0.95
    h = m.history_
    assert h["train_loss"][-1] < h["train_loss"][0] and h["train_accuracy"][-1] > 0.9


def test_validation_and_save_load(tmp_path):
    X = interactions(seed=5)
    train = X.subset(np.arange(X.nnz) % 4 != 0)
    test = X.subset(np.arange(X.nnz) % 4 == 0)
    m = mfkit.BPR(factors=4, epochs=4, random_state=1).fit(train, validation=test)
    assert np.isfinite(m.history_["val_ndcg@10"]).all()
    res = mfkit.metrics.evaluate(m, test, ["ndcg@10"])
    assert res["ndcg@10"] == m.history_["val_ndcg@10"][-1]
    m.save(tmp_path / "b.npz")
    back = mfkit.load(tmp_path / "b.npz")
    assert isinstance(back, mfkit.BPR) and back.blocks_ == m.blocks_
    assert np.array_equal(back.item_factors_, m.item_factors_)


@pytest.mark.parametrize(
    "params, exc, match",
    [
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be > 0"),
        ({"learning_rate": "fast"}, TypeError, "learning_rate must be a real number"),
        ({"blocks": 0}, ValueError, "blocks must be >= 1"),
        ({"blocks": "many"}, ValueError, "blocks must be one of"),
        ({"monitor": "map@5"}, ValueError, "monitor must be one of"),
    ],
)
def test_bad_parameters(params, exc, match):
    with pytest.raises(exc, match=match):
        mfkit.BPR(**params).fit(interactions())


def test_bad_values_and_fold_in():
    with pytest.raises(ValueError, match=r"data holds 1 value\(s\) that are not positive"):
        mfkit.BPR(factors=2, epochs=1).fit(([0, 1], [0, 1], [1.0, -3.0]))
    m = mfkit.BPR(factors=2, epochs=1, random_state=0).fit(interactions())
    with pytest.raises(NotImplementedError, match="no closed-form fold-in"):
        m.fold_in(([0], [1], [1.0]))


def test_cli_trains_bpr():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mfkit",
            "train",
            "--model",
            "bpr",
            "--preset",
            "ml-100k",
            "--implicit-threshold",
            "4",
            "--epochs",
            "3",
            "--factors",
            "8",
            "--blocks",
            "2",
            "--learning-rate",
            "0.05",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "BPR" in out.stdout and "test ndcg@10" in out.stdout
