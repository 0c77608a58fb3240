"""Tests of mfkit.ALS and its half-step kernels against independent NumPy references."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

import mfkit
from mfkit.als import half_step
from mfkit.ratings import Ratings
from tests.conftest import random_ratings

# ----------------------------------------------------------------------------- fixtures


def dense_of(X: Ratings) -> tuple[np.ndarray, np.ndarray]:
    R = np.zeros(X.shape)
    M = np.zeros(X.shape, dtype=bool)
    u, i, r = X.to_triplets()
    R[u, i] = r
    M[u, i] = True
    return R, M


def reference_rows(
    R: np.ndarray,
    M: np.ndarray,
    Y: np.ndarray,
    ybias: np.ndarray | None,
    mu: float,
    reg: float,
    reg_b: float,
    weighted: bool,
    X0: np.ndarray | None = None,
    prior: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each row's regularised least-squares solution by numpy.linalg.solve of its own
    normal equations (rows of R are the rows being solved, Y the fixed opposite side)."""
    n, k = R.shape[0], Y.shape[1]
    biases = ybias is not None
    X = np.zeros((n, k))
    b = np.zeros(n)
    for u in range(n):
        J = np.flatnonzero(M[u])
        if len(J) == 0:
            if X0 is not None and prior > 0:
                X[u] = prior / (reg + prior) * X0[u]
            continue
        c = len(J) if weighted else 1.0
        t = R[u, J] - (mu + ybias[J] if biases else 0.0)
        Z = np.hstack([Y[J], np.ones((len(J), 1))]) if biases else Y[J]
        diag = [c * (reg + prior)] * k + ([c * reg_b] if biases else [])
        A = Z.T @ Z + np.diag(diag)
        rhs = Z.T @ t
        if X0 is not None and prior > 0:
            rhs[:k] += c * prior * X0[u]
        sol = np.linalg.solve(A, rhs)
        X[u] = sol[:k]
        if biases:
            b[u] = sol[k]
    return X, (b if biases else None)


def objective(X: Ratings, m: mfkit.ALS, P0=None, Q0=None) -> float:
    """The training objective of ``m``'s current factors, computed directly."""
    R, M = dense_of(X)
    P = m.user_factors.astype(np.float64)
    Q = m.item_factors.astype(np.float64)
    bu = m.user_biases.astype(np.float64)
    bi = m.item_biases.astype(np.float64)
    return objective_arrays(R, M, P, Q, bu, bi, m, P0, Q0)


def objective_arrays(R, M, P, Q, bu, bi, m, P0=None, Q0=None) -> float:
    # a fitted regularization='auto' model says in regularization_ which weight it used
    reg = m.regularization_ if isinstance(m.regularization, str) else m.regularization
    reg_b = reg if m.bias_regularization is None else m.bias_regularization
    prior = m.prior_regularization
    pred = P @ Q.T
    if m.biases:
        pred = pred + m.global_mean + bu[:, None] + bi[None, :]
    sse = float(np.sum(((R - pred) * M) ** 2))
    cu = M.sum(1) if m.weighted else np.ones(len(P))
    ci = M.sum(0) if m.weighted else np.ones(len(Q))
    pen = np.sum(cu * reg * (P**2).sum(1)) + np.sum(ci * reg * (Q**2).sum(1))
    if m.biases:
        pen += np.sum(cu * reg_b * bu**2) + np.sum(ci * reg_b * bi**2)
    if prior > 0:
        pen += np.sum(cu * prior * ((P - P0) ** 2).sum(1))
        pen += np.sum(ci * prior * ((Q - Q0) ** 2).sum(1))
    return sse + float(pen)


def start_factors(X: Ratings, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(0, 0.3, (X.n_users, k)),
        rng.normal(0, 0.3, (X.n_items, k)),
    )


def csr_args(X: Ratings, users: bool = True):
    if users:
        return X.indptr, X.indices, X.values
    indptr, rows, vals, _ = X.csc()
    return indptr, rows, vals


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("with_prior", [False, True])
def test_one_epoch_matches_numpy_solve(biases, weighted, with_prior):
    X = random_ratings(3, empty_users=(5,), empty_items=(7,))
    k = 6
    P0, Q0 = start_factors(X, k, seed=4)
    prior = 0.3 if with_prior else 0.0
    m = mfkit.ALS(
        factors=k,
        epochs=1,
        regularization=0.07,
        bias_regularization=0.02,
        prior_regularization=prior,
        weighted=weighted,
        biases=biases,
        dtype="float64",
        random_state=0,
        n_threads=2,
    )
    m.fit(X, init=(P0, Q0))
    R, M = dense_of(X)
    mu = float(np.mean(X.values, dtype=np.float64)) if biases else 0.0
    zero_items = np.zeros(X.n_items) if biases else None
    P_ref, bu_ref = reference_rows(
        R, M, Q0, zero_items, mu, 0.07, 0.02, weighted, P0 if with_prior else None, prior
    )
    # the user half-step: every user row from its own normal equations given Q0 (bi = 0)
    # (the item half-step then needs the new user side, so check it from the fitted P)
    Q_ref, bi_ref = reference_rows(
        R.T,
        M.T,
        m.user_factors,
        m.user_biases if biases else None,
        mu,
        0.07,
        0.02,
        weighted,
        Q0 if with_prior else None,
        prior,
    )
    np.testing.assert_allclose(m.user_factors, P_ref, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(m.item_factors, Q_ref, rtol=1e-8, atol=1e-12)
    if biases:
        np.testing.assert_allclose(m.user_biases, bu_ref, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(m.item_biases, bi_ref, rtol=1e-8, atol=1e-12)
    else:
        assert not m.user_biases.any() and not m.item_biases.any()
    # empty user 5 and empty item 7: the minimiser of their penalty alone
    w = prior / (0.07 + prior) if with_prior else 0.0
    np.testing.assert_allclose(m.user_factors[5], w * P0[5], rtol=1e-12, atol=0)
    np.testing.assert_allclose(m.item_factors[7], w * Q0[7], rtol=1e-12, atol=0)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_half_step_on_shards_equals_whole(solver):
    """A half-step is a function of its block of rows: two shards give the same bytes."""
    X = random_ratings(11, n_users=50, n_items=20, density=0.3)
    k = 8
    P0, Q0 = start_factors(X, k, seed=1)
    Q = Q0.astype(np.float32)
    bi = np.linspace(-0.5, 0.5, X.n_items, dtype=np.float32)
    kw = dict(mu=3.0, regularization=0.05, weighted=True, solver=solver, cg_steps=3)
    whole = P0.astype(np.float32)
    bu_whole = np.zeros(X.n_users, dtype=np.float32)
    half_step(*csr_args(X), Q, whole, ybias=bi, xbias=bu_whole, **kw)
    parts = P0.astype(np.float32)
    bu_parts = np.zeros(X.n_users, dtype=np.float32)
    indptr, indices, values = csr_args(X)
    for a, b in [(0, 17), (17, 50)]:
        Xs, bs = parts[a:b], bu_parts[a:b]
        half_step(indptr[a : b + 1], indices, values, Q, Xs, ybias=bi, xbias=bs, **kw)
    assert whole.tobytes() == parts.tobytes()
    assert bu_whole.tobytes() == bu_parts.tobytes()


def test_half_step_row_sse_is_the_residual_sum():
    X = random_ratings(5)
    k = 5
    P0, Q0 = start_factors(X, k, seed=2)
    bi = np.full(X.n_items, 0.25)
    bu = np.zeros(X.n_users)
    P = P0.copy()
    sse = np.empty(X.n_users)
    half_step(*csr_args(X), Q0, P, ybias=bi, xbias=bu, mu=3.0, regularization=0.1, row_sse=sse)
    R, M = dense_of(X)
    E = (R - (3.0 + bu[:, None] + bi[None, :] + P @ Q0.T)) * M
    np.testing.assert_allclose(sse, (E**2).sum(1), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- descent


@pytest.mark.parametrize("solver,steps", [("cholesky", 3), ("cg", 3)])
@pytest.mark.parametrize("weighted", [True, False])
def test_objective_never_increases_between_half_steps(solver, steps, weighted):
    X = random_ratings(8, n_users=60, n_items=35, density=0.2, empty_items=(3,))
    R, M = dense_of(X)
    k = 7
    P0, Q0 = start_factors(X, k, seed=9)
    mu = float(np.mean(X.values, dtype=np.float64))
    # the objective's settings (an unfitted model has no learned global mean to set)
    model = types.SimpleNamespace(
        **mfkit.ALS(
            factors=k, regularization=0.04, bias_regularization=0.01, weighted=weighted
        ).get_params(),
        global_mean=mu,
    )
    P, Q = P0.copy(), Q0.copy()
    bu, bi = np.zeros(X.n_users), np.zeros(X.n_items)
    kw = dict(
        mu=mu,
        regularization=0.04,
        bias_regularization=0.01,
        weighted=weighted,
        solver=solver,
        cg_steps=steps,
    )
    values = [objective_arrays(R, M, P, Q, bu, bi, model)]
    for _ in range(6):
        half_step(*csr_args(X, True), Q, P, ybias=bi, xbias=bu, **kw)
        values.append(objective_arrays(R, M, P, Q, bu, bi, model))
        half_step(*csr_args(X, False), P, Q, ybias=bu, xbias=bi, **kw)
        values.append(objective_arrays(R, M, P, Q, bu, bi, model))
    diffs = np.diff(values)
    assert np.all(diffs <= 1e-10 * values[0]), diffs
    assert values[-1] < 0.5 * values[0]


def test_epoch_objective_decreases_through_the_estimator():
    X = random_ratings(21, n_users=50, n_items=40)
    seen = []

    def record(m, rec):
        seen.append(objective(X, m))

    mfkit.ALS(factors=5, epochs=6, dtype="float64", random_state=2).fit(X, callback=record)
    assert np.all(np.diff(seen) <= 1e-10 * seen[0])


@pytest.mark.parametrize("biases", [True, False])
def test_cg_with_many_steps_matches_cholesky(biases):
    X = random_ratings(13, n_users=45, n_items=30)
    k = 6
    init = start_factors(X, k, seed=5)
    common = dict(
        factors=k, epochs=3, regularization=0.05, biases=biases, dtype="float64", random_state=0
    )
    exact = mfkit.ALS(solver="cholesky", **common).fit(X, init=init)
    cg = mfkit.ALS(solver="cg", cg_steps=40, **common).fit(X, init=init)
    np.testing.assert_allclose(cg.user_factors, exact.user_factors, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(cg.item_factors, exact.item_factors, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(cg.user_biases, exact.user_biases, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(cg.item_biases, exact.item_biases, rtol=1e-6, atol=1e-9)


def test_cg_three_steps_approaches_the_exact_fit():
    X = random_ratings(17, n_users=60, n_items=40)
    init = start_factors(X, 6, seed=3)
    common = dict(factors=6, regularization=0.05, dtype="float64", random_state=0)
    exact = mfkit.ALS(solver="cholesky", epochs=30, **common).fit(X, init=init)
    cg = mfkit.ALS(solver="cg", cg_steps=3, epochs=30, **common).fit(X, init=init)
    start = mfkit.ALS(solver="cg", epochs=0, **common).fit(X, init=init)
    f_exact, f_cg, f_start = objective(X, exact), objective(X, cg), objective(X, start)
    assert f_cg < f_start
    assert abs(f_cg - f_exact) < 0.02 * (f_start - f_exact)


# ----------------------------------------------------------------------------- reference ALS


def plain_als(R, M, P, Q, lam, iterations):
    """The textbook ALS: x_u = (sum_i y_i y_i^T + lam I)^-1 sum_i r_ui y_i, users then
    items, written without reference to mfkit."""
    P, Q = P.copy(), Q.copy()
    k = P.shape[1]
    for _ in range(iterations):
        for u in range(len(P)):
            obs = M[u]
            Y = Q[obs]
            P[u] = np.linalg.inv(Y.T @ Y + lam * np.eye(k)) @ (Y.T @ R[u, obs])
        for i in range(len(Q)):
            obs = M[:, i]
            Y = P[obs]
            Q[i] = np.linalg.inv(Y.T @ Y + lam * np.eye(k)) @ (Y.T @ R[obs, i])
    return P, Q


def test_reproduces_textbook_plain_als():
    X = random_ratings(31, n_users=35, n_items=25, density=0.3, empty_users=(2,))
    R, M = dense_of(X)
    P0, Q0 = start_factors(X, 4, seed=6)
    P_ref, Q_ref = plain_als(R, M, P0, Q0, lam=0.1, iterations=4)
    m = mfkit.ALS(
        factors=4,
        epochs=4,
        regularization=0.1,
        biases=False,
        weighted=False,
        solver="cholesky",
        dtype="float64",
        random_state=0,
    ).fit(X, init=(P0, Q0))
    np.testing.assert_allclose(m.user_factors, P_ref, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(m.item_factors, Q_ref, rtol=1e-8, atol=1e-12)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_thread_count_does_not_change_a_bit(solver, dtype):
    X = mfkit.datasets.synthetic("ml-100k", random_state=1)
    fits = [
        mfkit.ALS(
            factors=20, epochs=2, solver=solver, dtype=dtype, random_state=7, n_threads=n
        ).fit(X)
        for n in (1, 2, 4)
    ]
    for m in fits[1:]:
        for name in ("user_factors", "item_factors", "user_biases", "item_biases"):
            assert getattr(m, name).tobytes() == getattr(fits[0], name).tobytes(), name
        assert m.history_["train_rmse"] == fits[0].history_["train_rmse"]


def test_same_seed_same_bits_different_seed_differs():
    X = random_ratings(2)
    a = mfkit.ALS(factors=4, epochs=2, solver="cg", random_state=5).fit(X)
    b = mfkit.ALS(factors=4, epochs=2, solver="cg", random_state=5).fit(X)
    c = mfkit.ALS(factors=4, epochs=2, solver="cg", random_state=6).fit(X)
    assert a.user_factors.tobytes() == b.user_factors.tobytes()
    assert a.user_factors.tobytes() != c.user_factors.tobytes()
    g = mfkit.ALS(factors=4, epochs=1, random_state=np.random.default_rng(5)).fit(X)
    n = mfkit.ALS(factors=4, epochs=1, random_state=None).fit(X)
    assert np.isfinite(g.user_factors).all() and np.isfinite(n.user_factors).all()


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_float32_close_to_float64(solver):
    X = mfkit.datasets.synthetic("toy", random_state=3)
    init = start_factors(X, 8, seed=0)
    kw = dict(factors=8, epochs=5, solver=solver, random_state=0)
    m32 = mfkit.ALS(dtype="float32", **kw).fit(X, init=init)
    m64 = mfkit.ALS(dtype="float64", **kw).fit(X, init=init)
    assert m32.user_factors.dtype == np.float32 and m64.user_factors.dtype == np.float64
    u, i, _ = X.to_triplets()
    np.testing.assert_allclose(m32.predict(u, i), m64.predict(u, i), rtol=0, atol=2e-4)
    np.testing.assert_allclose(m32.history_["train_rmse"], m64.history_["train_rmse"], rtol=1e-4)


def test_train_rmse_is_the_rmse_of_the_final_factors():
    X = random_ratings(4)
    m = mfkit.ALS(factors=5, epochs=3, random_state=0, dtype="float64").fit(X)
    u, i, r = X.to_triplets()
    rmse = np.sqrt(np.mean((m.predict(u, i) - r) ** 2))
    assert m.history_["train_rmse"][-1] == pytest.approx(rmse, rel=1e-10)


def test_learns_a_planted_low_rank_matrix():
    rng = np.random.default_rng(0)
    P, Q = rng.normal(size=(80, 3)), rng.normal(size=(60, 3))
    full = P @ Q.T
    mask = rng.random(full.shape) < 0.5
    train = Ratings.from_dense(np.where(mask, full, np.nan))
    m = mfkit.ALS(factors=3, epochs=40, regularization=1e-3, biases=False, dtype="float64")
    m.set_params(random_state=1).fit(train)
    u, i = np.nonzero(~mask)
    err = m.predict(u, i) - full[u, i]
    assert np.sqrt(np.mean(err**2)) < 0.05 * np.std(full)


# ----------------------------------------------------------------------------- edge cases


def test_single_rating():
    X = Ratings.from_triplets([0], [0], [4.0], shape=(1, 1))
    m = mfkit.ALS(factors=3, epochs=3, random_state=0, dtype="float64").fit(X)
    assert m.global_mean == 4.0
    assert np.isfinite(m.user_factors).all() and np.isfinite(m.item_factors).all()
    # everything beyond the mean is shrunk toward zero; the prediction stays at 4
    assert m.predict([0], [0])[0] == pytest.approx(4.0, abs=1e-6)


def test_empty_rows_and_columns_predict_the_baseline():
    X = random_ratings(6, empty_users=(0, 9), empty_items=(4,))
    for solver in ("cholesky", "cg"):
        m = mfkit.ALS(factors=5, epochs=3, solver=solver, random_state=0).fit(X)
        assert not m.user_factors[[0, 9]].any() and not m.item_factors[4].any()
        assert m.user_biases[0] == 0 and m.item_biases[4] == 0
        pred = m.predict([0, 2], [4, 4])
        np.testing.assert_allclose(pred, m.global_mean + np.array([0, m.user_biases[2]]))


def test_more_factors_than_ratings_per_row():
    X = random_ratings(12, n_users=20, n_items=15, density=0.1)
    assert np.diff(X.indptr).min() < 25
    for weighted in (True, False):
        m = mfkit.ALS(factors=25, epochs=3, weighted=weighted, random_state=1, dtype="float64")
        m.fit(X)
        assert np.isfinite(m.user_factors).all() and np.isfinite(m.history_["train_rmse"]).all()


def test_not_positive_definite_in_float32_is_reported():
    # six identical, huge item rows and a tiny lambda: in float32 the regularisation is lost
    # to rounding in the rank-one Gram matrix and Cholesky meets a non-positive pivot
    n, k = 6, 4
    Y = np.full((n, k), 1e5, dtype=np.float32)
    indptr = np.array([0, n], dtype=np.int64)
    indices = np.arange(n, dtype=np.int32)
    values = np.ones(n, dtype=np.float32)
    Xr = np.zeros((1, k), dtype=np.float32)
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        half_step(indptr, indices, values, Y, Xr, regularization=1e-12, weighted=False)
    # float64 and lambda = 1 solve it: x = 6e5 / (4 * 6e10 + 1) in every coordinate
    X64 = np.zeros((1, k))
    half_step(
        indptr, indices, values, Y.astype(np.float64), X64, regularization=1.0, weighted=False
    )
    # (condition number 2.4e11, so about 1e-5 relative accuracy in float64)
    np.testing.assert_allclose(X64, np.full((1, k), 6e5 / (4 * 6e10 + 1)), rtol=1e-4)


def test_diverged_fit_keeps_the_last_good_epoch():
    X = random_ratings(1)
    P0 = np.zeros((X.n_users, 4))
    Q0 = np.full((X.n_items, 4), 1e5)
    m = mfkit.ALS(factors=4, epochs=2, regularization=1e-12, weighted=False, biases=False)
    with pytest.raises(mfkit.DivergenceError, match="not positive definite.*regularization"):
        m.fit(X, init=(P0, Q0))
    assert m.stop_reason_ == "diverged"
    np.testing.assert_array_equal(m.item_factors, Q0.astype(np.float32))
    assert not m.user_factors.any()


def test_priors_pull_toward_init():
    X = random_ratings(14)
    init = start_factors(X, 4, seed=8)
    loose = mfkit.ALS(factors=4, epochs=4, random_state=0, dtype="float64").fit(X, init=init)
    tight = mfkit.ALS(
        factors=4, epochs=4, prior_regularization=50.0, random_state=0, dtype="float64"
    ).fit(X, init=init)
    d_loose = np.linalg.norm(loose.user_factors - init[0])
    d_tight = np.linalg.norm(tight.user_factors - init[0])
    assert d_tight < 0.05 * d_loose


def test_early_stopping_and_save_load(tmp_path):
    X = mfkit.datasets.synthetic("toy", random_state=0)
    train, test = mfkit.model_selection.train_test_split(X, 0.2, random_state=0)
    # an improvement must exceed tol = 10 to count: only the first epoch is ever "best"
    m = mfkit.ALS(factors=8, epochs=30, patience=2, tol=10.0, random_state=0)
    m.fit(train, validation=test)
    assert m.stop_reason_ == "early_stopping"
    assert m.best_epoch_ == 1 and len(m.history_["epoch"]) == 3
    best = 0
    u, i, r = test.to_triplets()
    rmse = np.sqrt(np.mean((m.predict(u, i) - r) ** 2))
    assert rmse == pytest.approx(m.history_["val_rmse"][best], rel=1e-6)
    path = tmp_path / "als.npz"
    m.save(path)
    back = mfkit.load(path)
    assert isinstance(back, mfkit.ALS)
    assert back.get_params() == m.get_params()
    np.testing.assert_array_equal(back.predict(u, i), m.predict(u, i))


def test_warm_start_from_a_fitted_model():
    X = random_ratings(19)
    kw = dict(factors=4, random_state=0, dtype="float64", regularization=0.05)
    a = mfkit.ALS(epochs=2, **kw).fit(X)
    b = mfkit.ALS(epochs=1, **kw).fit(X, init=a)
    c = mfkit.ALS(epochs=3, **kw).fit(X)
    # two epochs, then one more from that state, equal three epochs at once
    np.testing.assert_allclose(b.user_factors, c.user_factors, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.item_biases, c.item_biases, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "params,exc,match",
    [
        ({"solver": "lu"}, ValueError, "solver"),
        ({"solver": 1}, TypeError, "solver"),
        ({"cg_steps": 0}, ValueError, "cg_steps"),
        ({"cg_steps": 2.5}, TypeError, "cg_steps"),
        ({"weighted": "yes"}, TypeError, "weighted"),
        ({"regularization": 0.0}, ValueError, "regularization > 0"),
        ({"regularization": -1.0}, ValueError, "regularization"),
        ({"factors": 0}, ValueError, "factors"),
        ({"n_threads": 0}, ValueError, "n_threads"),
        ({"dtype": "int32"}, TypeError, "dtype"),
        ({"prior_regularization": 1.0}, ValueError, "init"),
    ],
)
def test_bad_parameters(params, exc, match):
    X = random_ratings(0)
    with pytest.raises(exc, match=match):
        mfkit.ALS(**params).fit(X)


def test_bad_half_step_inputs():
    X = random_ratings(0)
    k = 3
    Q = np.zeros((X.n_items, k))
    P = np.zeros((X.n_users, k))
    args = csr_args(X)
    with pytest.raises(ValueError, match="rows"):
        half_step(*args, Q, P[:-1], regularization=0.1)
    with pytest.raises(ValueError, match="same number of factors"):
        half_step(*args, np.zeros((X.n_items, 2)), P, regularization=0.1)
    with pytest.raises(TypeError, match="dtype"):
        half_step(*args, Q.astype(np.float32), P, regularization=0.1)
    with pytest.raises(ValueError, match="contiguous"):
        half_step(*args, np.asfortranarray(np.ones((X.n_items, k))), P, regularization=0.1)
    with pytest.raises(ValueError, match="outside"):
        half_step(*args, Q[:5], P, regularization=0.1)
    bad_ptr = X.indptr.copy()
    bad_ptr[3] = bad_ptr[4] + 1
    with pytest.raises(ValueError, match="indptr"):
        half_step(bad_ptr, X.indices, X.values, Q, P, regularization=0.1)
    with pytest.raises(ValueError, match="ybias and xbias"):
        half_step(*args, Q, P, ybias=np.zeros(X.n_items), regularization=0.1)
    with pytest.raises(ValueError, match="one entry per row"):
        half_step(*args, Q, P, ybias=np.zeros(3), xbias=np.zeros(X.n_users), regularization=0.1)
    with pytest.raises(ValueError, match="regularization"):
        half_step(*args, Q, P, regularization=0.0)
    with pytest.raises(ValueError, match="solver"):
        half_step(*args, Q, P, regularization=0.1, solver="qr")
    with pytest.raises(ValueError, match="cg_steps must be >= 1"):
        half_step(*args, Q, P, regularization=0.1, solver="cg", cg_steps=0)
    for pos, name, arr in (
        (0, "indptr", X.indptr.astype(np.int32)),
        (1, "indices", X.indices.astype(np.int64)),
        (2, "values", X.values.astype(np.float64)),
        (2, "values", X.values.astype(">f4")),
    ):
        bad = list(args)
        bad[pos] = arr
        with pytest.raises(TypeError, match=f"{name} must be a 1-d"):
            half_step(*bad, Q, P, regularization=0.1)
    # nothing was written by the rejected calls
    assert not P.any()


def test_bad_init_shapes():
    X = random_ratings(0)
    with pytest.raises(ValueError, match="shape"):
        mfkit.ALS(factors=3).fit(X, init=(np.zeros((2, 3)), np.zeros((X.n_items, 3))))
    with pytest.raises(ValueError, match="NaN"):
        mfkit.ALS(factors=3).fit(
            X, init=(np.full((X.n_users, 3), np.nan), np.zeros((X.n_items, 3)))
        )


def test_cli_trains_als():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mfkit",
            "train",
            "--model",
            "als",
            "--solver",
            "cg",
            "--preset",
            "toy",
            "--epochs",
            "3",
            "--factors",
            "8",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "ALS" in out.stdout and "test RMSE" in out.stdout


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
def test_fold_in_equals_the_als_user_half_step(biases: bool, weighted: bool) -> None:
    from mfkit.als import half_step

    data = mfkit.datasets.synthetic("toy", random_state=2)
    m = mfkit.ALS(
        factors=6,
        epochs=3,
        biases=biases,
        weighted=weighted,
        regularization=0.1,
        bias_regularization=0.03,
        dtype="float64",
        random_state=0,
    ).fit(data)
    X = m.user_factors.copy()
    xb = m.user_biases.copy()
    half_step(
        data.indptr,
        data.indices,
        data.values,
        m.item_factors,
        X,
        ybias=m.item_biases if biases else None,
        xbias=xb if biases else None,
        mu=m.global_mean,
        regularization=0.1,
        bias_regularization=0.03,
        weighted=weighted,
    )
    folded = m.fold_in(data)
    np.testing.assert_allclose(folded.user_factors, X, rtol=1e-8, atol=1e-10)
    if biases:
        np.testing.assert_allclose(folded.user_biases, xb, rtol=1e-8, atol=1e-10)


def test_half_step_refuses_bad_arrays_by_name() -> None:
    # regression tests: a list raised AttributeError, a NaN rating gave NaN factors silently
    X = random_ratings(31, n_users=12, n_items=9)
    P = np.zeros((X.n_users, 3), dtype=np.float32)
    Q = np.ones((X.n_items, 3), dtype=np.float32)
    args = (X.indptr, X.indices, X.values)
    with pytest.raises(TypeError, match="Y must be a numpy array"):
        half_step(*args, Q.tolist(), P, regularization=0.1)
    with pytest.raises(TypeError, match="X must be a numpy array"):
        half_step(*args, Q, P.tolist(), regularization=0.1)
    bad = X.values.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        half_step(X.indptr, X.indices, bad, Q, P, regularization=0.1)
    half_step(*args, Q, P, regularization=0.1)  # and the good call works
    assert np.all(np.isfinite(P)) and np.any(P != 0)
