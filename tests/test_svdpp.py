"""SVD++ (SGD(implicit_feedback=True)): the per-user sweep against a plain-NumPy SVD++ update
written from the equations, seeding, thread independence, and the model around it."""

from __future__ import annotations

import numpy as np
import pytest

import mfkit
from mfkit.models import _svdpp
from mfkit.models.sgd import RATING_DTYPE


def small_ratings(seed: int, n_users: int = 30, n_items: int = 25, density: float = 0.3):
    """A random sparse rating set where every user has at least one rating."""
    g = np.random.default_rng(seed)
    mask = g.random((n_users, n_items)) < density
    mask[np.arange(n_users), g.integers(n_items, size=n_users)] = True
    u, i = np.nonzero(mask)
    r = g.integers(1, 6, size=len(u)).astype(np.float32)
    return mfkit.Ratings.from_triplets(u, i, r, shape=(n_users, n_items), map_ids=False)


def grouped_records(X: mfkit.Ratings) -> np.ndarray:
    rec = np.empty(X.nnz, dtype=RATING_DTYPE)
    rec["u"], rec["i"], rec["r"] = X.user_index(), X.indices, X.values
    return rec


def reference_svdpp_epoch(
    recs: np.ndarray,
    indptr: np.ndarray,
    order: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    Y: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    mu: float,
    lr: float,
    reg: float,
    reg_b: float,
    biases: bool,
    acc_sq: tuple[np.ndarray, ...] | None = None,
    huber: float | None = None,
) -> float:
    """Koren's SVD++ SGD update visited user by user, written from the equations in float64:
    the implicit term z_u = |N(u)|^-1/2 sum y_j is formed at the start of the user's turn,
    the error terms of y accumulate over the turn and y_j takes them in one proximal step."""
    k = P.shape[1]
    sse = 0.0
    for u in order:
        seg = recs[indptr[u] : indptr[u + 1]]
        n = len(seg)
        if n == 0:
            continue
        s = 1.0 / np.sqrt(n)
        items = seg["i"].astype(np.int64)
        z = s * Y[items].sum(axis=0)
        acc = np.zeros(k)
        for rec in seg:
            i, r = int(rec["i"]), float(rec["r"])
            pred = mu + Q[i] @ (P[u] + z) + ((bu[u] + bi[i]) if biases else 0.0)
            e = r - pred
            sse += e * e
            g = e if huber is None else float(np.clip(e, -huber, huber))
            if acc_sq is None:
                lp = lq = lbu = lbi = lr
            else:
                Gp, Gq, Gy, Gbu, Gbi = acc_sq
                lp, lq = lr / np.sqrt(Gp[u]), lr / np.sqrt(Gq[i])
                lbu, lbi = lr / np.sqrt(Gbu[u]), lr / np.sqrt(Gbi[i])
            if biases:
                gbu = g - reg_b * bu[u]
                gbi = g - reg_b * bi[i]
                bu[u] += lbu * gbu
                bi[i] += lbi * gbi
                if acc_sq is not None:
                    Gbu[u] += gbu * gbu
                    Gbi[i] += gbi * gbi
            p_old, q_old = P[u].copy(), Q[i].copy()
            acc += g * q_old
            dp = g * q_old - reg * p_old
            dq = g * (p_old + z) - reg * q_old
            P[u] = p_old + lp * dp
            Q[i] = q_old + lq * dq
            if acc_sq is not None:
                Gp[u] += dp @ dp / k
                Gq[i] += dq @ dq / k
        for j in items:
            if acc_sq is None:
                ly = lr
            else:
                Gy = acc_sq[2]
                ly = lr / np.sqrt(Gy[j])
                d = s * acc - reg * n * Y[j]
                Gy[j] += d @ d / k
            Y[j] = (Y[j] + ly * s * acc) / (1.0 + ly * reg * n)
    return sse


def start_state(X: mfkit.Ratings, k: int, seed: int, dtype=np.float64):
    g = np.random.default_rng(seed)
    return (
        (0.1 * g.standard_normal((X.n_users, k))).astype(dtype),
        (0.1 * g.standard_normal((X.n_items, k))).astype(dtype),
        (0.1 * g.standard_normal((X.n_items, k))).astype(dtype),
        (0.1 * g.standard_normal(X.n_users)).astype(dtype),
        (0.1 * g.standard_normal(X.n_items)).astype(dtype),
    )


@pytest.mark.parametrize("adagrad", [False, True])
@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("huber", [None, 0.5])
def test_epoch_matches_numpy_reference(adagrad: bool, biases: bool, huber: float | None) -> None:
    X = small_ratings(0)
    recs = grouped_records(X)
    g = np.random.default_rng(7)
    # a given visiting order: users permuted, and each user's ratings permuted
    order = g.permutation(X.n_users).astype(np.int64)
    for u in range(X.n_users):
        a, b = X.indptr[u], X.indptr[u + 1]
        recs[a:b] = recs[a:b][g.permutation(b - a)]
    k = 6
    mu = float(X.values.mean())
    lr, reg, reg_b = (0.08 if adagrad else 0.02), 0.05, 0.03
    P, Q, Y, bu, bi = start_state(X, k, 1)
    ref = [a.copy() for a in (P, Q, Y, bu, bi)]

    def accumulators():
        return (
            1 + g2.random(X.n_users),
            1 + g2.random(X.n_items),
            1 + g2.random(X.n_items),
            1 + g2.random(X.n_users),
            1 + g2.random(X.n_items),
        )

    kw = {}
    acc_ref = None
    if adagrad:
        g2 = np.random.default_rng(3)
        acc = accumulators()
        acc_ref = tuple(a.copy() for a in acc)
        kw = dict(zip(("Gp", "Gq", "Gy", "Gbu", "Gbi"), acc, strict=True))
    if huber is not None:
        kw["loss"], kw["delta"] = 1, huber
    sse, bad = _svdpp.svdpp_epoch(
        recs, X.indptr, order, P, Q, Y, bu, bi, mu, lr, reg, reg_b, biases, **kw
    )
    sse_ref = reference_svdpp_epoch(
        recs, X.indptr, order, *ref, mu, lr, reg, reg_b, biases, acc_sq=acc_ref, huber=huber
    )
    assert bad == -1
    assert sse == pytest.approx(sse_ref, rel=1e-12)
    for got, want in zip((P, Q, Y, bu, bi), ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    if adagrad:
        for got, want in zip(acc, acc_ref, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    # the effective factors prediction uses: p_u + |N(u)|^-1/2 sum_j y_j
    out = np.empty_like(P)
    _svdpp.effective_user_factors(recs, X.indptr, P, Y, out, 2)
    counts = np.diff(X.indptr)
    for u in range(X.n_users):
        items = X.indices[X.indptr[u] : X.indptr[u + 1]]
        np.testing.assert_allclose(
            out[u], P[u] + Y[items].sum(axis=0) / np.sqrt(counts[u]), rtol=0, atol=1e-12
        )


def test_float32_close_to_float64() -> None:
    X = small_ratings(1)
    recs = grouped_records(X)
    order = np.arange(X.n_users, dtype=np.int64)
    s64 = start_state(X, 5, 2)
    s32 = tuple(a.astype(np.float32) for a in s64)
    args = (float(X.values.mean()), 0.02, 0.05, 0.05, True)
    _svdpp.svdpp_epoch(recs, X.indptr, order, *s64, *args)
    _svdpp.svdpp_epoch(recs, X.indptr, order, *s32, *args)
    for a, b in zip(s32, s64, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_model_epoch_is_the_reference_epoch() -> None:
    """SGD(implicit_feedback=True, shuffle=False) runs users in index order, each user's
    ratings in CSR order, from y = 0 and the given start; user_factors_ are p_u + z_u."""
    X = small_ratings(2)
    k = 4
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
        dtype="float64",
        random_state=0,
    ).fit(X, init=(P0, Q0))
    P, Q, Y = P0.copy(), Q0.copy(), np.zeros((X.n_items, k))
    bu, bi = np.zeros(X.n_users), np.zeros(X.n_items)
    mu = float(np.mean(X.values, dtype=np.float64))
    recs = grouped_records(X)
    sse = reference_svdpp_epoch(
        recs, X.indptr, np.arange(X.n_users), P, Q, Y, bu, bi, mu, 0.03, 0.04, 0.04, True
    )
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


def test_shuffle_users_is_a_seeded_permutation() -> None:
    X = small_ratings(3)
    recs = grouped_records(X)
    before = recs.copy()
    order = np.arange(X.n_users, dtype=np.int64)
    _svdpp.shuffle_users(recs, X.indptr, order, 99)
    assert sorted(order.tolist()) == list(range(X.n_users))
    assert not np.array_equal(order, np.arange(X.n_users))
    for u in range(X.n_users):
        a, b = X.indptr[u], X.indptr[u + 1]
        assert sorted(recs[a:b].tolist()) == sorted(before[a:b].tolist())
    again, order2 = before.copy(), np.arange(X.n_users, dtype=np.int64)
    _svdpp.shuffle_users(again, X.indptr, order2, 99)
    assert np.array_equal(again, recs) and np.array_equal(order2, order)


@pytest.mark.parametrize("schedule", ["adagrad", "constant"])
def test_bit_identical_for_any_thread_count(schedule: str) -> None:
    data = mfkit.datasets.synthetic("toy", random_state=0)
    fits = [
        mfkit.SGD(
            factors=8,
            epochs=3,
            implicit_feedback=True,
            learning_rate_schedule=schedule,
            regularization=0.05,
            random_state=11,
            n_threads=t,
        ).fit(data)
        for t in (1, 2, 3)
    ]
    for m in fits[1:]:
        assert np.array_equal(m.user_factors_, fits[0].user_factors_)
        assert np.array_equal(m.item_factors_, fits[0].item_factors_)
        assert np.array_equal(m.user_biases_, fits[0].user_biases_)
        assert m.history_["train_rmse"] == fits[0].history_["train_rmse"]


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
        ({"implicit_feedback": True, "blocks": 4}, "blocks must be 'auto' or 1"),
        (
            {"implicit_feedback": True, "prior_regularization": 0.1},
            "does not support prior_regularization",
        ),
    ],
)
def test_bad_parameters_named(params: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        mfkit.SGD(**params).fit(small_ratings(5))


def test_kernel_refuses_bad_layout() -> None:
    X = small_ratings(6)
    recs = grouped_records(X)
    P, Q, Y, bu, bi = start_state(X, 3, 0)
    order = np.arange(X.n_users, dtype=np.int64)
    with pytest.raises(ValueError, match="distinct user indices"):
        _svdpp.svdpp_epoch(
            recs, X.indptr, np.zeros(3, dtype=np.int64), P, Q, Y, bu, bi, 3.0, 0.01, 0.1, 0.1, True
        )
    bad = recs.copy()
    bad["i"][0] = X.n_items
    with pytest.raises(ValueError, match="grouped by user"):
        _svdpp.svdpp_epoch(bad, X.indptr, order, P, Q, Y, bu, bi, 3.0, 0.01, 0.1, 0.1, True)
    with pytest.raises(ValueError, match="same k"):
        _svdpp.svdpp_epoch(
            recs, X.indptr, order, P, Q, Y[:, :2].copy(), bu, bi, 3.0, 0.01, 0.1, 0.1, True
        )


def test_save_load_round_trip(tmp_path) -> None:
    X = small_ratings(7)
    m = mfkit.SGD(factors=4, epochs=2, implicit_feedback=True, random_state=0).fit(X)
    m.save(tmp_path / "m.npz")
    back = mfkit.load(tmp_path / "m.npz")
    assert back.implicit_feedback is True
    u = np.arange(X.n_users)
    np.testing.assert_array_equal(back.predict(u, u % X.n_items), m.predict(u, u % X.n_items))
