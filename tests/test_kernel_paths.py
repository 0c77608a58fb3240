"""Every instruction-set path of the row kernels (ALS, implicit ALS, Bayesian MF) and of
top-N, against independent NumPy references, with the thread-count identity on each path
and the documented agreement between paths (avx2 and avx512 agree bit for bit; top-N
lists are the same on every path)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mfkit
from mfkit.models import _als
from mfkit.models.als import RowScratch, half_step
from mfkit.models.bayes import sample_rows
from mfkit.models.implicit_als import half_step as implicit_half_step
from mfkit.recommend import _recommend
from mfkit.recommend._topn import pack_items
from tests.conftest import random_ratings
from tests.test_als import dense_of, reference_rows
from tests.test_bayes import _csr, _reference_rows, _spd
from tests.test_implicit_als import csr_parts, dense_solve, implicit_data

ISAS = mfkit.available_isas()
FAST = [name for name in ISAS if name != "baseline"]


def _side(X: mfkit.Ratings, k: int, seed: int, dtype: type):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((X.n_items, k)).astype(dtype) * dtype(0.5)
    ybias = rng.standard_normal(X.n_items).astype(dtype) * dtype(0.3)
    return Y, ybias


def _solve(X, Y, ybias, isa, solver="cholesky", n_threads=1, cg_steps=3, X_init=None):  # type: ignore[no-untyped-def]
    k = Y.shape[1]
    P = np.zeros((X.n_users, k), dtype=Y.dtype) if X_init is None else X_init.copy()
    bu = np.zeros(X.n_users, dtype=Y.dtype)
    sse = np.zeros(X.n_users)
    half_step(
        X.indptr, X.indices, X.values, Y, P, ybias=ybias, xbias=bu, mu=3.0,
        regularization=0.1, solver=solver, cg_steps=cg_steps, row_sse=sse,
        n_threads=n_threads, isa=isa,
    )  # fmt: skip
    return P, bu, sse


# ----------------------------------------------------------------------------- ALS rows
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [5, 16, 33])
def test_cholesky_rows_solve_the_normal_equations(isa: str, dtype: type, k: int) -> None:
    X = random_ratings(11, n_users=45, n_items=60, density=0.3)
    Y, ybias = _side(X, k, 1, dtype)
    P, bu, sse = _solve(X, Y, ybias, isa)
    R, M = dense_of(X)
    ref_P, ref_b = reference_rows(R, M, Y.astype(np.float64), ybias.astype(np.float64), 3.0,
                                  0.1, 0.1, True)  # fmt: skip
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(P, ref_P, rtol=tol, atol=tol)
    np.testing.assert_allclose(bu, ref_b, rtol=tol, atol=tol)
    # the residual sums of the new rows, computed directly
    e = np.where(M, R - (3.0 + ref_P @ Y.T.astype(np.float64) + ref_b[:, None] + ybias), 0)
    np.testing.assert_allclose(sse, (e**2).sum(axis=1), rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cg_converges_to_the_exact_solution(isa: str, dtype: type) -> None:
    k = 8
    X = random_ratings(12, n_users=30, n_items=40, density=0.4)
    Y, ybias = _side(X, k, 2, dtype)
    R, M = dense_of(X)
    ref_P, ref_b = reference_rows(R, M, Y.astype(np.float64), ybias.astype(np.float64), 3.0,
                                  0.1, 0.1, True)  # fmt: skip
    # K = k + 1 steps solve a (k + 1)-dimensional system exactly in exact arithmetic
    P, bu, _ = _solve(X, Y, ybias, isa, solver="cg", cg_steps=3 * (k + 1))
    tol = 1e-3 if dtype == np.float32 else 1e-8
    np.testing.assert_allclose(P, ref_P, rtol=tol, atol=tol)
    np.testing.assert_allclose(bu, ref_b, rtol=tol, atol=tol)
    # and each of the first steps brings every row closer to it (CG's error norm decreases
    # monotonically; the slack covers rows already solved to rounding)
    slack = 1e-5 if dtype == np.float32 else 1e-12
    errs = []
    for steps in (1, 2, 3):
        P, bu, _ = _solve(X, Y, ybias, isa, solver="cg", cg_steps=steps)
        errs.append(np.linalg.norm(np.column_stack([P - ref_P, bu - ref_b]), axis=1))
    rated = np.diff(X.indptr) > 0
    assert np.all(errs[1][rated] <= errs[0][rated] + slack)
    assert np.all(errs[2][rated] <= errs[1][rated] + slack)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_als_fit_is_bit_identical_for_1_2_3_threads_on_every_path(isa: str, solver: str) -> None:
    X = random_ratings(5, n_users=80, n_items=50, density=0.3)
    fits = []
    with mfkit.use_isa(isa):
        for nt in (1, 2, 3):
            m = mfkit.ALS(factors=24, epochs=3, regularization=0.05, solver=solver,
                          random_state=4, n_threads=nt).fit(X)  # fmt: skip
            assert m.isa_ == isa
            fits.append((m.user_factors, m.item_factors, m.user_biases, m.item_biases))
    for other in fits[1:]:
        for a, b in zip(fits[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("k", [20, 64])
def test_avx2_and_avx512_give_the_same_bits_baseline_is_close(solver: str, k: int) -> None:
    # AVX-512 forms the Gram tiles and the Cholesky rows 16 lanes wide, AVX2 8 lanes wide:
    # each entry's sum is the same either way (k = 64: rows of 5, 4, 3, 2 and 1 vectors)
    X = random_ratings(6, n_users=70, n_items=45, density=0.3)
    out = {}
    for isa in ISAS:
        with mfkit.use_isa(isa):
            m = mfkit.ALS(factors=k, epochs=2, regularization=0.05, solver=solver,
                          random_state=3, n_threads=2).fit(X)  # fmt: skip
        out[isa] = m.user_factors
    if len(FAST) == 2:
        np.testing.assert_array_equal(out["avx2"], out["avx512"])
    for isa in FAST:
        np.testing.assert_allclose(out[isa], out["baseline"], rtol=1e-3, atol=1e-4)


def test_isa_is_saved_and_loaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    X = random_ratings(7)
    with mfkit.use_isa("baseline"):
        m = mfkit.ALS(factors=4, epochs=1, regularization=0.1, random_state=0).fit(X)
    assert m.isa_ == "baseline"
    m.save(tmp_path / "m.npz")
    assert mfkit.load(tmp_path / "m.npz").isa_ == "baseline"


def test_fit_reuses_one_scratch_and_bad_scratch_is_refused() -> None:
    X = random_ratings(8, n_users=20, n_items=15, density=0.4)
    k = 6
    Y, ybias = _side(X, k, 3, np.float32)
    rows = _als.max_row_length(X.indptr)
    scratch = RowScratch(k, rows, 4, 2)
    P = np.zeros((X.n_users, k), dtype=np.float32)
    for _ in range(2):  # reused: the same bits as a fresh one each time
        half_step(X.indptr, X.indices, X.values, Y, P, regularization=0.1, n_threads=2,
                  scratch=scratch)  # fmt: skip
        P1 = P.copy()
        half_step(X.indptr, X.indices, X.values, Y, P, regularization=0.1, n_threads=2)
        np.testing.assert_array_equal(P, P1)
    with pytest.raises(ValueError, match="rows of"):
        half_step(X.indptr, X.indices, X.values, Y, P, regularization=0.1,
                  scratch=RowScratch(k, rows - 1, 4, 1))  # fmt: skip
    with pytest.raises(ValueError, match="made for k="):
        half_step(X.indptr, X.indices, X.values, Y, P, regularization=0.1,
                  scratch=RowScratch(k + 1, rows, 4, 1))  # fmt: skip
    with pytest.raises(ValueError, match="threads"):
        half_step(X.indptr, X.indices, X.values, Y, P, regularization=0.1, n_threads=3,
                  scratch=RowScratch(k, rows, 4, 2))  # fmt: skip
    with pytest.raises(TypeError, match="RowScratch"):
        half_step(X.indptr, X.indices, X.values, Y, P, regularization=0.1, scratch=b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="itemsize"):
        RowScratch(k, rows, 2, 1)


def test_bad_isa_is_a_clear_error() -> None:
    X = random_ratings(9)
    Y, _ = _side(X, 4, 0, np.float32)
    P = np.zeros((X.n_users, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="not a kernel path"):
        half_step(X.indptr, X.indices, X.values, Y, P, regularization=0.1, isa="sse9")
    e64, e32, sse = np.empty(0, np.float32), np.empty((0, 4), np.float32), np.empty(0)
    with pytest.raises(ValueError, match="this CPU offers"):
        _als.cholesky_half_step(X.indptr, X.indices, X.values, Y, e64, P, e64, e32, 0.0, 0.1,
                                0.1, 0.0, True, sse, 1, 7)  # fmt: skip


# ----------------------------------------------------------------------------- implicit, Bayes
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_implicit_rows_on_every_path(isa: str, solver: str) -> None:
    C = implicit_data(seed=2)
    indptr, indices, values = csr_parts(C)
    k, alpha, reg = 6, 2.0, 0.3
    Y = np.random.default_rng(1).standard_normal((C.shape[1], k)) * 0.3
    ref = dense_solve(C.toarray(), Y, alpha, reg)
    outs = []
    for nt in (1, 2, 3):
        X = np.zeros((C.shape[0], k))
        implicit_half_step(indptr, indices, values, Y, X, alpha=alpha, regularization=reg,
                           solver=solver, cg_steps=40, n_threads=nt, isa=isa)  # fmt: skip
        outs.append(X)
    np.testing.assert_allclose(outs[0], ref, rtol=1e-7, atol=1e-8)
    for X in outs[1:]:
        np.testing.assert_array_equal(X, outs[0])


@pytest.mark.parametrize("isa", ISAS)
def test_bayes_rows_on_every_path(isa: str) -> None:
    rng = np.random.default_rng(5)
    indptr, indices, values = _csr(rng, 30, 20, 0.3)
    k = 5
    Y = rng.standard_normal((20, k))
    ybias = rng.standard_normal(20) * 0.3
    Lam, m = _spd(rng, k + 1), rng.standard_normal(k + 1) * 0.2
    ref, _ = _reference_rows(indptr, indices, values, Y, ybias, 3.3, m, Lam, 1.5, 9, 2, 0)
    outs = []
    for nt in (1, 2, 3):
        X, xb = np.zeros((30, k)), np.zeros(30)
        sample_rows(indptr, indices, values, Y, X, ybias=ybias, xbias=xb, mu=3.3, prior_mean=m,
                    prior_precision=Lam, noise_precision=1.5, seed=9, sweep=2, side=0,
                    n_threads=nt, isa=isa)  # fmt: skip
        outs.append(np.column_stack([X, xb]))
    np.testing.assert_allclose(outs[0], ref, rtol=1e-9, atol=1e-9)
    for got in outs[1:]:
        np.testing.assert_array_equal(got, outs[0])


@pytest.mark.parametrize("cls", [mfkit.ImplicitALS, mfkit.BayesianMF])
def test_other_row_models_record_their_path(cls) -> None:  # type: ignore[no-untyped-def]
    X = random_ratings(3, n_users=30, n_items=20, density=0.3)
    fits = []
    for nt in (1, 2):
        with mfkit.use_isa(ISAS[-1]):
            m = cls(factors=4, epochs=2, random_state=0, n_threads=nt).fit(X)
        assert m.isa_ == ISAS[-1]
        fits.append(m.user_factors_ if hasattr(m, "user_factors_") else m.user_factors)
    np.testing.assert_array_equal(fits[0], fits[1])


# ----------------------------------------------------------------------------- top-N
def _topn_case(dtype: type, k: int, seed: int, ties: bool = False):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    n_q, n_items = 70, 301
    P = rng.standard_normal((n_q, k)).astype(dtype)
    Q = rng.standard_normal((n_items, k)).astype(dtype)
    if ties:  # exact ties: integer factors, duplicated items
        P = rng.integers(-2, 3, (n_q, k)).astype(dtype)
        Q = rng.integers(-2, 3, (n_items, k)).astype(dtype)
        Q[1::3] = Q[0:-1:3][: len(Q[1::3])]
    cand = np.arange(n_items, dtype=np.int64)
    panels = pack_items(Q, cand)
    add = np.full(panels.shape[0] * 16, -np.inf)
    add[:n_items] = 0.0 if ties else rng.standard_normal(n_items)
    base = np.zeros(n_q) if ties else rng.standard_normal(n_q)
    seen = sp.random_array((n_q, n_items), density=0.05, random_state=seed, format="csr")
    seen.sort_indices()
    s_indptr, s_indices = seen.indptr.astype(np.int64), seen.indices.astype(np.int32)
    return P, Q, cand, panels, add, base, s_indptr, s_indices


def _run_topn(case, isa: int, n_threads: int, n: int = 12):  # type: ignore[no-untyped-def]
    P, Q, cand, panels, add, base, s_indptr, s_indices = case
    rows = np.arange(len(P), dtype=np.int64)
    items = np.empty((len(P), n), dtype=np.int64)
    scores = np.empty((len(P), n))
    _recommend.topn(P, rows, panels, cand, add, base, s_indptr, s_indices, rows, items,
                    scores, n_threads, True, isa)  # fmt: skip
    return items, scores


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [7, 64])
@pytest.mark.parametrize("ties", [False, True])
def test_topn_equals_numpy_argsort_on_every_path(dtype: type, k: int, ties: bool) -> None:
    case = _topn_case(dtype, k, k, ties)
    P, Q, cand, panels, add, base, s_indptr, s_indices = case
    S = P.astype(np.float64) @ Q.astype(np.float64).T + base[:, None] + add[None, : len(cand)]
    for q in range(len(P)):
        S[q, s_indices[s_indptr[q] : s_indptr[q + 1]]] = -np.inf
    ref = np.argsort(-S, axis=1, kind="stable")[:, :12]  # ties: the lower index first
    first = None
    for level, name in enumerate(ISAS):
        runs = [_run_topn(case, level, nt) for nt in (1, 2, 3)]
        for items, scores in runs[1:]:
            np.testing.assert_array_equal(items, runs[0][0])
            np.testing.assert_array_equal(scores, runs[0][1])
        items, scores = runs[0]
        if first is None:
            first = runs[0]
        else:  # every path: the same ids and the same (exact) scores
            np.testing.assert_array_equal(items, first[0], err_msg=name)
            np.testing.assert_array_equal(scores, first[1], err_msg=name)
        tol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(scores, np.take_along_axis(S, ref, 1), rtol=tol, atol=tol)
        if ties or dtype == np.float64:  # exactly representable sums: ids equal argsort's
            np.testing.assert_array_equal(items, ref)
        else:
            assert (items == ref).mean() > 0.99


@pytest.mark.parametrize("isa", ISAS)
def test_recommend_scores_equal_predict_on_every_path(isa: str) -> None:
    X = random_ratings(4, n_users=50, n_items=40, density=0.3)
    m = mfkit.ALS(factors=19, epochs=2, regularization=0.1, random_state=1).fit(X)
    with mfkit.use_isa(isa):
        items, scores = m.recommend(np.arange(50), n=5)
    for u in range(50):
        ok = items[u] >= 0
        pred = m.predict(np.full(ok.sum(), u), items[u][ok])
        np.testing.assert_array_equal(scores[u][ok], pred.astype(np.float64))


def test_topn_refuses_a_path_the_cpu_lacks() -> None:
    case = _topn_case(np.float32, 4, 0)
    with pytest.raises(ValueError, match="this CPU offers"):
        _run_topn(case, 9, 1)


# ------------------------------------------- top-N: skipping panels by their score bound
def _bound_model(n_users: int, n_items: int, k: int, dtype: str, seed: int):  # type: ignore[no-untyped-def]
    """Integer factors and widely spread half-integer item biases: every score is exact,
    ties are common, and most item panels lie below a user's n-th best (skipped)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < 0.2
    mask[:, 0] = True
    X = mfkit.Ratings.from_dense(np.where(mask, 3.0, np.nan))
    m = mfkit.SGD(factors=k, epochs=0, dtype=dtype, random_state=seed).fit(X)
    m.user_factors[:] = rng.integers(-1, 2, (n_users, k))
    m.item_factors[:] = rng.integers(-1, 2, (n_items, k))
    m.user_biases[:] = rng.integers(-2, 3, n_users) / 2
    m.item_biases[:] = rng.integers(-8 * k, 8 * k + 1, n_items) / 2
    m.global_mean = 3.0
    return m, X, mask


def _brute(m, mask: np.ndarray | None, n: int):  # type: ignore[no-untyped-def]
    """Stable argsort of the exact scores (ties: lower item index), -1 / NaN padding."""
    S = m.user_factors.astype(np.float64) @ m.item_factors.astype(np.float64).T
    S += m.global_mean + m.user_biases[:, None] + m.item_biases[None, :].astype(np.float64)
    n_eff = min(n, S.shape[1])
    items = np.full((S.shape[0], n_eff), -1, dtype=np.int64)
    scores = np.full((S.shape[0], n_eff), np.nan)
    for u in range(S.shape[0]):
        idx = np.arange(S.shape[1]) if mask is None else np.flatnonzero(~mask[u])
        order = idx[np.argsort(-S[u, idx], kind="stable")][:n_eff]
        items[u, : len(order)] = order
        scores[u, : len(order)] = S[u, order]
    return items, scores


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("n_items", "k"), [(1, 3), (15, 16), (17, 13), (53, 64), (301, 70)])
def test_topn_with_skipped_panels_equals_argsort(dtype: str, n_items: int, k: int) -> None:
    m, X, mask = _bound_model(45, n_items, k, dtype, seed=n_items + k)
    for n in (1, 10, n_items + 3):
        ref = _brute(m, mask, n)
        ref_all = _brute(m, None, n)
        for isa in ISAS:
            for nt in (1, 2, 3):
                m.n_threads_ = nt
                with mfkit.use_isa(isa):
                    ids, scores = m.recommend(np.arange(45), n=n)
                    ids_all, scores_all = m.recommend(np.arange(45), n=n, exclude_seen=False)
                np.testing.assert_array_equal(ids, ref[0], err_msg=f"{isa} {nt}")
                np.testing.assert_array_equal(scores, ref[1], err_msg=f"{isa} {nt}")
                np.testing.assert_array_equal(ids_all, ref_all[0], err_msg=f"{isa} {nt}")
                np.testing.assert_array_equal(scores_all, ref_all[1], err_msg=f"{isa} {nt}")


def test_topn_user_with_every_item_seen_gets_only_padding() -> None:
    m, X, mask = _bound_model(20, 40, 8, "float32", seed=5)
    full = np.ones((20, 40), dtype=bool)
    full[1:] = mask[1:]
    seen = mfkit.Ratings.from_dense(np.where(full, 3.0, np.nan))
    for isa in ISAS:
        with mfkit.use_isa(isa):
            ids, scores = m.recommend(np.arange(20), n=5, seen=seen)
        assert (ids[0] == -1).all() and np.isnan(scores[0]).all()
        ref = _brute(m, full, 5)
        np.testing.assert_array_equal(ids, ref[0])
        np.testing.assert_array_equal(scores, ref[1])


def test_topn_never_skips_an_item_with_an_infinite_bias() -> None:
    m, X, mask = _bound_model(30, 100, 16, "float32", seed=6)
    m.item_biases[77] = np.inf  # its bound is infinite: its panel must always be scored
    for isa in ISAS:
        with mfkit.use_isa(isa):
            ids, scores = m.recommend(np.arange(30), n=3, exclude_seen=False)
        assert (ids[:, 0] == 77).all() and np.isinf(scores[:, 0]).all()
        ref = _brute(m, None, 3)
        np.testing.assert_array_equal(ids[:, 1:], ref[0][:, 1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topn_kernel_result_does_not_depend_on_the_candidate_order(dtype: type) -> None:
    case = _topn_case(dtype, 21, 3, ties=True)
    P, Q, cand, panels, add, base, s_indptr, s_indices = case
    perm = np.random.default_rng(3).permutation(len(cand))
    add_p = np.full_like(add, -np.inf)
    add_p[: len(cand)] = add[: len(cand)][perm]
    shuffled = (P, Q, cand[perm], pack_items(Q, cand[perm]), add_p, base, s_indptr, s_indices)
    for level in range(len(ISAS)):
        a = _run_topn(case, level, 2)
        b = _run_topn(shuffled, level, 3)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
