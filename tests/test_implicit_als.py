"""ImplicitALS (Hu, Koren and Volinsky 2008): half-steps against dense NumPy solves of each
row's weighted normal equations, the objective, thread identity, validation, inputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import mfkit
from mfkit.models.implicit_als import gramian, half_step


def implicit_data(
    n_users: int = 60, n_items: int = 40, density: float = 0.15, seed: int = 0
) -> sp.csr_array:
    """Random interaction counts (1..5) with every user and item seen at least once."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    counts = rng.integers(1, 6, size=(n_users, n_items)).astype(np.float32)
    return sp.csr_array(np.where(mask, counts, 0).astype(np.float32))


def csr_parts(X: sp.csr_array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = sp.csr_array(X)
    X.sort_indices()
    return (
        X.indptr.astype(np.int64),
        X.indices.astype(np.int32),
        X.data.astype(np.float32),
    )


def dense_solve(C: np.ndarray, Y: np.ndarray, alpha: float, reg: float) -> np.ndarray:
    """Each row's minimiser from its dense weighted normal equations
    (Y^T C_u Y + reg I) x = Y^T C_u p_u, with c = 1 + alpha v and p = [v > 0]."""
    k = Y.shape[1]
    out = np.zeros((C.shape[0], k))
    for u in range(C.shape[0]):
        c = 1.0 + alpha * C[u]
        p = (C[u] > 0).astype(np.float64)
        A = Y.T @ (c[:, None] * Y) + reg * np.eye(k)
        out[u] = np.linalg.solve(A, Y.T @ (c * p))
    return out


def objective(C: np.ndarray, P: np.ndarray, Q: np.ndarray, alpha: float, reg: float) -> float:
    """The full weighted objective over every user-item cell."""
    Cw = 1.0 + alpha * C
    Pr = (C > 0).astype(np.float64)
    S = P.astype(np.float64) @ Q.astype(np.float64).T
    return float(
        np.sum(Cw * (Pr - S) ** 2) + reg * (np.sum(P.astype(np.float64) ** 2) + np.sum(Q**2))
    )


def numpy_cg(C: np.ndarray, Y: np.ndarray, X0: np.ndarray, alpha: float, reg: float, steps: int):
    """Plain conjugate gradient on each row's dense system, from the row's current value."""
    k = Y.shape[1]
    out = X0.astype(np.float64).copy()
    for u in range(C.shape[0]):
        if not (C[u] > 0).any():
            out[u] = 0
            continue
        c = 1.0 + alpha * C[u]
        p = (C[u] > 0).astype(np.float64)
        A = Y.T @ (c[:, None] * Y) + reg * np.eye(k)
        b = Y.T @ (c * p)
        x = out[u]
        r = b - A @ x
        d = r.copy()
        rr = r @ r
        for _ in range(steps):
            if rr <= 0:
                break
            Ad = A @ d
            a = rr / (d @ Ad)
            x = x + a * d
            r = r - a * Ad
            rr_new = r @ r
            d = r + (rr_new / rr) * d
            rr = rr_new
        out[u] = x
    return out


# ---------------------------------------------------------------------- kernels
@pytest.mark.parametrize("k", [3, 16, 21])
def test_gramian_is_y_transpose_y(k):
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((700, k))  # several fixed row blocks
    np.testing.assert_allclose(gramian(Y, 2), Y.T @ Y, rtol=1e-12, atol=1e-12)
    for t in (1, 3):
        assert np.array_equal(gramian(Y, t), gramian(Y, 2))


@pytest.mark.parametrize("k", [4, 16, 19])
def test_cholesky_half_step_is_the_exact_row_solve(k):
    C = implicit_data(seed=k).toarray()
    C[7] = 0  # a user without interactions
    indptr, indices, values = csr_parts(sp.csr_array(C))
    rng = np.random.default_rng(k)
    Y = rng.standard_normal((C.shape[1], k)) * 0.3
    X = rng.standard_normal((C.shape[0], k))
    half_step(indptr, indices, values, Y, X, alpha=2.5, regularization=0.3, solver="cholesky")
    want = dense_solve(C, Y, 2.5, 0.3)
    np.testing.assert_allclose(X, want, rtol=1e-8, atol=1e-10)
    assert not X[7].any()


def test_cg_half_step_is_conjugate_gradient_from_the_current_row():
    C = implicit_data(seed=3).toarray()
    indptr, indices, values = csr_parts(sp.csr_array(C))
    rng = np.random.default_rng(3)
    Y = rng.standard_normal((C.shape[1], 8)) * 0.3
    X0 = rng.standard_normal((C.shape[0], 8)) * 0.1
    for steps in (1, 3):
        X = X0.copy()
        half_step(indptr, indices, values, Y, X, alpha=4.0, regularization=0.1, cg_steps=steps)
        np.testing.assert_allclose(X, numpy_cg(C, Y, X0, 4.0, 0.1, steps), rtol=1e-9, atol=1e-11)


def test_cg_with_many_steps_equals_cholesky():
    C = implicit_data(seed=4).toarray()
    indptr, indices, values = csr_parts(sp.csr_array(C))
    rng = np.random.default_rng(4)
    Y = rng.standard_normal((C.shape[1], 10)) * 0.3
    X_cg = rng.standard_normal((C.shape[0], 10))
    X_ch = X_cg.copy()
    kw = {"alpha": 3.0, "regularization": 0.2}
    half_step(indptr, indices, values, Y, X_cg, solver="cg", cg_steps=40, **kw)
    half_step(indptr, indices, values, Y, X_ch, solver="cholesky", **kw)
    np.testing.assert_allclose(X_cg, X_ch, rtol=1e-7, atol=1e-9)


def test_row_loss_is_each_rows_share_of_the_objective():
    C = implicit_data(seed=5).toarray()
    indptr, indices, values = csr_parts(sp.csr_array(C))
    rng = np.random.default_rng(5)
    Y = rng.standard_normal((C.shape[1], 6)) * 0.3
    X = np.zeros((C.shape[0], 6))
    loss = np.zeros(C.shape[0])
    half_step(indptr, indices, values, Y, X, alpha=2.0, regularization=0.5, row_loss=loss)
    Cw, Pr = 1.0 + 2.0 * C, (C > 0).astype(float)
    want = np.sum(Cw * (Pr - X @ Y.T) ** 2, axis=1) + 0.5 * np.sum(X**2, axis=1)
    np.testing.assert_allclose(loss, want, rtol=1e-9)


# ---------------------------------------------------------------------- the estimator
def test_one_epoch_is_a_user_then_an_item_exact_solve():
    X = implicit_data(seed=6)
    C = X.toarray()
    m = mfkit.ImplicitALS(
        factors=5,
        epochs=1,
        regularization=0.2,
        alpha=3.0,
        solver="cholesky",
        dtype="float64",
        random_state=0,
        n_threads=1,
    )
    P0 = np.random.default_rng(0).standard_normal((C.shape[0], 5)) * 0.1
    Q0 = np.random.default_rng(1).standard_normal((C.shape[1], 5)) * 0.1
    m.fit(X, init=(P0, Q0))
    P1 = dense_solve(C, Q0, 3.0, 0.2)
    Q1 = dense_solve(C.T, P1, 3.0, 0.2)
    np.testing.assert_allclose(m.user_factors_, P1, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.item_factors_, Q1, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(
        m.history_["train_loss"][0], objective(C, P1, Q1, 3.0, 0.2), rtol=1e-9
    )


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_objective_never_increases(solver):
    X = implicit_data(n_users=80, n_items=50, seed=7)
    C = X.toarray()
    seen: list[float] = []

    def record(model, rec):
        seen.append(objective(C, model.user_factors_, model.item_factors_, 5.0, 0.1))

    m = mfkit.ImplicitALS(
        factors=8,
        epochs=8,
        regularization=0.1,
        alpha=5.0,
        solver=solver,
        cg_steps=3,
        dtype="float64",
        random_state=3,
        n_threads=2,
    )
    m.fit(X, callback=record)
    np.testing.assert_allclose(m.history_["train_loss"], seen, rtol=1e-9)
    if solver == "cholesky":
        assert all(b <= a * (1 + 1e-12) for a, b in zip(seen, seen[1:], strict=False))
    else:  # warm-started CG also decreases each row's objective, so the sum falls
        assert seen[-1] < seen[0]


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_thread_count_does_not_change_a_bit(solver, dtype):
    # 700 users: the user-side Gramian of the item half-step spans several row blocks
    X = implicit_data(n_users=700, n_items=120, density=0.05, seed=8)
    runs = []
    for t in (1, 2, 3):
        m = mfkit.ImplicitALS(
            factors=20, epochs=3, solver=solver, dtype=dtype, random_state=11, n_threads=t
        )
        m.fit(X)
        runs.append(m)
    for m in runs[1:]:
        assert np.array_equal(m.user_factors_, runs[0].user_factors_)
        assert np.array_equal(m.item_factors_, runs[0].item_factors_)
        assert m.history_["train_loss"] == runs[0].history_["train_loss"]


def test_float32_close_to_float64():
    X = implicit_data(seed=9)
    rng = np.random.default_rng(2)
    init = (rng.standard_normal((60, 6)) * 0.1, rng.standard_normal((40, 6)) * 0.1)
    kw = {"factors": 6, "epochs": 4, "solver": "cholesky", "alpha": 2.0}
    a = mfkit.ImplicitALS(dtype="float32", **kw).fit(X, init=init)
    b = mfkit.ImplicitALS(dtype="float64", **kw).fit(X, init=init)
    np.testing.assert_allclose(
        a.user_factors_ @ a.item_factors_.T, b.user_factors_ @ b.item_factors_.T, atol=2e-3
    )


def test_recovers_held_out_interactions_of_planted_groups():
    # two user groups each interacting with its own half of the items
    rng = np.random.default_rng(10)
    n_u, n_i = 80, 40
    group = np.arange(n_u) % 2
    own = (np.arange(n_i)[None, :] % 2) == group[:, None]
    C = (own & (rng.random((n_u, n_i)) < 0.5)).astype(np.float32)
    test = np.zeros_like(C)
    for u in range(n_u):  # hold one interaction per user out
        j = rng.choice(np.flatnonzero(C[u]))
        test[u, j], C[u, j] = 1, 0
    m = mfkit.ImplicitALS(factors=4, epochs=6, random_state=0).fit(sp.csr_array(C))
    items, scores = m.recommend(np.arange(n_u), n=5)
    assert np.all(items % 2 == group[:, None])  # every top item of the user's own group
    np.testing.assert_allclose(
        scores, np.take_along_axis(m.user_factors_ @ m.item_factors_.T, items, 1), rtol=1e-6
    )
    res = mfkit.metrics.evaluate(m, sp.csr_array(test), ["recall@5"])
    assert res["recall@5"] > 0.2  # five of twenty candidates at random: 0.25 expected


def test_validation_history_and_early_stopping():
    X = implicit_data(n_users=120, n_items=60, seed=12)
    C = X.toarray()
    rng = np.random.default_rng(12)
    test = np.zeros_like(C)
    train = C.copy()
    for u in range(C.shape[0]):
        nz = np.flatnonzero(C[u])
        if len(nz) > 1:
            j = rng.choice(nz)
            test[u, j], train[u, j] = C[u, j], 0
    kw = {"factors": 8, "regularization": 0.1, "alpha": 2.0, "random_state": 4, "n_threads": 2}
    m = mfkit.ImplicitALS(epochs=12, patience=2, **kw)
    m.fit(sp.csr_array(train), validation=sp.csr_array(test))
    h = m.history_
    assert set(h) == {
        "epoch",
        "train_loss",
        "val_precision@10",
        "val_recall@10",
        "val_map@10",
        "val_ndcg@10",
        "seconds",
    }
    nd = h["val_ndcg@10"]
    assert m.best_epoch_ == int(np.argmax(nd)) + 1
    # the restored state is the best epoch's: the same as a fit that ran that many epochs,
    # whose last record is the validation score of its final factors
    again = mfkit.ImplicitALS(epochs=m.best_epoch_, **kw).fit(sp.csr_array(train))
    assert np.array_equal(again.user_factors_, m.user_factors_)
    res = mfkit.metrics.evaluate(again, sp.csr_array(test), ["ndcg@10", "precision@10"])
    assert res["ndcg@10"] == nd[m.best_epoch_ - 1]
    assert res["precision@10"] == h["val_precision@10"][m.best_epoch_ - 1]
    if m.stop_reason_ == "early_stopping":
        assert len(nd) == m.best_epoch_ + 2


def test_without_validation_the_scores_are_nan():
    m = mfkit.ImplicitALS(
        factors=3, epochs=2, validation_metrics=["hit_rate@5"], monitor="hit_rate@5", random_state=0
    ).fit(implicit_data())
    assert np.isnan(m.history_["val_hit_rate@5"]).all()


def test_fold_in_is_the_exact_user_solve_against_the_items():
    X = implicit_data(seed=13)
    m = mfkit.ImplicitALS(
        factors=6, epochs=3, alpha=3.0, regularization=0.2, dtype="float64", random_state=1
    ).fit(X)
    new = implicit_data(n_users=5, seed=14).toarray()
    f = m.fold_in(sp.csr_array(new))
    want = dense_solve(new, m.item_factors_, 3.0, 0.2)
    np.testing.assert_allclose(f.user_factors, want, rtol=1e-8, atol=1e-10)
    items, scores = m.recommend(f, n=4)
    full = want @ m.item_factors_.T
    full[new > 0] = -np.inf
    np.testing.assert_array_equal(items, np.argsort(-full, axis=1, kind="stable")[:, :4])


def test_save_load_round_trip(tmp_path):
    m = mfkit.ImplicitALS(factors=4, epochs=2, alpha=7.0, random_state=0).fit(implicit_data())
    path = tmp_path / "m.npz"
    m.save(path)
    back = mfkit.load(path)
    assert isinstance(back, mfkit.ImplicitALS) and back.alpha == 7.0
    assert np.array_equal(back.item_factors_, m.item_factors_)
    assert np.array_equal(back.recommend([0, 1], n=3)[0], m.recommend([0, 1], n=3)[0])
    assert back.history_["train_loss"] == m.history_["train_loss"]


def test_same_data_from_triplets_and_dataframe():
    import pandas as pd

    X = implicit_data(seed=15)
    coo = X.tocoo()
    kw = {"factors": 4, "epochs": 2, "random_state": 5}
    a = mfkit.ImplicitALS(**kw).fit(X)
    b = mfkit.ImplicitALS(**kw).fit((coo.row, coo.col, coo.data))
    df = pd.DataFrame({"user": coo.row, "item": coo.col, "rating": coo.data})
    c = mfkit.ImplicitALS(**kw).fit(df)
    assert np.array_equal(a.item_factors_, b.item_factors_)
    assert np.array_equal(a.item_factors_, c.item_factors_)


# ---------------------------------------------------------------------- to_implicit
def test_to_implicit_threshold_and_values():
    R = mfkit.Ratings.from_triplets(
        np.array(["a", "a", "b", "c"]), np.array([1, 2, 1, 3]), np.array([5.0, 2.0, 4.0, 1.0])
    )
    ones = mfkit.to_implicit(R, threshold=4)
    assert ones.shape == R.shape and ones.nnz == 2
    assert ones.user_map.same_as(R.user_map) and ones.item_map.same_as(R.item_map)
    u, i, v = ones.to_triplets(original_ids=True)
    assert u.tolist() == ["a", "b"] and i.tolist() == [1, 1] and v.tolist() == [1.0, 1.0]
    assert mfkit.to_implicit(R, threshold=4, values="ratings").values.tolist() == [5.0, 4.0]
    assert mfkit.to_implicit(R, threshold=4, values="excess").values.tolist() == [2.0, 1.0]
    assert mfkit.to_implicit(R).nnz == 4
    with pytest.raises(ValueError, match="values='excess' needs a threshold"):
        mfkit.to_implicit(R, values="excess")
    with pytest.raises(ValueError, match="values must be one of"):
        mfkit.to_implicit(R, values="log")
    neg = mfkit.Ratings.from_triplets([0, 1], [0, 0], [-1.0, 2.0])
    with pytest.raises(ValueError, match="kept ratings must be > 0"):
        mfkit.to_implicit(neg, values="ratings")


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "params, exc, match",
    [
        ({"alpha": 0.0}, ValueError, "alpha must be > 0"),
        ({"alpha": -1.0}, ValueError, "alpha must be > 0"),
        ({"alpha": float("nan")}, ValueError, "alpha must be finite"),
        ({"alpha": "40"}, TypeError, "alpha must be a real number"),
        ({"solver": "lu"}, ValueError, "solver must be one of"),
        ({"cg_steps": 0}, ValueError, "cg_steps must be >= 1"),
        ({"factors": 0}, ValueError, "factors must be >= 1"),
        ({"regularization": -0.1}, ValueError, "regularization must be >= 0"),
        ({"validation_metrics": ["rmse"]}, ValueError, "ranking metrics with a cut-off"),
        ({"validation_metrics": "ndcg@10"}, TypeError, "non-empty sequence"),
        ({"monitor": "recall@20"}, ValueError, "monitor must be one of"),
        ({"n_threads": 0}, ValueError, "n_threads"),
    ],
)
def test_bad_parameters(params, exc, match):
    with pytest.raises(exc, match=match):
        mfkit.ImplicitALS(**params).fit(implicit_data())


@pytest.mark.parametrize("bad", [-1.0, 0.0])
def test_non_positive_confidences_are_named(bad):
    u, i, v = np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([1.0, bad, 2.0])
    with pytest.raises(ValueError, match=r"data holds 1 value\(s\) that are not positive"):
        mfkit.ImplicitALS(factors=2, epochs=1).fit((u, i, v))


def test_nan_confidences_are_named():
    with pytest.raises(ValueError, match="NaN"):
        mfkit.ImplicitALS(factors=2, epochs=1).fit(([0, 1], [0, 1], [1.0, np.nan]))


def test_bad_fold_in():
    m = mfkit.ImplicitALS(factors=3, epochs=1, random_state=0).fit(implicit_data())
    with pytest.raises(ValueError, match="weighted does not apply"):
        m.fold_in(sp.csr_array(np.ones((1, 40), dtype=np.float32)), weighted=True)
    with pytest.raises(ValueError, match="fold-in data holds 1 value"):
        m.fold_in(([0, 0], [1, 2], [1.0, -2.0]))


def test_bad_half_step_inputs():
    indptr, indices, values = csr_parts(implicit_data())
    Y = np.zeros((40, 3), dtype=np.float32)
    X = np.zeros((60, 3))
    with pytest.raises(TypeError, match="share one dtype"):
        half_step(indptr, indices, values, Y, X, alpha=1.0, regularization=0.1)
    bad = indices.copy()
    bad[3] = 40
    with pytest.raises(ValueError, match="outside"):
        half_step(indptr, bad, values, Y.astype(np.float64), X, alpha=1.0, regularization=0.1)


# ---------------------------------------------------------------------- command line
def test_cli_trains_evaluates_and_cross_validates_implicit_als(tmp_path):
    def run(*argv: str) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [sys.executable, "-m", "mfkit", *argv], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stderr
        return out

    model = str(tmp_path / "m.npz")
    data = ["--preset", "ml-100k", "--implicit-threshold", "4"]
    fit = ["--model", "implicit-als", "--epochs", "2", "--factors", "8", "--quiet"]
    out = run("train", *data, *fit, "--alpha", "5", "--solver", "cholesky", "--out", model)
    assert "ImplicitALS" in out.stdout and "test ndcg@10" in out.stdout
    assert mfkit.load(model).alpha == 5.0
    out = run("evaluate", model, *data)
    assert "ndcg@10" in out.stdout and "rmse" not in out.stdout
    assert "skipping rmse, mae" in out.stderr
    out = run("cv", *data, *fit, "--folds", "2", "--metrics", "ndcg@10")
    assert "ndcg@10" in out.stdout and "mean" in out.stdout


def test_cli_refuses_implicit_options_elsewhere():
    for argv in (
        ["--model", "sgd", "--alpha", "3"],
        ["--model", "als", "--implicit-threshold", "4"],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "mfkit", "train", "--preset", "toy", *argv],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode != 0 and "implicit" in out.stderr and "only" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "mfkit", "cv", "--preset", "toy", "--model", "implicit-als"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0 and "pass ranking metrics" in out.stderr


def test_verbose_prints_the_models_own_history_keys(capsys):
    X = implicit_data(seed=16)
    mfkit.ImplicitALS(factors=3, epochs=2, verbose=True, random_state=0).fit(X, validation=X)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("train_loss" in line and "val_ndcg@10" in line for line in err)
