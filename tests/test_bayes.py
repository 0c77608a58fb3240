"""BayesianMF: the row sampler against NumPy, its distribution against the closed form, the
hyperparameter draws against SciPy, the learned noise, thread identity and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

import mfkit
from mfkit.cli import main
from mfkit.models import _bayes
from mfkit.models.bayes import (
    normal_wishart_posterior,
    sample_hyper,
    sample_noise_precision,
    sample_rows,
    sample_wishart,
)

SAMPLE_ATTRIBUTES = (
    "user_factors_",
    "item_factors_",
    "user_bias_samples_",
    "item_bias_samples_",
    "noise_precision_samples_",
)


# --------------------------------------------------------------------------- helpers
def _csr(rng: np.random.Generator, n_rows: int, n_cols: int, density: float):  # type: ignore[no-untyped-def]
    mask = rng.random((n_rows, n_cols)) < density
    mask[0] = False  # one row without ratings
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int64)
    indices = np.nonzero(mask)[1].astype(np.int32)
    values = rng.integers(1, 6, len(indices)).astype(np.float32)
    return indptr, indices, values


def _spd(rng: np.random.Generator, K: int) -> np.ndarray:
    B = rng.standard_normal((K, K))
    return B @ B.T / K + np.eye(K)


def _reference_rows(  # type: ignore[no-untyped-def]
    indptr, indices, values, Y, ybias, mu, m, Lam, alpha, seed, sweep, side, first=0
):
    """Plain NumPy/SciPy: each row's precision, mean, and mean + U^-1 z (A = U^T U); row u
    draws the normals of global row ``first + u``."""
    k = Y.shape[1]
    biases = ybias is not None
    K = k + (1 if biases else 0)
    out = np.zeros((len(indptr) - 1, K))
    sse = np.zeros(len(indptr) - 1)
    for u in range(len(indptr) - 1):
        j = indices[indptr[u] : indptr[u + 1]]
        if len(j) == 0:
            continue
        r = values[indptr[u] : indptr[u + 1]].astype(np.float64)
        Aa = np.column_stack([Y[j], np.ones(len(j))]) if biases else Y[j]
        t = r - mu - ybias[j] if biases else r
        A = alpha * Aa.T @ Aa + Lam
        b = alpha * Aa.T @ t + Lam @ m
        mean = np.linalg.solve(A, b)
        U = np.linalg.cholesky(A).T
        z = _bayes.normal_draws(seed, sweep, side, first + u, K)
        out[u] = mean + scipy.linalg.solve_triangular(U, z, lower=False)
        e = t - Aa @ out[u]
        sse[u] = e @ e
    return out, sse


# --------------------------------------------------------------------------- the row sampler
@pytest.mark.parametrize("biases", [True, False])
def test_row_sampler_matches_numpy_given_the_same_normals(biases: bool) -> None:
    rng = np.random.default_rng(3)
    n_rows, n_cols, k = 40, 25, 5
    indptr, indices, values = _csr(rng, n_rows, n_cols, 0.3)
    Y = rng.standard_normal((n_cols, k))
    ybias = rng.standard_normal(n_cols) * 0.3 if biases else None
    K = k + (1 if biases else 0)
    Lam, m, alpha, mu = _spd(rng, K), rng.standard_normal(K) * 0.2, 1.7, 3.4
    X = np.full((n_rows, k), 9.0)
    xbias = np.full(n_rows, 9.0) if biases else None
    row_sse = np.zeros(n_rows)
    seed, sweep, side = 12345, 7, 1
    sample_rows(
        indptr, indices, values, Y, X, ybias=ybias, xbias=xbias, mu=mu, prior_mean=m,
        prior_precision=Lam, noise_precision=alpha, seed=seed, sweep=sweep, side=side,
        row_sse=row_sse, n_threads=2,
    )  # fmt: skip
    ref, ref_sse = _reference_rows(
        indptr, indices, values, Y, ybias, mu, m, Lam, alpha, seed, sweep, side
    )
    got = np.column_stack([X, xbias]) if biases else X
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(row_sse, ref_sse, rtol=1e-10, atol=1e-10)
    assert np.all(got[0] == 0)  # the row without ratings


@pytest.mark.parametrize("biases,dtype", [(True, np.float32), (False, np.float64)])
def test_a_shard_with_its_row_offset_equals_those_rows_of_the_whole_side(biases, dtype) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    n_rows, n_cols, k = 60, 30, 4
    indptr, indices, values = _csr(rng, n_rows, n_cols, 0.3)
    Y = rng.standard_normal((n_cols, k)).astype(dtype)
    ybias = (rng.standard_normal(n_cols) * 0.3).astype(dtype) if biases else None
    tol = 2e-3 if dtype == np.float32 else 1e-10
    K = k + (1 if biases else 0)
    Lam, m = _spd(rng, K), rng.standard_normal(K) * 0.2
    opts = dict(
        ybias=ybias, mu=3.1, prior_mean=m, prior_precision=Lam, noise_precision=1.3,
        seed=77, sweep=4, side=1,
    )  # fmt: skip
    for isa in mfkit.available_isas():
        X = np.zeros((n_rows, k), dtype)
        xbias = np.zeros(n_rows, dtype) if biases else None
        sse = np.zeros(n_rows)
        sample_rows(
            indptr, indices, values, Y, X, xbias=xbias, row_sse=sse, isa=isa, **opts
        )  # fmt: skip
        for a, b, threads in [(0, 17, 1), (17, 18, 2), (18, 60, 3)]:
            ptr = (indptr[a : b + 1] - indptr[a]).astype(np.int64)
            sl = slice(int(indptr[a]), int(indptr[b]))
            Xs = np.full((b - a, k), 5.0, dtype)
            xbs = np.full(b - a, 5.0, dtype) if biases else None
            sse_s = np.zeros(b - a)
            sample_rows(
                ptr, indices[sl], values[sl], Y, Xs, xbias=xbs, row_sse=sse_s, isa=isa,
                n_threads=threads, row_offset=a, **opts,
            )  # fmt: skip
            assert Xs.tobytes() == X[a:b].tobytes(), (isa, a, b)
            assert sse_s.tobytes() == sse[a:b].tobytes(), (isa, a, b)
            if biases:
                assert xbs.tobytes() == xbias[a:b].tobytes(), (isa, a, b)
            # and against NumPy with the normals of the global rows
            ref, ref_sse = _reference_rows(
                ptr, indices[sl], values[sl], Y.astype(np.float64),
                None if ybias is None else ybias.astype(np.float64), 3.1, m, Lam, 1.3, 77, 4,
                1, first=a,
            )  # fmt: skip
            got = np.column_stack([Xs, xbs]) if biases else Xs
            np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
            np.testing.assert_allclose(sse_s, ref_sse, rtol=tol, atol=5 * tol)
    with pytest.raises(ValueError, match="row_offset must be >= 0"):
        sample_rows(indptr, indices, values, Y, X, xbias=xbias, row_offset=-1, **opts)


def test_normal_draws_depend_on_every_key_part() -> None:
    base = _bayes.normal_draws(1, 2, 0, 3, 6)
    for other in [(2, 2, 0, 3), (1, 3, 0, 3), (1, 2, 1, 3), (1, 2, 0, 4)]:
        assert not np.array_equal(base, _bayes.normal_draws(*other, 6))
    np.testing.assert_array_equal(base, _bayes.normal_draws(1, 2, 0, 3, 6))
    # a prefix of a longer draw: the K-th normal does not change the first K - 1
    np.testing.assert_array_equal(_bayes.normal_draws(1, 2, 0, 3, 7)[:6], base)


def test_conditional_closed_form_and_10k_draws() -> None:
    """The precision form the sampler uses equals Gaussian conditioning of the joint
    (x, r); 10^4 draws of one row (10^4 identical rows, each its own normals) match that
    mean and covariance."""
    rng = np.random.default_rng(5)
    k, n_items = 3, 6
    K = k + 1
    Y = rng.standard_normal((n_items, k))
    ybias = rng.standard_normal(n_items) * 0.5
    r = rng.integers(1, 6, n_items).astype(np.float32)
    mu, alpha = 3.0, 2.5
    Lam, m = _spd(rng, K), rng.standard_normal(K) * 0.3
    # closed form by conditioning: x ~ N(m, S), t = Aa x + e, e ~ N(0, I / alpha)
    Aa = np.column_stack([Y, np.ones(n_items)])
    t = r - mu - ybias
    S = np.linalg.inv(Lam)
    G = Aa @ S @ Aa.T + np.eye(n_items) / alpha
    cond_mean = m + S @ Aa.T @ np.linalg.solve(G, t - Aa @ m)
    cond_cov = S - S @ Aa.T @ np.linalg.solve(G, Aa @ S)
    # the precision form
    A = alpha * Aa.T @ Aa + Lam
    np.testing.assert_allclose(np.linalg.solve(A, alpha * Aa.T @ t + Lam @ m), cond_mean, 1e-10)
    np.testing.assert_allclose(np.linalg.inv(A), cond_cov, rtol=1e-9, atol=1e-12)
    # 10^4 draws
    N = 10_000
    indptr = np.arange(0, (N + 1) * n_items, n_items, dtype=np.int64)
    indices = np.tile(np.arange(n_items, dtype=np.int32), N)
    values = np.tile(r, N)
    X, xb = np.zeros((N, k)), np.zeros(N)
    sample_rows(
        indptr, indices, values, Y, X, ybias=ybias, xbias=xb, mu=mu, prior_mean=m,
        prior_precision=Lam, noise_precision=alpha, seed=99, sweep=1, side=0, n_threads=2,
    )  # fmt: skip
    D = np.column_stack([X, xb])
    se = np.sqrt(np.diag(cond_cov) / N)
    assert np.all(np.abs(D.mean(axis=0) - cond_mean) < 4 * se)
    emp = np.cov(D, rowvar=False)
    sd = np.sqrt(np.diag(cond_cov))
    cov_se = np.sqrt((np.outer(sd, sd) ** 2 + cond_cov**2) / N)
    assert np.all(np.abs(emp - cond_cov) < 4 * cov_se)
    # Mahalanobis distances are chi^2(K)
    L = np.linalg.cholesky(np.linalg.inv(cond_cov))
    d2 = np.sum(((D - cond_mean) @ L) ** 2, axis=1)
    assert scipy.stats.kstest(d2, scipy.stats.chi2(K).cdf).pvalue > 1e-3


# --------------------------------------------------------------------------- hyperparameters
def test_wishart_draws_match_scipy() -> None:
    rng = np.random.default_rng(11)
    K, nu, n = 3, 7.5, 20_000
    W = _spd(rng, K) / 4
    draws = np.array([sample_wishart(W, nu, rng) for _ in range(n)])
    ref = scipy.stats.wishart(df=nu, scale=W)
    var = ref.var()
    assert np.all(np.abs(draws.mean(axis=0) - ref.mean()) < 4 * np.sqrt(var / n))
    # the variance of each entry, to 5% (its own sampling error is about 2% at n = 20000)
    np.testing.assert_allclose(draws.var(axis=0), var, rtol=0.05)
    theirs = ref.rvs(size=n, random_state=np.random.default_rng(12))
    for f in (np.trace, lambda a: np.linalg.det(a), lambda a: a[0, 1]):
        mine = np.array([f(a) for a in draws])
        other = np.array([f(a) for a in theirs])
        assert scipy.stats.ks_2samp(mine, other).pvalue > 1e-3


def test_normal_wishart_posterior_and_mean_draws() -> None:
    rng = np.random.default_rng(13)
    n, K, beta0 = 50, 3, 2.0
    Xr = rng.standard_normal((n, K)) @ np.diag([1.0, 0.5, 2.0]) + [0.3, -1.0, 0.2]
    mu_s, beta_s, W, nu = normal_wishart_posterior(Xr, beta0)
    # textbook conjugate update (mu0 = 0, W0 = I, nu0 = K), written with loops
    xbar = sum(Xr) / n
    Sm = sum(np.outer(x - xbar, x - xbar) for x in Xr)
    Winv = np.eye(K) + Sm + beta0 * n / (beta0 + n) * np.outer(xbar, xbar)
    np.testing.assert_allclose(W, np.linalg.inv(Winv), rtol=1e-12)
    np.testing.assert_allclose(mu_s, n * xbar / (beta0 + n), rtol=1e-12)
    assert beta_s == beta0 + n and nu == K + n
    draws = [sample_hyper(Xr, rng, beta0) for _ in range(20_000)]
    mus = np.array([d[0] for d in draws])
    lams = np.array([d[1] for d in draws])
    ref = scipy.stats.wishart(df=nu, scale=W)
    assert np.all(np.abs(lams.mean(axis=0) - ref.mean()) < 4 * np.sqrt(ref.var() / len(draws)))
    # mu | Lam ~ N(mu*, (beta* Lam)^-1): Cov(mu) = E[Lam^-1] / beta* = W^-1 / (beta* (nu - K - 1))
    cov = np.linalg.inv(W) / (beta_s * (nu - K - 1))
    np.testing.assert_allclose(mus.mean(axis=0), mu_s, atol=4 * np.sqrt(cov.diagonal().max() / 2e4))
    np.testing.assert_allclose(np.cov(mus, rowvar=False), cov, rtol=0.06, atol=0.06 * cov.max())


def test_noise_precision_draws_match_scipy_gamma() -> None:
    rng = np.random.default_rng(17)
    sse, n = 41.5, 60
    draws = np.array([sample_noise_precision(sse, n, rng) for _ in range(20_000)])
    ref = scipy.stats.gamma(a=1.0 + n / 2, scale=1 / (1.0 + sse / 2))
    assert scipy.stats.kstest(draws, ref.cdf).pvalue > 1e-3


# --------------------------------------------------------------------------- the model
def _known_noise(noise: float, seed: int = 0) -> tuple[mfkit.Ratings, float]:
    rng = np.random.default_rng(seed)
    n_users, n_items, rank = 400, 300, 3
    P = rng.standard_normal((n_users, rank))
    Q = rng.standard_normal((n_items, rank))
    bu = rng.standard_normal(n_users) * 0.3
    bi = rng.standard_normal(n_items) * 0.3
    mask = rng.random((n_users, n_items)) < 0.4
    u, i = np.nonzero(mask)
    r = 3.0 + bu[u] + bi[i] + np.sum(P[u] * Q[i], axis=1) + noise * rng.standard_normal(len(u))
    return mfkit.as_ratings((u, i, r)), 1 / noise**2


def test_learned_noise_precision_within_10_percent() -> None:
    X, truth = _known_noise(0.5)
    model = mfkit.BayesianMF(factors=3, epochs=40, random_state=0, n_threads=2).fit(X)
    assert abs(model.noise_precision_ - truth) < 0.1 * truth
    assert len(model.noise_precision_samples_) == model.n_samples_ == 30


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bit_identical_for_1_2_3_threads(dtype: str) -> None:
    X = mfkit.datasets.synthetic("toy", random_state=1)
    fits = [
        mfkit.BayesianMF(factors=5, epochs=8, dtype=dtype, random_state=4, n_threads=t).fit(X)
        for t in (1, 2, 3)
    ]
    for other in fits[1:]:
        for a in SAMPLE_ATTRIBUTES + ("user_biases_", "item_biases_"):
            np.testing.assert_array_equal(getattr(fits[0], a), getattr(other, a))
        assert fits[0].history_["train_rmse"] == other.history_["train_rmse"]


def test_prediction_is_the_average_over_samples_and_std() -> None:
    X = mfkit.datasets.synthetic("toy", random_state=2)
    m = mfkit.BayesianMF(factors=4, epochs=12, keep=5, dtype="float64", random_state=0).fit(X)
    S, k = m.n_samples_, 4
    assert m.user_factors_.shape == (X.n_users, S * k)
    u, i, _ = X.to_triplets()
    P = m.user_factors_.reshape(X.n_users, S, k) * S
    Q = m.item_factors_.reshape(X.n_items, S, k)
    per = (
        m.global_mean_
        + m.user_bias_samples_[:, u].T
        + m.item_bias_samples_[:, i].T
        + np.einsum("msk,msk->ms", P[u], Q[i])
    )
    mean, std = m.predict(u, i, return_std=True)
    np.testing.assert_allclose(mean, per.mean(axis=1), rtol=1e-12)
    noise = np.mean(1 / m.noise_precision_samples_)
    np.testing.assert_allclose(std, np.sqrt(per.var(axis=1) + noise), rtol=1e-10)
    one_mean, one_std = m.predict(u[3], i[3], return_std=True)
    assert one_mean == mean[3] and one_std == std[3]
    # recommend scores are the predictive means, bit for bit
    items, scores = m.recommend(u[0], n=5, exclude_seen=False)
    np.testing.assert_array_equal(scores, m.predict(np.full(5, u[0]), items))


def test_history_records_every_sweep() -> None:
    X = mfkit.datasets.synthetic("toy", random_state=3)
    tr, te = mfkit.model_selection.train_test_split(X, 0.2, random_state=0)
    m = mfkit.BayesianMF(factors=4, epochs=10, burn_in=4, keep=3, random_state=0).fit(tr, te)
    h = m.history_
    assert set(h) == {"epoch", "train_rmse", "val_rmse", "val_mae", "noise_precision", "seconds"}
    assert h["epoch"] == [float(e) for e in range(1, 11)]
    assert all(v > 0 for v in h["noise_precision"]) and all(np.isfinite(h["val_rmse"]))
    assert m.n_samples_ == 3 and m.burn_in_ == 4
    # the last record is the RMSE of the final posterior mean
    u, i, r = te.to_triplets(original_ids=True)
    pred = m.predict(u, i, unknown="baseline")
    assert h["val_rmse"][-1] == pytest.approx(np.sqrt(np.mean((pred - r) ** 2)), rel=1e-5)


def test_save_load_keeps_every_sample(tmp_path: Path) -> None:
    X = mfkit.datasets.synthetic("toy", random_state=4)
    m = mfkit.BayesianMF(factors=4, epochs=9, keep=4, random_state=0).fit(X)
    path = tmp_path / "bayes.npz"
    m.save(path)
    back = mfkit.load(path)
    assert isinstance(back, mfkit.BayesianMF) and back.n_samples_ == 4
    for a in SAMPLE_ATTRIBUTES:
        np.testing.assert_array_equal(getattr(m, a), getattr(back, a))
    u, i, _ = X.to_triplets()
    for x, y in zip(
        m.predict(u, i, return_std=True), back.predict(u, i, return_std=True), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    assert back.fold_in_regularization_ == m.fold_in_regularization_
    # a sample altered on disk is refused
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["fitted_noise_precision_samples"] = arrays["fitted_noise_precision_samples"] * 2
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="checksum"):
        mfkit.load(tmp_path / "bad.npz")


def test_fold_in_reproduces_a_training_users_predictions() -> None:
    X = mfkit.datasets.synthetic(n_users=200, n_items=100, n_ratings=8000, random_state=5)
    m = mfkit.BayesianMF(factors=4, epochs=20, random_state=0).fit(X)
    u, i, r = X.to_triplets()
    user = int(np.argmax(np.bincount(u)))
    sel = u == user
    folded = m.fold_in((np.zeros(sel.sum(), dtype=np.int64), i[sel], r[sel]))
    assert folded.user_factors.shape == (1, m.user_factors_.shape[1])
    items, scores = m.recommend(folded, n=X.n_items, exclude_seen=False)
    order = np.argsort(items[0])
    model_pred = m.predict(np.full(X.n_items, user), np.arange(X.n_items))
    assert np.corrcoef(scores[0][order], model_pred)[0, 1] > 0.9


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"burn_in": 10, "epochs": 10}, "burn_in must be < epochs"),
        ({"keep": 0}, "keep"),
        ({"keep": 80, "epochs": 100}, "keep must be between 1 and epochs - burn_in = 75"),
        ({"epochs": 0}, "epochs"),
        ({"factors": 0}, "factors"),
        ({"burn_in": -1}, "burn_in"),
        ({"biases": "yes"}, "biases must be True or False"),
        ({"dtype": "int8"}, "dtype"),
        ({"n_threads": 0}, "n_threads"),
    ],
)
def test_bad_parameters_are_named(params: dict, match: str) -> None:  # type: ignore[type-arg]
    X = mfkit.datasets.synthetic("toy")
    with pytest.raises((ValueError, TypeError), match=match):
        mfkit.BayesianMF(**params).fit(X)


def test_bad_calls_are_named() -> None:
    X = mfkit.datasets.synthetic("toy")
    with pytest.raises(ValueError, match="does not take init"):
        mfkit.BayesianMF(epochs=2).fit(X, init=(np.zeros((60, 2)), np.zeros((40, 2))))
    m = mfkit.BayesianMF(factors=2, epochs=2).fit(X)
    with pytest.raises(TypeError, match="return_std must be True or False"):
        m.predict([0], [0], return_std="yes")
    rng = np.random.default_rng(0)
    indptr, indices, values = _csr(rng, 5, 4, 0.5)
    with pytest.raises(ValueError, match="prior_precision must be 3 x 3"):
        sample_rows(
            indptr, indices, values, np.zeros((4, 3)), np.zeros((5, 3)), prior_mean=np.zeros(3),
            prior_precision=np.eye(4), noise_precision=1.0, seed=0, sweep=0, side=0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="noise precision"):
        sample_rows(
            indptr, indices, values, np.zeros((4, 3)), np.zeros((5, 3)), prior_mean=np.zeros(3),
            prior_precision=np.eye(3), noise_precision=0.0, seed=0, sweep=0, side=0,
        )  # fmt: skip
    with pytest.raises(TypeError, match="Y has dtype float32 but X has float64"):
        sample_rows(
            indptr, indices, values, np.zeros((4, 3), np.float32), np.zeros((5, 3)),
            prior_mean=np.zeros(3), prior_precision=np.eye(3), noise_precision=1.0, seed=0,
            sweep=0, side=0,
        )  # fmt: skip
    with pytest.raises(TypeError, match="indices must be a 1-d int32 array"):
        sample_rows(
            indptr, indices.astype(np.int64), values, np.zeros((4, 3)), np.zeros((5, 3)),
            prior_mean=np.zeros(3), prior_precision=np.eye(3), noise_precision=1.0, seed=0,
            sweep=0, side=0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="nu must be > K - 1"):
        sample_wishart(np.eye(3), 1.5, rng)


def test_cli_train_bayes(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "b.npz"
    args = ["train", "--preset", "toy", "--model", "bayes", "--epochs", "6", "--factors", "3"]
    assert main([*args, "--burn-in", "2", "--keep", "3", "--out", str(out)]) == 0
    assert "test RMSE" in capsys.readouterr().out
    assert mfkit.load(out).n_samples_ == 3
    assert main([*args, "--regularization", "0.1"]) == 2
    assert "--regularization applies to --model sgd and als" in capsys.readouterr().err
    assert main(["train", "--preset", "toy", "--keep", "3"]) == 2
    assert "--keep applies to --model bayes only" in capsys.readouterr().err
