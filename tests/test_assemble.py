"""The CSR assembly kernels against plain NumPy, with inputs large enough for their
parallel paths and with the thread shares' borders in the interesting places."""

from __future__ import annotations

import numpy as np
import pytest

from mfkit.data import _assemble
from mfkit.data._csr import map_ids_to_indices

N = 200_003  # above the kernels' parallel threshold, odd so thread shares are uneven


def numpy_order(u: np.ndarray, i: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.lexsort((i, u))  # stable: ties keep input order
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(u, minlength=n_users), out=indptr[1:])
    return indptr, perm


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
@pytest.mark.parametrize("layout", ["random", "user-sorted", "item-sorted", "one-swap-at-border"])
def test_csr_order_matches_numpy(threads: int, layout: str) -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 5000, 700
    u = rng.integers(0, n_users, N).astype(np.int32)
    i = rng.integers(0, n_items, N).astype(np.int32)
    if layout == "user-sorted":
        order = np.lexsort((i, u))
        u, i = u[order], i[order]
    elif layout == "item-sorted":
        order = np.argsort(i, kind="stable")
        u, i = u[order], i[order]
    elif layout == "one-swap-at-border":
        # sorted except across the border of two thread shares
        order = np.lexsort((i, u))
        u, i = u[order].copy(), i[order].copy()
        k = N // 2
        u[k - 1], u[k] = u[k], u[k - 1]
        i[k - 1], i[k] = i[k], i[k - 1]
        assert u[k - 1] > u[k] or i[k - 1] > i[k]
    indptr, perm = _assemble.csr_order(u, i, n_users, n_items, threads)
    want_indptr, want_perm = numpy_order(u, i, n_users)
    np.testing.assert_array_equal(indptr, want_indptr)
    if layout == "user-sorted":
        assert perm is None
    else:
        assert perm is not None
        np.testing.assert_array_equal(perm, want_perm)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_csr_order_refuses_out_of_range(threads: int) -> None:
    u = np.zeros(N, dtype=np.int32)
    i = np.zeros(N, dtype=np.int32)
    i[N - 1] = 10  # in the last thread's share
    with pytest.raises(ValueError, match="out of range"):
        _assemble.csr_order(u, i, 1, 10, threads)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("where", ["none", "first-rows", "last-rows", "everywhere"])
def test_first_duplicate_matches_numpy(threads: int, where: str) -> None:
    rng = np.random.default_rng(4)
    n_rows = 3000
    counts = rng.integers(0, 140, n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    cols = [np.sort(rng.choice(1000, c, replace=False)) for c in counts]
    rows_with_dup = {
        "none": [],
        "first-rows": [5, 6],
        "last-rows": [n_rows - 3, n_rows - 1],
        "everywhere": list(range(0, n_rows, 97)),
    }[where]
    for r in rows_with_dup:
        if len(cols[r]) >= 2:
            cols[r][1] = cols[r][0]  # a repeat inside a sorted row
    indices = np.concatenate(cols).astype(np.int32)
    n, first = _assemble.first_duplicate(indptr, indices, threads)
    row_of = np.repeat(np.arange(n_rows), counts)
    rep = (indices[1:] == indices[:-1]) & (row_of[1:] == row_of[:-1])
    want = np.flatnonzero(rep) + 1
    assert n == len(want)
    assert first == (int(want[0]) if len(want) else -1)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_dense_map_matches_unique(dtype: type, threads: int) -> None:
    rng = np.random.default_rng(5)
    ids = (rng.integers(0, 40_000, N) * 3 - 17).astype(dtype)
    want_ids, want_idx = np.unique(ids, return_inverse=True)
    got_ids, got_idx = map_ids_to_indices(ids.copy(), threads)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_idx, want_idx.ravel())
    assert got_idx.dtype == np.int32
    # in place: the int32 ids become the indices
    own = ids.copy()
    got_ids, got_idx = map_ids_to_indices(own, threads, inplace=True)
    np.testing.assert_array_equal(got_idx, want_idx.ravel())
    assert (got_idx is own) == (dtype == np.int32)


def test_dense_map_refuses_ids_outside_bounds() -> None:
    ids = np.arange(N, dtype=np.int64)
    with pytest.raises(ValueError, match="outside"):
        _assemble.dense_map(ids, 0, N - 2, 2)


def test_dense_map_of_no_ids() -> None:
    uniq, idx = _assemble.dense_map(np.zeros(0, dtype=np.int64), 0, 5, 2)
    assert uniq.dtype == np.int64 and len(uniq) == 0
    assert idx.dtype == np.int32 and len(idx) == 0
