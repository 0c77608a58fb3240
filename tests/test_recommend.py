"""Top-N recommendation, similar items and fold-in, against brute-force NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

import mfkit
from mfkit import SGD, Ratings


def exact_model(
    n_users: int = 37,
    n_items: int = 53,
    k: int = 5,
    dtype: str = "float32",
    seed: int = 0,
    biases: bool = True,
    density: float = 0.3,
) -> tuple[SGD, Ratings]:
    """A 'fitted' model whose factors are small integers and biases halves, so every score
    is exact in float32 and float64 and ties are common."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[:, 0] |= ~mask.any(axis=1)  # no empty user row
    vals = rng.integers(1, 6, (n_users, n_items)).astype(float)
    X = Ratings.from_dense(np.where(mask, vals, np.nan))
    m = SGD(factors=k, epochs=0, biases=biases, dtype=dtype, random_state=seed).fit(X)
    m.user_factors[:] = rng.integers(-2, 3, (n_users, k))
    m.item_factors[:] = rng.integers(-2, 3, (n_items, k))
    if biases:
        m.user_biases[:] = rng.integers(-2, 3, n_users) / 2
        m.item_biases[:] = rng.integers(-2, 3, n_items) / 2
        m.global_mean = 3.0
    return m, X


def dense_scores(m: SGD) -> np.ndarray:
    P = m.user_factors.astype(np.float64)
    Q = m.item_factors.astype(np.float64)
    S = P @ Q.T
    if m.biases:
        S += m.global_mean + m.user_biases[:, None].astype(np.float64)
        S += m.item_biases[None, :].astype(np.float64)
    return S


def brute_topn(
    S: np.ndarray, n: int, seen: np.ndarray | None = None, cand: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: full stable argsort of -score (ties: lower item index first); -1 / NaN
    padding when fewer than n candidates remain."""
    S = S.copy()
    allowed = np.ones(S.shape, dtype=bool)
    if seen is not None:
        allowed &= ~seen
    if cand is not None:
        c = np.zeros(S.shape[1], dtype=bool)
        c[cand] = True
        allowed &= c[None, :]
    n_eff = min(n, S.shape[1] if cand is None else len(np.unique(cand)))
    items = np.full((S.shape[0], n_eff), -1, dtype=np.int64)
    scores = np.full((S.shape[0], n_eff), np.nan)
    for u in range(S.shape[0]):
        idx = np.flatnonzero(allowed[u])
        order = idx[np.argsort(-S[u, idx], kind="stable")][:n_eff]
        items[u, : len(order)] = order
        scores[u, : len(order)] = S[u, order]
    return items, scores


def seen_mask(X: Ratings) -> np.ndarray:
    M = np.zeros(X.shape, dtype=bool)
    u, i, _ = X.to_triplets()
    M[u, i] = True
    return M


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("k", [1, 5, 8, 13, 64])
@pytest.mark.parametrize("biases", [True, False])
def test_recommend_equals_brute_force_argsort(dtype: str, k: int, biases: bool) -> None:
    m, X = exact_model(k=k, dtype=dtype, seed=k, biases=biases)
    S = dense_scores(m)
    users = np.arange(X.n_users)
    for n in (1, 7, 20):
        ids, scores = m.recommend(users, n=n)
        ref_i, ref_s = brute_topn(S, n, seen=seen_mask(X))
        np.testing.assert_array_equal(ids, ref_i)
        np.testing.assert_array_equal(scores, ref_s)
        ids, scores = m.recommend(users, n=n, exclude_seen=False)
        ref_i, ref_s = brute_topn(S, n)
        np.testing.assert_array_equal(ids, ref_i)
        np.testing.assert_array_equal(scores, ref_s)


def test_ties_go_to_the_lower_item_index() -> None:
    m, X = exact_model(n_users=3, n_items=40, k=2, seed=1)
    m.user_factors[:] = 0
    m.item_factors[:] = 0
    m.item_biases[:] = 0
    m.item_biases[[30, 5, 17]] = 1.0  # three tied best items, listed out of order
    ids, scores = m.recommend(1, n=5, exclude_seen=False)
    assert ids[:3].tolist() == [5, 17, 30]
    assert ids[3:].tolist() == [0, 1]  # then all-equal rest, by index
    np.testing.assert_array_equal(scores[:3], 3.0 + m.user_biases[1] + 1.0)


def test_padding_when_fewer_candidates_than_n() -> None:
    m, X = exact_model(n_users=4, n_items=6, k=3, seed=2, density=0.6)
    S = dense_scores(m)
    ids, scores = m.recommend(np.arange(4), n=6)
    ref_i, ref_s = brute_topn(S, 6, seen=seen_mask(X))
    np.testing.assert_array_equal(ids, ref_i)
    np.testing.assert_array_equal(scores, ref_s)
    assert (ids == -1).any() and np.isnan(scores).any()
    assert ((ids == -1) == np.isnan(scores)).all()
    # n larger than the catalogue: lists have n_items places
    ids, _ = m.recommend(0, n=100, exclude_seen=False)
    assert ids.shape == (6,)


def test_batch_equals_one_by_one_and_threads_agree() -> None:
    X = mfkit.datasets.synthetic("toy", random_state=3)
    m = SGD(factors=12, epochs=3, random_state=3).fit(X)
    users = np.arange(X.n_users)
    ids, scores = m.recommend(users, n=8)
    for u in users:
        iu, su = m.recommend(int(u), n=8)
        np.testing.assert_array_equal(iu, ids[u])
        np.testing.assert_array_equal(su, scores[u])
    m.n_threads_ = 1
    ids1, scores1 = m.recommend(users[::-1], n=8)
    np.testing.assert_array_equal(ids1, ids[::-1])
    np.testing.assert_array_equal(scores1, scores[::-1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scores_equal_predict_bit_for_bit(dtype: str) -> None:
    X = mfkit.datasets.synthetic("ml-100k", random_state=4)
    m = SGD(factors=19, epochs=2, random_state=4, dtype=dtype).fit(X)
    users = np.arange(0, X.n_users, 7)
    ids, scores = m.recommend(users, n=12)
    ok = ids >= 0
    u = np.broadcast_to(users[:, None], ids.shape)
    np.testing.assert_array_equal(m.predict(u[ok], ids[ok]), scores[ok])
    # order agrees with a float64 dense reference except where scores are within rounding
    S = dense_scores(m)
    ref_i, ref_s = brute_topn(S[users], 12, seen=seen_mask(X)[users])
    np.testing.assert_allclose(scores[ok], ref_s[ok], rtol=0, atol=1e-5)
    same = ids == ref_i
    assert same.mean() > 0.99


def test_items_restriction() -> None:
    m, X = exact_model(seed=5)
    S = dense_scores(m)
    cand = np.array([50, 3, 3, 17, 0, 44, 9, 31])  # unsorted, with a repeat
    ids, scores = m.recommend(np.arange(X.n_users), n=4, items=cand)
    ref_i, ref_s = brute_topn(S, 4, seen=seen_mask(X), cand=cand)
    np.testing.assert_array_equal(ids, ref_i)
    np.testing.assert_array_equal(scores, ref_s)
    assert set(ids[ids >= 0].tolist()) <= set(cand.tolist())


def test_seen_argument_replaces_training_record() -> None:
    m, X = exact_model(seed=6)
    S = dense_scores(m)
    rng = np.random.default_rng(6)
    other = Ratings.from_dense(np.where(rng.random(X.shape) < 0.5, 1.0, np.nan))
    ids, scores = m.recommend(np.arange(X.n_users), n=9, seen=other)
    ref_i, ref_s = brute_topn(S, 9, seen=seen_mask(other))
    np.testing.assert_array_equal(ids, ref_i)
    np.testing.assert_array_equal(scores, ref_s)


def test_string_ids_in_and_out() -> None:
    users = np.array(["ann", "bob", "cy", "ann", "bob", "cy", "dee"])
    items = np.array(["x", "y", "z", "y", "z", "w", "x"])
    X = Ratings.from_triplets(users, items, np.array([5, 3, 4, 2, 1, 5, 4.0]))
    m = SGD(factors=3, epochs=5, random_state=7).fit(X)
    ids, scores = m.recommend("ann", n=3)
    assert ids.dtype.kind == "U"
    assert set(ids[ids != ""].tolist()) == {"w", "z"}  # ann saw x and y
    assert ids[-1] == "" and np.isnan(scores[-1])
    ref = m.predict(["ann", "ann"], ids[:2])
    np.testing.assert_array_equal(ref, scores[:2])
    with pytest.raises(ValueError, match="fold_in"):
        m.recommend("zed")


def test_bad_arguments() -> None:
    m, X = exact_model(seed=8)
    with pytest.raises(ValueError, match="n must be >= 1"):
        m.recommend(0, n=0)
    with pytest.raises(TypeError, match="n must be an integer"):
        m.recommend(0, n=2.5)
    with pytest.raises(ValueError, match="not seen in training"):
        m.recommend([0, 999])
    with pytest.raises(ValueError, match="not seen in training"):
        m.recommend(0, items=[1, 999])
    with pytest.raises(ValueError, match="items is empty"):
        m.recommend(0, items=[])
    with pytest.raises(TypeError, match="exclude_seen"):
        m.recommend(0, exclude_seen="yes")
    with pytest.raises(mfkit.NotFittedError):
        SGD().recommend(0)


def test_seen_items_survive_save_and_load(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path))
    m, X = exact_model(seed=9)
    users = np.arange(X.n_users)
    ids, scores = m.recommend(users, n=6)
    m.save(path / "m.npz")
    loaded = mfkit.load(path / "m.npz")
    ids2, scores2 = loaded.recommend(users, n=6)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)
    m.save(path / "small.npz", seen=False)
    small = mfkit.load(path / "small.npz")
    with pytest.raises(ValueError, match="exclude_seen=False"):
        small.recommend(0)
    ids3, _ = small.recommend(users, n=6, seen=X)
    np.testing.assert_array_equal(ids, ids3)
    assert (path / "small.npz").stat().st_size < (path / "m.npz").stat().st_size


def brute_similar(Q: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    Q = Q.astype(np.float64)
    norms = np.linalg.norm(Q, axis=1)
    Qn = np.divide(Q, norms[:, None], out=np.zeros_like(Q), where=norms[:, None] > 0)
    S = Qn[rows] @ Qn.T
    S[np.arange(len(rows)), rows] = -np.inf
    order = np.argsort(-S, axis=1, kind="stable")[:, :n]
    return order, np.take_along_axis(S, order, 1)


def test_similar_items_is_cosine_without_self() -> None:
    X = mfkit.datasets.synthetic("toy", random_state=10)
    m = SGD(factors=6, epochs=4, random_state=10, dtype="float64").fit(X)
    rows = np.arange(X.n_items)
    ids, sims = m.similar_items(rows, n=5)
    ref_i, ref_s = brute_similar(m.item_factors, rows, 5)
    np.testing.assert_allclose(sims, ref_s, rtol=0, atol=1e-12)
    assert (ids == ref_i).mean() > 0.99  # only exact near-ties may swap
    assert not (ids == rows[:, None]).any()
    one_i, one_s = m.similar_items(3, n=5)
    np.testing.assert_array_equal(one_i, ids[3])
    np.testing.assert_array_equal(one_s, sims[3])


def test_similar_items_zero_vector_has_zero_similarity() -> None:
    m, X = exact_model(n_items=10, k=3, seed=11)
    m.item_factors[4] = 0
    m.item_factors[:4] = [[1, 0, 0], [2, 0, 0], [0, 1, 0], [-1, 0, 0]]
    ids, sims = m.similar_items(0, n=9)
    assert ids[0] == 1 and sims[0] == pytest.approx(1.0)
    assert sims[ids.tolist().index(3)] == pytest.approx(-1.0)
    assert sims[ids.tolist().index(4)] == 0.0


# ---------------------------------------------------------------------- fold-in
def foldin_reference(
    Q: np.ndarray,
    bi: np.ndarray,
    mu: float,
    items: np.ndarray,
    r: np.ndarray,
    lam: float,
    lam_b: float,
    biases: bool,
    weighted: bool,
) -> tuple[np.ndarray, float]:
    """numpy.linalg.solve of the ridge normal equations of one user."""
    Q = Q.astype(np.float64)
    scale = len(items) if weighted else 1.0
    if biases:
        A = np.hstack([Q[items], np.ones((len(items), 1))])
        t = r - mu - bi[items].astype(np.float64)
        reg = np.diag([lam * scale] * Q.shape[1] + [lam_b * scale])
        x = np.linalg.solve(A.T @ A + reg, A.T @ t)
        return x[:-1], float(x[-1])
    A = Q[items]
    x = np.linalg.solve(A.T @ A + lam * scale * np.eye(Q.shape[1]), A.T @ r)
    return x, 0.0


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fold_in_solves_the_ridge_normal_equations(
    biases: bool, weighted: bool, dtype: str
) -> None:
    X = mfkit.datasets.synthetic("toy", random_state=12)
    m = SGD(
        factors=7,
        epochs=5,
        regularization=0.3,
        bias_regularization=0.7,
        biases=biases,
        dtype=dtype,
        random_state=12,
    ).fit(X)
    rng = np.random.default_rng(12)
    new_users, new_items, new_r = [], [], []
    for u in range(6):
        cnt = [1, 2, 5, 9, 20, 40][u]
        its = rng.choice(X.n_items, cnt, replace=False)
        new_users += [u + 1000] * cnt
        new_items += its.tolist()
        new_r += rng.integers(1, 6, cnt).tolist()
    new = Ratings.from_triplets(np.array(new_users), np.array(new_items), np.array(new_r, float))
    f = m.fold_in(new, weighted=weighted)
    assert f.user_ids.tolist() == list(range(1000, 1006))
    assert f.user_factors.dtype == np.dtype(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-10
    for j, uid in enumerate(f.user_ids):
        sel = np.array(new_users) == uid
        p, b = foldin_reference(
            m.item_factors,
            m.item_biases,
            m.global_mean,
            np.array(new_items)[sel],
            np.array(new_r, float)[sel],
            0.3,
            0.7,
            biases,
            weighted,
        )
        scale = max(1.0, float(np.abs(p).max()))
        np.testing.assert_allclose(f.user_factors[j], p, rtol=0, atol=tol * scale)
        assert f.user_biases[j] == pytest.approx(b, abs=tol * scale)


def test_fold_in_of_a_training_user_is_the_exact_user_half_step() -> None:
    """With item factors fixed, the ridge solution is the minimiser of the user's loss: the
    gradient of sum (r - mu - b_i - b_u - p.q)^2 + lam |p|^2 + lam_b b_u^2 vanishes."""
    X = mfkit.datasets.synthetic("toy", random_state=13)
    m = SGD(factors=4, epochs=5, regularization=0.2, dtype="float64", random_state=13).fit(X)
    f = m.fold_in(X)
    Q, bi, mu = m.item_factors, m.item_biases, m.global_mean
    for u in range(X.n_users):
        a, b = X.indptr[u], X.indptr[u + 1]
        it, r = X.indices[a:b], X.values[a:b].astype(np.float64)
        p, bu = f.user_factors[u], f.user_biases[u]
        e = r - mu - bi[it] - bu - Q[it] @ p
        np.testing.assert_allclose(-Q[it].T @ e + 0.2 * p, 0, atol=1e-10)
        assert -e.sum() + 0.2 * bu == pytest.approx(0, abs=1e-10)


def test_fold_in_users_can_be_recommended_to() -> None:
    X = mfkit.datasets.synthetic("toy", random_state=14)
    m = SGD(factors=5, epochs=4, random_state=14, dtype="float64").fit(X)
    new = Ratings.from_triplets(
        np.array([7, 7, 7, 8]), np.array([1, 4, 9, 2]), np.array([5.0, 1.0, 4.0, 3.0])
    )
    f = m.fold_in(new)
    ids, scores = m.recommend(f, n=6)
    P = f.user_factors.astype(np.float64)
    S = P @ m.item_factors.T.astype(np.float64) + m.global_mean
    S += f.user_biases[:, None].astype(np.float64) + m.item_biases[None, :]
    seen = np.zeros(S.shape, dtype=bool)
    seen[0, [1, 4, 9]] = True
    seen[1, 2] = True
    ref_i, _ = brute_topn(S, 6, seen=seen)
    close = np.abs(np.sort(S, axis=1)[:, ::-1][:, :7] - np.sort(S, axis=1)[:, ::-1][:, 1:8])
    assert close.min() > 1e-9  # no near-ties, so the order is determined
    np.testing.assert_array_equal(ids, ref_i)
    # and the folded ratings are excluded
    assert not set(ids[0].tolist()) & {1, 4, 9}
    ids_all, _ = m.recommend(f, n=6, exclude_seen=False)
    np.testing.assert_array_equal(ids_all, brute_topn(S, 6)[0])


def test_fold_in_edge_cases() -> None:
    m, X = exact_model(seed=15)
    # a user without ratings gets zeros (scipy matrix without ids: columns are item indices)
    import scipy.sparse as sp

    M = sp.csr_array((np.array([4.3]), np.array([3]), np.array([0, 0, 1])), shape=(2, 10))
    f = m.fold_in(M)
    assert (f.user_factors[0] == 0).all() and f.user_biases[0] == 0
    assert (f.user_factors[1] != 0).any()
    with pytest.raises(ValueError, match="item columns"):
        m.fold_in(sp.csr_array(np.ones((1, X.n_items + 1))))
    unknown = Ratings.from_triplets(np.array([1, 1]), np.array([2, 999]), np.array([3.0, 4.0]))
    with pytest.raises(ValueError, match="unknown_items='ignore'"):
        m.fold_in(unknown)
    g = m.fold_in(unknown, unknown_items="ignore")
    h = m.fold_in(Ratings.from_triplets(np.array([1]), np.array([2]), np.array([3.0])))
    np.testing.assert_array_equal(g.user_factors, h.user_factors)
    with pytest.raises(TypeError, match="weighted"):
        m.fold_in(unknown, weighted="yes")


def test_fold_in_singular_system_is_reported() -> None:
    X = mfkit.datasets.synthetic("toy", random_state=16)
    m = SGD(factors=6, epochs=2, regularization=0.0, random_state=16).fit(X)
    one = Ratings.from_triplets(np.array(["new"]), np.array([3]), np.array([4.0]))
    with pytest.raises(ValueError, match="user 'new' is singular"):
        m.fold_in(one)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_threshold_paths_agree(dtype: type) -> None:
    """The AVX-512 threshold test (used when the CPU has it) and the portable loop give
    the same lists and scores bit for bit."""
    from mfkit.recommend import _recommend, pack_items

    rng = np.random.default_rng(17)
    n_q, n_items, k = 70, 301, 11
    P = rng.standard_normal((n_q, k)).astype(dtype)
    Q = rng.standard_normal((n_items, k)).astype(dtype)
    cand = np.arange(0, n_items, 2, dtype=np.int64)
    panels = pack_items(Q, cand)
    add = np.full(panels.shape[0] * 16, -np.inf)
    add[: len(cand)] = rng.standard_normal(len(cand))
    base = rng.standard_normal(n_q)
    indptr = np.arange(0, 3 * n_q + 1, 3, dtype=np.int64)
    indices = np.sort(rng.integers(0, n_items, (n_q, 3)), axis=1).astype(np.int32).ravel()
    rows = np.arange(n_q, dtype=np.int64)
    out = []
    for flag in (True, False):
        items = np.empty((n_q, 9), dtype=np.int64)
        scores = np.empty((n_q, 9))
        _recommend.topn(
            P, rows, panels, cand, add, base, indptr, indices, rows, items, scores, 2, flag
        )
        out.append((items, scores))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    S = (
        (P.astype(np.float64) @ Q[cand].astype(np.float64).T)
        + base[:, None]
        + add[None, : len(cand)]
    )
    for q in range(n_q):
        S[q, np.isin(cand, indices[3 * q : 3 * q + 3])] = -np.inf
    ref = cand[np.argsort(-S, axis=1, kind="stable")[:, :9]]
    assert (ref == out[0][0]).mean() > 0.99


def test_fold_in_weighted_default_follows_the_model() -> None:
    """A model with a ``weighted`` parameter (ALS-WR) folds in with that setting."""
    X = mfkit.datasets.synthetic("toy", random_state=18)
    m = SGD(factors=3, epochs=2, regularization=0.4, random_state=18).fit(X)
    new = Ratings.from_triplets(np.array([1, 1, 1]), np.array([2, 5, 7]), np.array([4.0, 2, 5]))
    plain = m.fold_in(new)
    weighted = m.fold_in(new, weighted=True)
    assert not np.allclose(plain.user_factors, weighted.user_factors)
    m.weighted = True  # what mfkit.ALS(weighted=True) stores
    np.testing.assert_array_equal(m.fold_in(new).user_factors, weighted.user_factors)


def test_folded_users_with_seen_argument_and_empty_batch() -> None:
    m, X = exact_model(seed=19)
    new = Ratings.from_triplets(np.array([5, 6]), np.array([1, 2]), np.array([4.0, 2.0]))
    f = m.fold_in(new)
    other = Ratings.from_triplets(np.array([6, 6, 5]), np.array([3, 4, 7]), np.array([1.0] * 3))
    ids, _ = m.recommend(f, n=m.n_items, seen=other)
    assert not {3, 4} & set(ids[1].tolist()) and 2 in ids[1].tolist()
    assert 7 not in ids[0].tolist() and 1 in ids[0].tolist()
    ids, scores = m.recommend(np.array([], dtype=np.int64), n=3)
    assert ids.shape == scores.shape == (0, 3)


def _kernel_lists(
    P: np.ndarray,
    Q: np.ndarray,
    item_add: np.ndarray,
    row_add: np.ndarray,
    n: int,
    seen: list[np.ndarray] | None,
    isa: int,
    screen: bool,
    n_threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One direct kernel call on every item of Q, in the bound order recommend uses."""
    from mfkit.recommend import _recommend, _topn

    rows = np.arange(len(P), dtype=np.int64)
    cand = np.arange(len(Q), dtype=np.int64)
    order = _topn._bound_order(P, rows, Q, cand, item_add.copy())
    cand = cand[order]
    panels = _topn.pack_items(Q, cand)
    add = np.full(panels.shape[0] * 16, -np.inf)
    add[: len(cand)] = item_add[cand]
    if seen is None:
        indptr, indices, srow = np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int64)
    else:
        indptr = np.concatenate(([0], np.cumsum([len(s) for s in seen]))).astype(np.int64)
        indices = np.concatenate([np.sort(s) for s in seen]).astype(np.int32)
        srow = rows
    n_eff = min(n, len(Q))
    items = np.empty((len(P), n_eff), dtype=np.int64)
    scores = np.empty((len(P), n_eff))
    _recommend.topn(
        P, rows, panels, cand, add, row_add, indptr, indices, srow, items, scores,
        n_threads, True, isa, True, screen,
    )  # fmt: skip
    return items, scores


def _adversarial_factors(rng: np.random.Generator, n: int, k: int, kind: str) -> np.ndarray:
    """Factor rows that stress the int8 screen's bound."""
    if kind == "boundary":
        # entries at the midpoints between int8 codes (the largest rounding error), with
        # the row maximum fixing the scale at 1/127 of it
        X = (rng.integers(-127, 127, (n, k)) + 0.5) / 127.0
        X[:, 0] = 1.0
        return X.astype(np.float32)
    if kind == "scales":
        X = rng.standard_normal((n, k))
        X *= 10.0 ** rng.choice([-38, -30, -12, -3, 0, 3, 12], n)[:, None]
        X[rng.random(n) < 0.1] = 0.0  # zero rows
        return X.astype(np.float32)
    if kind == "ties":
        return rng.integers(-2, 3, (n, k)).astype(np.float32)
    if kind == "codes":
        # rows that are exactly int8 codes times 1 (no rounding error on their side)
        X = rng.integers(-127, 128, (n, k)).astype(np.float32)
        X[:, 0] = 127.0
        return X
    if kind == "spiky":
        # one large entry and many tiny ones: most of the row rounds to code 0
        X = rng.standard_normal((n, k)) * 1e-4
        X[np.arange(n), rng.integers(0, k, n)] = rng.choice([-1.0, 1.0], n) * 50.0
        return X.astype(np.float32)
    return rng.standard_normal((n, k)).astype(np.float32)


@pytest.mark.parametrize("kind", ["normal", "boundary", "codes", "scales", "ties", "spiky"])
@pytest.mark.parametrize("k", [1, 3, 8, 17, 64])
def test_int8_screen_gives_the_exact_lists(kind: str, k: int) -> None:
    """The avx512 path with the int8 screen (on CPUs with VNNI) returns the lists of the
    baseline path bit for bit, for 1 and 2 threads, on factors at the quantization
    boundaries, with huge, tiny and zero rows, many ties, non-finite biases, n past the
    number of items and users who saw every item; and on exact data, the argsort
    reference's."""
    from mfkit.recommend import _recommend

    rng = np.random.default_rng(k * 31 + len(kind))
    n_u, n_i = 45, 150
    # "boundary": users at the code midpoints, items exactly codes (and the reverse for
    # "codes"), so each side's error term alone must cover the difference
    swap = {"codes": "boundary", "boundary": "codes"}
    P = _adversarial_factors(rng, n_u, k, kind)
    Q = _adversarial_factors(rng, n_i, k, swap.get(kind, kind))
    if kind == "ties":
        item_add = rng.integers(-2, 3, n_i) / 2.0
        row_add = rng.integers(-2, 3, n_u) / 2.0
    else:
        item_add = rng.standard_normal(n_i) * 0.3
        row_add = rng.standard_normal(n_u) * 0.3
        item_add[[3, 40]] = np.inf  # never skipped, always first
        item_add[[5, 77]] = -np.inf  # never enter
        row_add[2] = np.nan
        P[4, 0] = np.nan  # a row without a bound
        Q[9, k - 1] = np.inf
    seen = [rng.choice(n_i, rng.integers(0, 30), replace=False) for _ in range(n_u)]
    seen[0] = np.arange(n_i)  # every item seen: an all-padding row
    seen[1] = np.arange(n_i - 3)
    isas = [mfkit._core.isa.isa_level(x) for x in mfkit.available_isas()]
    for n in (1, 10, n_i + 5):
        for sn in (None, seen):
            ref = _kernel_lists(P, Q, item_add, row_add, n, sn, 0, False, 1)
            for isa in isas:
                for screen in (True, False):
                    for threads in (1, 2):
                        got = _kernel_lists(P, Q, item_add, row_add, n, sn, isa, screen, threads)
                        np.testing.assert_array_equal(got[0], ref[0])
                        np.testing.assert_array_equal(got[1], ref[1])
            if kind == "ties":
                S = P.astype(np.float64) @ Q.T.astype(np.float64)
                S += row_add[:, None] + item_add[None, :]
                mask = None
                if sn is not None:
                    mask = np.zeros(S.shape, dtype=bool)
                    for u, s in enumerate(sn):
                        mask[u, s] = True
                ref_i, ref_s = brute_topn(S, n, seen=mask)
                ref_s = np.where(ref_i < 0, -np.inf, ref_s)  # the kernel pads with -inf
                np.testing.assert_array_equal(ref[0], ref_i)
                np.testing.assert_array_equal(ref[1], ref_s)
    assert isinstance(_recommend.have_screen(), bool)


def test_int8_screen_on_a_trained_model_equals_predict() -> None:
    """A trained model (where the scores crowd near each list's threshold): recommend's
    lists are the same with and without the screen, and each score is predict()'s."""
    from mfkit.recommend import _topn

    X = mfkit.datasets.synthetic("ml-100k", random_state=3)
    m = SGD(factors=24, epochs=4, random_state=3).fit(X)
    users = np.arange(m.n_users)
    rows = users.astype(np.int64)
    args = (
        m.user_factors, rows, m.item_factors, np.arange(m.n_items, dtype=np.int64), 10,
        m.global_mean + m.user_biases[rows].astype(np.float64),
        m.item_biases.astype(np.float64), m._fitted.seen, rows, 2,
    )  # fmt: skip
    a = _topn._topn(*args, screen=True)
    b = _topn._topn(*args, screen=False)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    ids, scores = m.recommend(users[:50], n=10)
    for u in range(50):
        pred = m.predict(np.full(10, users[u]), ids[u])
        np.testing.assert_array_equal(scores[u], pred.astype(np.float64))
