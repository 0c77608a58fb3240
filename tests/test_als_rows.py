"""The explicit ALS row kernels, which read the opposite factor rows in place (_als_direct.h),
against NumPy references: numpy.linalg solves of each row's augmented normal equations and a
plain NumPy conjugate gradient, over factor counts that do and do not fill whole 16-float
lines, rows of 0, 1, a few, a block of eight and more than one Gram chunk of ratings, with
and without biases, weights and priors, on every kernel path and thread count."""

from __future__ import annotations

import numpy as np
import pytest

import mfkit
from mfkit.models._state import normal_rows
from mfkit.models.als import half_step

ISAS = mfkit.available_isas()
#: ratings per row: empty, one, fewer than a block of eight, eight, a block and a tail, and
#: rows longer than one Gram chunk (64 rows of 64 floats) and than several
LENGTHS = [0, 1, 2, 7, 8, 9, 17, 70, 150, 300]
N_OPPOSITE = 320
MU, REG, REG_B, PRIOR = 3.2, 0.07, 0.04, 0.11


def _problem(k: int, dtype: type, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    lens = np.array(LENGTHS)
    indptr = np.zeros(len(lens) + 1, np.int64)
    indptr[1:] = np.cumsum(lens)
    indices = np.concatenate(
        [np.sort(rng.choice(N_OPPOSITE, n, replace=False)) for n in lens]
    ).astype(np.int32)
    values = rng.uniform(1, 5, int(indptr[-1])).astype(np.float32)
    Y = (rng.standard_normal((N_OPPOSITE, k)) * 0.4).astype(dtype)
    ybias = (rng.standard_normal(N_OPPOSITE) * 0.3).astype(dtype)
    X = (rng.standard_normal((len(lens), k)) * 0.2).astype(dtype)
    xbias = (rng.standard_normal(len(lens)) * 0.2).astype(dtype)
    X0 = (rng.standard_normal((len(lens), k)) * 0.3).astype(dtype)
    return indptr, indices, values, Y, ybias, X, xbias, X0


def _system(row, indptr, indices, values, Y, ybias, X0, biases, weighted, prior):  # type: ignore[no-untyped-def]
    """The row's augmented normal equations in float64: (A, b)."""
    a, b = indptr[row], indptr[row + 1]
    j = indices[a:b]
    Yu = Y[j].astype(np.float64)
    n, k = Yu.shape
    t = values[a:b].astype(np.float64)
    if biases:
        t = t - MU - ybias[j].astype(np.float64)
    c = n if weighted else 1
    lam0 = PRIOR if prior else 0.0
    A = Yu.T @ Yu + c * (REG + lam0) * np.eye(k)
    rhs = Yu.T @ t
    if prior:
        rhs = rhs + c * lam0 * X0[row].astype(np.float64)
    if not biases:
        return A, rhs
    K = k + 1
    Aa = np.zeros((K, K))
    Aa[:k, :k] = A
    Aa[:k, k] = Aa[k, :k] = Yu.sum(axis=0)
    Aa[k, k] = n + c * REG_B
    return Aa, np.append(rhs, t.sum())


def _numpy_cg(A, b, x, steps):  # type: ignore[no-untyped-def]
    r = b - A @ x
    d = r.copy()
    rr = r @ r
    for _ in range(steps):
        if not rr > 0:
            break
        Ad = A @ d
        alpha = rr / (d @ Ad)
        x = x + alpha * d
        r = r - alpha * Ad
        rr_new = r @ r
        d = r + (rr_new / rr) * d
        rr = rr_new
    return x


def _run(prob, solver, biases, weighted, prior, isa, n_threads, steps=3):  # type: ignore[no-untyped-def]
    indptr, indices, values, Y, ybias, X, xbias, X0 = prob
    Xc, bc = X.copy(), xbias.copy()
    sse = np.zeros(len(X))
    half_step(
        indptr, indices, values, Y, Xc,
        ybias=ybias if biases else None, xbias=bc if biases else None,
        mu=MU if biases else 0.0, regularization=REG, bias_regularization=REG_B,
        weighted=weighted, solver=solver, cg_steps=steps,
        prior=X0 if prior else None, prior_regularization=PRIOR if prior else 0.0,
        row_sse=sse, n_threads=n_threads, isa=isa,
    )  # fmt: skip
    return Xc, bc, sse


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("k", [1, 7, 16, 33, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "biases, weighted, prior", [(True, True, False), (False, False, False), (True, False, True)]
)
def test_rows_match_the_numpy_reference(isa, solver, k, dtype, biases, weighted, prior) -> None:  # type: ignore[no-untyped-def]
    prob = _problem(k, dtype, seed=k)
    indptr, indices, values, Y, ybias, X, xbias, X0 = prob
    got_X, got_b, got_sse = _run(prob, solver, biases, weighted, prior, isa, 1)
    for row in range(len(X)):
        tol = 2e-3 if dtype == np.float32 else 1e-8
        a, b = indptr[row], indptr[row + 1]
        if a == b:
            want = (PRIOR / (REG + PRIOR)) * X0[row] if prior else np.zeros(k)
            np.testing.assert_allclose(got_X[row], want, rtol=1e-6, atol=1e-7)
            if biases:
                assert got_b[row] == 0
            assert got_sse[row] == 0
            continue
        A, rhs = _system(row, indptr, indices, values, Y, ybias, X0, biases, weighted, prior)
        if solver == "cholesky":
            want = np.linalg.solve(A, rhs)
        else:
            start = X[row].astype(np.float64)
            if biases:
                start = np.append(start, float(xbias[row]))
            want = _numpy_cg(A, rhs, start, 3)
            converged = np.linalg.norm(A @ want - rhs) <= 1e-6 * np.linalg.norm(rhs)
            if converged:
                # converged in fewer steps (a row with one or two ratings): later steps only
                # stir rounding noise in the factor precision, so the answer is the solution
                want = np.linalg.solve(A, rhs)
            if converged and dtype == np.float32:
                # float32 CG keeps stepping on a residual of rounding noise (rr > 0): its
                # answer wanders from the solution by far more than the float32 epsilon
                tol = 5e-2
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got_X[row], want[:k], rtol=tol, atol=tol * scale)
        if biases:
            np.testing.assert_allclose(got_b[row], want[k], rtol=tol, atol=tol * scale)
        # the residual sum of the new row, computed directly
        j = indices[a:b]
        pred = Y[j].astype(np.float64) @ got_X[row].astype(np.float64)
        if biases:
            pred += MU + ybias[j] + float(got_b[row])
        e = values[a:b] - pred
        np.testing.assert_allclose(got_sse[row], e @ e, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("k", [7, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_are_bit_identical_for_1_2_3_threads(isa, solver, k, dtype) -> None:  # type: ignore[no-untyped-def]
    prob = _problem(k, dtype, seed=100 + k)
    runs = [_run(prob, solver, True, True, False, isa, n) for n in (1, 2, 3)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            assert a.tobytes() == b.tobytes()


def test_misaligned_factor_rows_give_the_same_bits() -> None:
    """Factor rows read in place may start anywhere in a cache line: the bits are the same."""
    prob = _problem(64, np.float32, seed=7)
    indptr, indices, values, Y, ybias, X, xbias, X0 = prob
    raw = np.zeros(Y.nbytes + 64, np.uint8)
    off = (-raw.ctypes.data) % 64 + 4  # 4 bytes past a line boundary
    Ym = raw[off : off + Y.nbytes].view(np.float32).reshape(Y.shape)
    Ym[...] = Y
    for solver in ("cholesky", "cg"):
        want = _run(prob, solver, True, True, False, ISAS[-1], 1)
        got = _run((indptr, indices, values, Ym, ybias, X, xbias, X0), solver, True, True,
                   False, ISAS[-1], 1)  # fmt: skip
        for a, b in zip(want, got, strict=True):
            assert a.tobytes() == b.tobytes()


def test_initial_factors_start_on_a_cache_line() -> None:
    for dtype in (np.float32, np.float64):
        a = normal_rows(np.random.default_rng(0), 37, 5, np.dtype(dtype))
        assert a.ctypes.data % 64 == 0 and a.shape == (37, 5) and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable
        # the same stream as a plain draw
        want = np.random.default_rng(0).standard_normal((37, 5)).astype(dtype)
        np.testing.assert_array_equal(a, want)


def test_copies_and_warm_starts_keep_the_cache_line_start() -> None:
    from mfkit.models._state import FactorState, aligned_copy

    raw = np.zeros(37 * 5 + 1, dtype=np.float32)
    src = raw[1:].reshape(37, 5)  # 4 bytes past NumPy's own start
    src[:] = np.random.default_rng(1).standard_normal((37, 5))
    got = aligned_copy(src)
    assert got.ctypes.data % 64 == 0 and got.dtype == src.dtype
    np.testing.assert_array_equal(got, src)
    st = FactorState(src, src, np.zeros(37, np.float32), np.zeros(37, np.float32)).copy()
    assert st.P.ctypes.data % 64 == 0 and st.Q.ctypes.data % 64 == 0
    np.testing.assert_array_equal(st.P, src)
    # a warm start from unaligned arrays trains aligned rows (the fitted arrays are them)
    X = mfkit.Ratings.from_triplets([0, 1, 2, 3], [0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])
    raw = np.full(4 * 8 + 1, 0.1, np.float32)
    P0 = raw[1:].reshape(4, 8)
    assert P0.ctypes.data % 64 != 0
    m = mfkit.SGD(factors=8, epochs=2, random_state=0, n_threads=1)
    m.fit(X, init=(P0, P0))
    assert m.user_factors_.ctypes.data % 64 == 0
