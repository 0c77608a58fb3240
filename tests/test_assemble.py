"""The CSR assembly kernels against plain NumPy, with inputs large enough for their
parallel paths and with the thread shares' borders in the interesting places."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfkit.data import _assemble, _csr
from mfkit.data._csr import assemble_csr_arrays, map_ids_to_indices

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


# --------------------------------------------------------------------------- out-of-order CSR
def reference_csr(
    u: np.ndarray,
    i: np.ndarray,
    v: np.ndarray,
    t: np.ndarray | None,
    n_users: int,
    n_items: int,
    duplicates: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(indptr, indices, float32 values, timestamps) by SciPy (values) and a NumPy stable
    lexsort (order, 'last' and timestamps). Values lie on a grid of halves, so SciPy's sums
    of repeats are exact whatever order it adds them in."""
    sp = pytest.importorskip("scipy.sparse")
    coo = sp.coo_matrix((v.astype(np.float64), (u, i)), shape=(n_users, n_items))
    csr = coo.tocsr()  # sums repeated pairs
    csr.sort_indices()
    order = np.lexsort((i, u))  # stable: repeats keep input order
    us, ii = u[order].astype(np.int64), i[order].astype(np.int64)
    last = np.ones(len(us), dtype=bool)
    last[:-1] = (us[1:] != us[:-1]) | (ii[1:] != ii[:-1])
    if duplicates == "last":
        vals = v[order][last].astype(np.float64)
    elif duplicates == "mean":
        group = np.cumsum(np.concatenate(([True], last[:-1]))) - 1
        vals = csr.data / np.bincount(group)
    else:
        vals = csr.data
    ts = None if t is None else t[order][last]
    indptr = csr.indptr.astype(np.int64)
    assert np.array_equal(csr.indices, ii[last])  # SciPy and the lexsort agree on the order
    return indptr, csr.indices.astype(np.int32), vals.astype(np.float32), ts


def _draw_ratings(
    rng: np.random.Generator, n: int, n_users: int, n_items: int, layout: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # skewed, with many repeated pairs and users without ratings
    u = ((n_users * rng.random(n) ** 2).astype(np.int32) // 3) * 3  # 2 users in 3 empty
    i = (n_items * rng.random(n) ** 3).astype(np.int32)
    v = (rng.integers(1, 11, n) / 2).astype(np.float32)
    t = rng.integers(-(2**40), 2**40, n)
    if layout == "item-sorted":
        o = np.argsort(i, kind="stable")
        u, i, v, t = u[o], i[o], v[o], t[o]
    elif layout == "nearly-sorted":  # user order with a few swaps
        o = np.lexsort((i, u))
        u, i, v, t = u[o], i[o], v[o], t[o]
        for k in rng.integers(1, n, 5):
            u[[k - 1, k]], i[[k - 1, k]] = u[[k, k - 1]], i[[k, k - 1]]
    return u, i, v, t


def _assemble_all(
    u: np.ndarray,
    i: np.ndarray,
    v: np.ndarray,
    t: np.ndarray | None,
    shape: tuple[int, int],
    duplicates: str,
    threads: int,
    consume: bool = False,
) -> tuple[np.ndarray, ...]:
    args = [u, i, v, t]
    if consume:  # the kernels may overwrite the inputs: give them copies
        args = [None if a is None else a.copy() for a in args]
    out = assemble_csr_arrays(
        *args,
        shape,
        duplicates=duplicates,
        n_threads=threads,
        consume=consume,  # type: ignore[arg-type]
    )
    return tuple(out)


def _same(got: tuple[np.ndarray | None, ...], want: tuple[np.ndarray | None, ...]) -> None:
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None
        else:
            assert g is not None and g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("layout", ["random", "item-sorted", "nearly-sorted"])
@pytest.mark.parametrize("duplicates", ["last", "sum", "mean"])
@pytest.mark.parametrize("placement", ["buckets", "permutation"])
def test_out_of_order_csr_matches_scipy(
    layout: str, duplicates: str, placement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both placements against SciPy and a lexsort, for 1, 2 and 3 threads, with and
    without timestamps, and with the inputs consumed (their memory reused)."""
    monkeypatch.setattr(_csr, "_PLACEMENT", placement)
    rng = np.random.default_rng(11)
    n_users, n_items = 9000, 3000
    u, i, v, t = _draw_ratings(rng, N, n_users, n_items, layout)
    assert len(np.unique(u)) < n_users  # some users have no rating
    shape = (n_users, n_items)
    want = reference_csr(u, i, v, t, *shape, duplicates)
    assert len(want[1]) < N  # there were repeated pairs
    for threads in (1, 2, 3):
        for consume in (False, True):
            _same(_assemble_all(u, i, v, t, shape, duplicates, threads, consume), want)
            got = _assemble_all(u, i, v, None, shape, duplicates, threads, consume)
            _same(got, (*want[:3], None))


@pytest.mark.parametrize(
    "case",
    ["one-user", "one-item", "wide-keys", "widest-keys", "tiny", "float64-values", "one-user-huge"],
)
def test_bucket_placement_edge_shapes(case: str) -> None:
    """A single row (one bucket, one big sort), a single column, item indices so wide that
    each bucket holds one user, keys of exactly 32 bits, a handful of ratings, float64
    input values, and one user so big that the permutation is used instead."""
    rng = np.random.default_rng(12)
    n, n_users, n_items = N, 5000, 700
    if case == "one-user":
        n_users = 1
    elif case == "one-item":
        n_items = 1
    elif case == "wide-keys":
        n_items = 2**31 - 1  # 31 item bits: one user per bucket
    elif case == "widest-keys":
        n_items = 2**29  # 29 item bits and 3 user bits (5000 users in buckets of 8)
    elif case == "tiny":
        n = 7
    elif case == "one-user-huge":
        n, n_users, n_items = 1_200_000, 3, 50_000
    u = rng.integers(0, n_users, n).astype(np.int32)
    if case == "one-user-huge":
        u[: n - 10] = 1
        rng.shuffle(u)
    i = rng.integers(0, n_items, n).astype(np.int32)
    v = (rng.integers(1, 11, n) / 2).astype(np.float64 if case == "float64-values" else np.float32)
    t = rng.integers(0, 2**40, n)
    shape = (n_users, n_items)
    want = reference_csr(u, i, v, t, *shape, "last")
    for threads in (1, 2, 3):
        _same(_assemble_all(u, i, v, t, shape, "last", threads, consume=True), want)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shift", [0, 4, 9])
def test_bucket_kernels_are_stable_counting_sorts(threads: int, shift: int) -> None:
    """bucket_scatter/bucket_keys place each column by bucket exactly as a stable argsort of
    the buckets does; bucket_rows then gives the (user, item, input position) order."""
    rng = np.random.default_rng(13)
    n_users, n_items = 4000, 900
    u, i, _, t = _draw_ratings(rng, N, n_users, n_items, "random")
    indptr, in_order, _, pos = _assemble.csr_counts(u, i, n_users, n_items, threads, shift)
    assert not in_order and pos.shape[1] == -(-n_users // (1 << shift))
    order = np.argsort(u >> shift, kind="stable")
    t2 = _assemble.bucket_scatter(t.view(np.uint64), u, shift, pos)
    np.testing.assert_array_equal(t2, t[order].view(np.uint64))
    item_bits = (n_items - 1).bit_length()
    keys = _assemble.bucket_keys(u, i, shift, item_bits, pos)
    want_keys = ((u & ((1 << shift) - 1)).astype(np.uint32) << item_bits) | i.astype(np.uint32)
    np.testing.assert_array_equal(keys, want_keys[order])
    p2 = np.ascontiguousarray(order.astype(np.uint32))  # input positions, placed alike
    _assemble.bucket_rows(keys, indptr, shift, item_bits, [p2], threads)
    full = np.lexsort((np.arange(N), i, u))
    np.testing.assert_array_equal(p2, full.astype(np.uint32))
    np.testing.assert_array_equal(keys.view(np.int32), i[full])


def test_bucket_kernels_refuse_bad_arguments() -> None:
    u = np.zeros(10, dtype=np.int32)
    indptr, _, _, pos = _assemble.csr_counts(u, u[::-1].copy(), 1, 1, 1, 0)
    assert pos is None  # in order: nothing to place
    i = np.arange(10, dtype=np.int32)[::-1].copy()
    indptr, _, _, pos = _assemble.csr_counts(u, i, 1, 10, 1, 0)
    with pytest.raises(ValueError, match="dtype and length"):
        _assemble.bucket_scatter(u.view(np.uint32), u, 0, pos, np.empty(9, np.uint32))
    with pytest.raises(ValueError, match="at most 32"):
        _assemble.bucket_keys(u, i, 20, 13, pos)
    keys = _assemble.bucket_keys(u, i, 0, 4, pos)
    with pytest.raises(ValueError, match="radix_bits"):
        _assemble.bucket_rows(keys, indptr, 0, 4, [], 1, 17)
    with pytest.raises(ValueError, match="writable"):
        _assemble.bucket_rows(keys, indptr, 0, 4, [np.zeros(10, np.int16)], 1)


@settings(max_examples=60)
@given(
    data=st.data(),
    n_users=st.integers(1, 40),
    n_items=st.integers(1, 40),
    n=st.integers(0, 400),
    shift=st.integers(0, 6),
    radix_bits=st.integers(1, 16),
)
def test_bucket_placement_property(
    data: st.DataObject, n_users: int, n_items: int, n: int, shift: int, radix_bits: int
) -> None:
    """Any ratings, any bucket width, any radix digit width: the placement equals the stable
    (user, item) sort, for 1, 2 and 3 threads."""
    users = st.lists(st.integers(0, n_users - 1), min_size=n, max_size=n)
    items = st.lists(st.integers(0, n_items - 1), min_size=n, max_size=n)
    u = np.array(data.draw(users), np.int32)
    i = np.array(data.draw(items), np.int32)
    full = np.lexsort((np.arange(n), i, u))
    item_bits = (n_items - 1).bit_length()
    for threads in (1, 2, 3):
        indptr, in_order, _, pos = _assemble.csr_counts(u, i, n_users, n_items, threads, shift)
        if in_order:
            assert pos is None and np.array_equal(full, np.arange(n))
            continue
        keys = _assemble.bucket_keys(u, i, shift, item_bits, pos)
        p2 = _assemble.bucket_scatter(np.arange(n, dtype=np.uint64), u, shift, pos)
        _assemble.bucket_rows(keys, indptr, shift, item_bits, [p2], threads, radix_bits)
        np.testing.assert_array_equal(p2, full.astype(np.uint64))
        np.testing.assert_array_equal(keys.view(np.int32), i[full])
