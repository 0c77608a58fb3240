"""The batched float32 Cholesky of the ALS half-step (_als_batch.h: eight systems at once,
one per vector lane) against the one-system kernel it stands in for, bit for bit, and both
against numpy.linalg.solve, on every kernel path: sizes below, at and past a block of eight
unknowns, batches that are full, partial and more than one, and systems that are not
positive definite sharing a batch with good ones."""

from __future__ import annotations

import numpy as np
import pytest

import mfkit
from mfkit.models._als import solve_systems

ISAS = mfkit.available_isas()
ISA_CODE = {"baseline": 0, "avx2": 1, "avx512": 2, "neon": 3}


def _systems(n: int, K: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((n, 2 * K + 3, K))
    A = np.einsum("sik,sil->skl", Y, Y) + 0.05 * np.eye(K)
    b = rng.standard_normal((n, K))
    return A.astype(np.float32), b.astype(np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("K", [1, 2, 7, 8, 9, 17, 33, 65, 97, 130])
@pytest.mark.parametrize("n", [1, 5, 8, 11])
def test_batched_solves_have_the_one_system_bits(isa: str, K: int, n: int) -> None:
    A, b = _systems(n, K, seed=K * 100 + n)
    got, want = b.copy(), b.copy()
    st_b = solve_systems(A, got, ISA_CODE[isa], batched=True)
    st_1 = solve_systems(A, want, ISA_CODE[isa], batched=False)
    assert (st_b == 0).all() and (st_1 == 0).all()
    assert got.tobytes() == want.tobytes()
    for s in range(n):
        ref = np.linalg.solve(A[s].astype(np.float64), b[s].astype(np.float64))
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got[s], ref, rtol=2e-3, atol=2e-3 * scale)


@pytest.mark.parametrize("isa", ISAS)
def test_a_failed_pivot_stays_in_its_lane(isa: str) -> None:
    K, n = 20, 10
    A, b = _systems(n, K, seed=5)
    A[3, 6, 6] = -50.0  # pivot 6 of system 3 is negative
    A[8, 0, 0] = np.nan  # system 8 fails at its first pivot
    A[9, 12, 12] = np.inf
    got, want = b.copy(), b.copy()
    st_b = solve_systems(A, got, ISA_CODE[isa], batched=True)
    st_1 = solve_systems(A, want, ISA_CODE[isa], batched=False)
    assert st_b.tolist() == st_1.tolist()
    assert st_b[3] == 7 and st_b[8] == 1 and st_b[9] > 0
    assert (np.delete(st_b, [3, 8, 9]) == 0).all()
    assert got.tobytes() == want.tobytes()
    # failed systems keep their right-hand side; the others are solved
    np.testing.assert_array_equal(got[[3, 8, 9]], b[[3, 8, 9]])
    for s in (0, 4, 7):
        ref = np.linalg.solve(A[s].astype(np.float64), b[s].astype(np.float64))
        np.testing.assert_allclose(got[s], ref, rtol=2e-3, atol=2e-3)


def test_bad_shapes_are_refused() -> None:
    A, b = _systems(2, 4, seed=0)
    with pytest.raises(ValueError, match="A must be"):
        solve_systems(A, b[:, :3].copy())
    with pytest.raises(ValueError, match="A must be"):
        solve_systems(A[:, :, :3].copy(), b)
