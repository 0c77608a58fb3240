"""Serial SGD: agreement with an independent NumPy reference, known-answer fits, seeding."""

from __future__ import annotations

import numpy as np
import pytest

import mfkit
from mfkit.models import _sgd
from mfkit.models.sgd import RATING_DTYPE


def low_rank_matrix(n_users: int, n_items: int, rank: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    U = g.normal(size=(n_users, rank))
    V = g.normal(size=(n_items, rank))
    return (U @ V.T) / np.sqrt(rank)


def reference_epoch(
    u: np.ndarray,
    i: np.ndarray,
    r: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    mu: float,
    lr: float,
    reg: float,
    reg_b: float,
    biases: bool,
    P0: np.ndarray | None = None,
    Q0: np.ndarray | None = None,
    prior: float = 0.0,
) -> float:
    """Funk/Koren SGD written from the equations, one rating at a time, in float64."""
    sse = 0.0
    for u_, i_, r_ in zip(u, i, r, strict=True):
        pred = mu + P[u_] @ Q[i_] + ((bu[u_] + bi[i_]) if biases else 0.0)
        e = r_ - pred
        sse += e * e
        if biases:
            bu[u_] += lr * (e - reg_b * bu[u_])
            bi[i_] += lr * (e - reg_b * bi[i_])
        p_old, q_old = P[u_].copy(), Q[i_].copy()
        gp = e * q_old - reg * p_old
        gq = e * p_old - reg * q_old
        if P0 is not None and Q0 is not None:
            gp -= prior * (p_old - P0[u_])
            gq -= prior * (q_old - Q0[i_])
        P[u_] = p_old + lr * gp
        Q[i_] = q_old + lr * gq
    return sse


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("with_prior", [False, True])
@pytest.mark.parametrize("k", [1, 7, 16, 19])
def test_kernel_matches_numpy_reference(biases: bool, with_prior: bool, k: int) -> None:
    g = np.random.default_rng(k)
    n_users, n_items, n = 13, 11, 90
    keys = g.choice(n_users * n_items, n, replace=False)
    u, i = keys // n_items, keys % n_items
    r = g.integers(1, 6, n).astype(np.float32)
    P = g.normal(0, 0.3, (n_users, k))
    Q = g.normal(0, 0.3, (n_items, k))
    bu, bi = g.normal(0, 0.1, n_users), g.normal(0, 0.1, n_items)
    P0 = g.normal(0, 0.3, (n_users, k)) if with_prior else None
    Q0 = g.normal(0, 0.3, (n_items, k)) if with_prior else None
    mu, lr, reg, reg_b, prior = 3.1, 0.03, 0.05, 0.02, 0.07
    ref = [a.copy() for a in (P, Q, bu, bi)]
    got = [a.copy() for a in (P, Q, bu, bi)]
    for epoch in range(4):
        order = np.random.default_rng(100 + epoch).permutation(n)
        rec = np.empty(n, dtype=RATING_DTYPE)
        rec["u"], rec["i"], rec["r"] = u[order], i[order], r[order]
        sse_ref = reference_epoch(
            u[order],
            i[order],
            r[order].astype(np.float64),
            *ref,
            mu,
            lr,
            reg,
            reg_b,
            biases,
            P0,
            Q0,
            prior,
        )
        sse, bad = _sgd.sgd_epoch(
            rec, *got, mu, lr, reg, reg_b, biases, P0, Q0, prior if with_prior else 0.0
        )
        assert bad == -1
        assert sse == pytest.approx(sse_ref, rel=1e-10)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_shuffle_is_a_seeded_permutation() -> None:
    rec = np.zeros(1000, dtype=RATING_DTYPE)
    rec["u"] = np.arange(1000)
    a, b, c = rec.copy(), rec.copy(), rec.copy()
    _sgd.shuffle_records(a, 7)
    _sgd.shuffle_records(b, 7)
    _sgd.shuffle_records(c, 8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert sorted(a["u"].tolist()) == list(range(1000))
    # each position ends up holding each value about equally often over many seeds
    counts = np.zeros((4, 4))
    for s in range(4000):
        x = np.zeros(4, dtype=RATING_DTYPE)
        x["u"] = np.arange(4)
        _sgd.shuffle_records(x, s)
        counts[np.arange(4), x["u"]] += 1
    assert np.all(np.abs(counts - 1000) < 150)


def test_seed_toy_matrix_without_biases_fits_within_10_percent() -> None:
    A = np.array([[5, 3, 0, 1], [4, 0, 0, 1], [1, 1, 0, 5], [1, 0, 0, 4], [0, 1, 5, 4]], float)
    m = mfkit.SGD(
        learning_rate_schedule="constant",
        factors=2,
        epochs=5000,
        learning_rate=0.01,
        regularization=0.0,
        biases=False,
        init_std=0.5,
        random_state=0,
    ).fit(mfkit.Ratings.from_dense(A, missing=0))
    rows, cols = np.nonzero(A)
    pred = m.predict(rows, cols)
    assert np.all(np.abs(pred - A[rows, cols]) <= 0.1 * A[rows, cols])


def test_seed_matrix_with_hidden_entries_converges_with_biases() -> None:
    A = np.array([[3, 1, 1, 3, 1], [1, 2, 4, 1, 3], [3, 1, 1, 3, 1], [4, 3, 5, 4, 4]], float)
    A[1, 2] = A[3, 0] = -1  # hidden
    data = mfkit.Ratings.from_dense(A, missing=-1)
    m = mfkit.SGD(
        learning_rate_schedule="constant",
        factors=3,
        epochs=3000,
        learning_rate=0.01,
        regularization=0.001,
        random_state=1,
    ).fit(data)
    u, i, r = data.to_triplets()
    rmse = np.sqrt(np.mean((m.predict(u, i) - r) ** 2))
    assert rmse < 0.1
    assert np.all(np.isfinite(m.predict([1, 3], [2, 0])))


def test_random_10x10_with_zero_missing_predicts_hidden_cells() -> None:
    g = np.random.default_rng(3)
    A = g.integers(0, 6, (10, 10)).astype(float)
    data = mfkit.Ratings.from_dense(A, missing=0)
    m = mfkit.SGD(
        learning_rate_schedule="constant",
        factors=3,
        epochs=300,
        learning_rate=0.01,
        regularization=0.1,
        random_state=0,
    )
    m.fit(data)
    u, i, r = data.to_triplets()
    baseline = np.sqrt(np.mean((r - r.mean()) ** 2))
    assert np.sqrt(np.mean((m.predict(u, i) - r) ** 2)) < 0.5 * baseline
    rows, cols = np.nonzero(A == 0)
    pred = m.predict(rows, cols, clip=True)
    assert pred.shape == rows.shape and np.all((pred >= 1) & (pred <= 5))


def test_hidden_rank5_matrix_is_recovered() -> None:
    M = low_rank_matrix(60, 50, 5, seed=4)
    g = np.random.default_rng(5)
    observed = g.random(M.shape) < 0.3
    u, i = np.nonzero(observed)
    m = mfkit.SGD(
        learning_rate_schedule="constant",
        factors=5,
        epochs=2000,
        learning_rate=0.02,
        regularization=0.0,
        biases=False,
        init_std=0.1,
        random_state=0,
        dtype="float64",
    ).fit((u, i, M[u, i]))
    tu, ti = np.nonzero(~observed)
    rmse = np.sqrt(np.mean((m.predict(tu, ti) - M[tu, ti]) ** 2))
    assert rmse < 0.05, rmse


def _fit(seed: object, dtype: str = "float32") -> mfkit.SGD:
    data = mfkit.datasets.synthetic("toy", random_state=0)
    return mfkit.SGD(factors=8, epochs=5, random_state=seed, dtype=dtype).fit(data)


def test_same_seed_same_bytes_and_different_seed_differs() -> None:
    a, b, c = _fit(42), _fit(42), _fit(43)
    assert a.user_factors.tobytes() == b.user_factors.tobytes()
    assert a.item_factors.tobytes() == b.item_factors.tobytes()
    assert a.user_biases.tobytes() == b.user_biases.tobytes()
    assert a.user_factors.tobytes() != c.user_factors.tobytes()
    g1 = _fit(np.random.default_rng(9))
    g2 = _fit(np.random.default_rng(9))
    assert g1.item_factors.tobytes() == g2.item_factors.tobytes()
    assert _fit(None).user_factors.shape == a.user_factors.shape


def test_float32_and_float64_both_train_and_agree_roughly() -> None:
    data, truth = mfkit.datasets.synthetic("toy", random_state=0, return_truth=True)
    u, i, r = data.to_triplets()
    out = {}
    for dt in ("float32", "float64"):
        m = mfkit.SGD(factors=4, epochs=30, learning_rate=0.01, random_state=0, dtype=dt)
        m.fit(data)
        assert m.user_factors.dtype == np.dtype(dt)
        out[dt] = np.sqrt(np.mean((m.predict(u, i) - r) ** 2))
    assert abs(out["float32"] - out["float64"]) < 0.05


def test_validation_history_and_early_stopping() -> None:
    data = mfkit.datasets.synthetic("ml-100k", random_state=1)
    tr, te = mfkit.model_selection.train_test_split(data, 0.2, random_state=0)
    m = mfkit.SGD(
        learning_rate_schedule="constant",
        factors=16,
        epochs=200,
        learning_rate=0.02,
        regularization=0.0,
        patience=2,
        random_state=0,
    )
    m.fit(tr, te)
    h = m.history_
    assert m.stop_reason_ == "early_stopping"
    n = len(h["epoch"])
    assert n < 200 and len(h["val_rmse"]) == n and len(h["val_mae"]) == n
    best = int(np.argmin(h["val_rmse"]))
    assert m.best_epoch_ == best + 1
    # the restored model scores exactly the best epoch's validation RMSE
    u, i, r = te.to_triplets()
    rmse = np.sqrt(np.mean((m.predict(u, i) - r) ** 2))
    assert rmse == pytest.approx(h["val_rmse"][best], rel=1e-9)


def test_divergence_keeps_last_good_epoch_and_names_learning_rate() -> None:
    data = mfkit.datasets.synthetic("toy", random_state=0)
    seen: list[np.ndarray] = []
    m = mfkit.SGD(factors=8, epochs=50, learning_rate=5.0, random_state=0)
    with pytest.raises(mfkit.DivergenceError, match="learning_rate"):
        m.fit(data, callback=lambda model, rec: seen.append(model.user_factors.copy()))
    assert m.stop_reason_ == "diverged"
    assert np.all(np.isfinite(m.user_factors))
    if seen:
        np.testing.assert_array_equal(m.user_factors, seen[-1])


@pytest.mark.parametrize("order,kernel", [("shuffle", "sgd_epoch"), ("rows", "sgd_rows_epoch")])
def test_callback_can_stop_and_interrupt_keeps_last_epoch(monkeypatch, order, kernel) -> None:  # type: ignore[no-untyped-def]
    data = mfkit.datasets.synthetic("toy", random_state=0)
    m = mfkit.SGD(factors=4, epochs=10, random_state=0, order=order)
    m.fit(data, callback=lambda model, rec: rec["epoch"] < 3)
    assert len(m.history_["epoch"]) == 3 and m.stop_reason_ == "callback"

    snapshots: list[np.ndarray] = []
    calls = {"n": 0}
    original = getattr(_sgd, kernel)

    def interrupting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:
            original(*args, **kwargs)  # the epoch runs, then Ctrl-C arrives
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(_sgd, kernel, interrupting)
    # a fixed weight: regularization='auto' would run grid fits through the same kernel first
    m2 = mfkit.SGD(factors=4, epochs=10, random_state=0, regularization=0.05, order=order)
    with pytest.warns(UserWarning, match="interrupted during epoch 4"):
        m2.fit(data, callback=lambda model, rec: snapshots.append(model.user_factors.copy()))
    assert m2.stop_reason_ == "interrupted" and len(m2.history_["epoch"]) == 3
    np.testing.assert_array_equal(m2.user_factors, snapshots[-1])


def test_warm_start_and_prior() -> None:
    data = mfkit.datasets.synthetic("toy", random_state=0)
    base = mfkit.SGD(factors=4, epochs=20, random_state=0).fit(data)
    P0, Q0 = base.user_factors, base.item_factors
    # zero epochs from init returns exactly the init
    same = mfkit.SGD(factors=4, epochs=0, random_state=1).fit(data, init=(P0, Q0))
    np.testing.assert_array_equal(same.user_factors, P0)
    # a strong prior keeps the factors near P0; without it they drift further
    far = mfkit.SGD(
        learning_rate_schedule="constant",
        factors=4,
        epochs=30,
        learning_rate=0.02,
        regularization=0.5,
        random_state=1,
    )
    near = mfkit.SGD(
        learning_rate_schedule="constant",
        factors=4,
        epochs=30,
        learning_rate=0.02,
        regularization=0.0,
        prior_regularization=0.5,
        random_state=1,
    )
    far.fit(data, init=(P0, Q0))
    near.fit(data, init=(P0, Q0))
    assert np.linalg.norm(near.user_factors - P0) < np.linalg.norm(far.user_factors - P0)
    warm = mfkit.SGD(factors=4, epochs=1, random_state=1).fit(data, init=base)
    assert np.array_equal(warm.user_biases != 0, base.user_biases != 0)
    with pytest.raises(ValueError, match="prior_regularization"):
        mfkit.SGD(factors=4, prior_regularization=0.1).fit(data)
    with pytest.raises(ValueError, match="init P0"):
        mfkit.SGD(factors=4).fit(data, init=(P0[:-1], Q0))
    with pytest.raises(ValueError, match="NaN"):
        mfkit.SGD(factors=4).fit(data, init=(P0 * np.nan, Q0))


@pytest.mark.parametrize(
    "params, exc, words",
    [
        ({"factors": 0}, ValueError, "factors"),
        ({"factors": 2.5}, TypeError, "factors"),
        ({"learning_rate": 0}, ValueError, "learning_rate"),
        ({"learning_rate": float("nan")}, ValueError, "learning_rate"),
        ({"regularization": -1}, ValueError, "regularization"),
        ({"epochs": -1}, ValueError, "epochs"),
        ({"dtype": "int32"}, TypeError, "dtype"),
        ({"random_state": "seed"}, TypeError, "random_state"),
        ({"random_state": -3}, ValueError, "random_state"),
        ({"n_threads": 0}, ValueError, "n_threads"),
        ({"patience": 0}, ValueError, "patience"),
        ({"biases": "yes"}, TypeError, "biases"),
    ],
)
def test_bad_parameters_are_named(params: dict, exc: type, words: str) -> None:
    data = mfkit.datasets.synthetic("toy", random_state=0)
    with pytest.raises(exc, match=words):
        mfkit.SGD(**params).fit(data)


def test_predict_ids_unknown_and_not_fitted() -> None:
    with pytest.raises(mfkit.NotFittedError, match="fit"):
        mfkit.SGD().predict([0], [0])
    users = ["u1", "u2", "u3", "u1"]
    items = ["a", "b", "a", "c"]
    m = mfkit.SGD(factors=2, epochs=5, random_state=0).fit((users, items, [5.0, 3.0, 4.0, 1.0]))
    p = m.predict(["u1", "u3"], ["c", "a"])
    assert p.shape == (2,)
    assert isinstance(m.predict("u1", "a"), float)
    with pytest.raises(ValueError, match="not seen in training"):
        m.predict(["zz"], ["a"])
    base = m.predict(["zz"], ["a"], unknown="baseline")[0]
    assert base == pytest.approx(m.global_mean + m.item_biases[0])
    assert np.isnan(m.predict(["zz"], ["a"], unknown="nan")[0])
    with pytest.raises(ValueError, match="same length"):
        m.predict(["u1"], ["a", "b"])
    lo, hi = m.rating_range
    clipped = m.predict(["u1", "u2"], ["c", "b"], clip=True)
    assert np.all((clipped >= lo) & (clipped <= hi))


def test_users_without_training_ratings_get_the_baseline() -> None:
    data = mfkit.datasets.synthetic("toy", random_state=0)
    keep = data.user_index() != 0
    m = mfkit.SGD(factors=4, epochs=3, random_state=0).fit(data.subset(keep))
    assert np.all(m.user_factors[0] == 0) and m.user_biases[0] == 0
    pred = m.predict([0, 0], [1, 2])
    np.testing.assert_allclose(pred, m.global_mean + m.item_biases[[1, 2]], rtol=1e-6)


def test_params_roundtrip_sklearn_style() -> None:
    m = mfkit.SGD(factors=7, learning_rate=0.1)
    p = m.get_params()
    assert p["factors"] == 7 and p["learning_rate"] == 0.1
    m2 = mfkit.SGD(**p)
    assert m2.get_params() == p
    m2.set_params(factors=3)
    assert m2.factors == 3
    with pytest.raises(ValueError, match="no parameter"):
        m2.set_params(colour="red")
    assert "factors=7" in repr(m)
