"""Building CSR arrays: id mapping, the stable counting sort by (user, item), duplicates."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mfkit._core.validation import resolve_n_threads
from mfkit.data import _assemble

Duplicates = Literal["error", "mean", "last", "sum"]
DUPLICATE_CHOICES = ("error", "mean", "last", "sum")
_INT32_MAX = np.iinfo(np.int32).max


def map_ids_to_indices(
    ids: np.ndarray,
    n_threads: int | None = None,
    bounds: tuple[int, int] | None = None,
    inplace: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids, int32 index of each id). Integer ids in a range not much wider
    than their count go through a lookup table (linear time, parallel); others through a
    sort. ``bounds``: the ids' (min, max) when already known. ``inplace``: int32 ``ids``
    may be overwritten with the indices (the caller gives them up)."""
    if ids.dtype.kind in "iu" and len(ids):
        lo, hi = bounds if bounds is not None else (int(ids.min()), int(ids.max()))
        if hi >= lo and hi - lo < max(4 * len(ids), 1 << 24):
            keep = ids.dtype in (np.dtype(np.int32), np.dtype(np.int64))
            ids = np.ascontiguousarray(ids, dtype=ids.dtype if keep else np.int64)
            out = ids if inplace and ids.dtype == np.int32 and ids.flags.writeable else None
            return _assemble.dense_map(ids, lo, hi, resolve_n_threads(n_threads), out)
    uniq, inverse = np.unique(ids, return_inverse=True)
    if uniq.dtype.kind in "iu":  # integer ids are int64 whichever way they were mapped
        uniq = uniq.astype(np.int64)
    return uniq, inverse.astype(np.int32).ravel()


CSRArrays = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]


def assemble_csr_arrays(
    u_idx: np.ndarray,
    i_idx: np.ndarray,
    values: np.ndarray,
    timestamps: np.ndarray | None,
    shape: tuple[int, int],
    *,
    duplicates: Duplicates = "error",
    user_ids: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
    n_threads: int | None = None,
    where: str = "",
    finite: bool = False,
    consume: bool = False,
) -> CSRArrays:
    """``(indptr, indices, float32 values, timestamps)`` of ratings in any order, given as
    user and item indices (:func:`mfkit.data.assemble_csr` wraps them in the container).

    A stable counting sort by (user, item) (skipped when the input is already in that
    order) and parallel gathers; repeated pairs are refused or combined per ``duplicates``
    (``'last'`` is the last in input order). ``finite``: the caller vouches that the values
    are finite float32 (the check is then skipped unless duplicates were combined). The input
    arrays are not kept; callers that
    pass their only reference let each one be freed once its sorted copy exists.
    ``consume``: the caller gives the input arrays up, and the writable ones may be
    overwritten and their memory reused for the output (fewer new pages to fault in, a lower
    peak). ``where`` prefixes the duplicate error (a file name)."""
    if duplicates not in DUPLICATE_CHOICES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_CHOICES}, got {duplicates!r}")
    n_users, n_items = shape
    nt = resolve_n_threads(n_threads)
    i_idx = np.ascontiguousarray(i_idx, dtype=np.int32)
    u_idx = np.ascontiguousarray(u_idx, dtype=np.int32)
    # buckets of 2**shift users, narrower when the item indices leave fewer than shift
    # bits of the 32-bit key (one user per bucket at worst: items need at most 31 bits)
    item_bits = max(n_items - 1, 0).bit_length()
    shift = min(((n_users - 1) // _MAX_BUCKETS).bit_length() if n_users else 0, 32 - item_bits)
    buckets = _PLACEMENT == "buckets"
    indptr, in_order, _, pos = _assemble.csr_counts(
        u_idx, i_idx, n_users, n_items, nt, shift if buckets else -1
    )
    if not in_order:
        if values.dtype not in (np.float32, np.float64):
            values = values.astype(np.float64)
        values = np.ascontiguousarray(values)
        if timestamps is not None:
            timestamps = np.ascontiguousarray(timestamps, np.int64)
        placed = None
        if pos is not None:
            placed = _place_by_buckets(
                u_idx, i_idx, values, timestamps, indptr, pos, shift, item_bits, nt, consume
            )
        del pos
        if placed is None:
            placed = _place_by_permutation(u_idx, i_idx, values, timestamps, n_users, n_items, nt)
        i_idx, values, timestamps = placed
        del placed
    del u_idx
    n_dup, first_dup = _assemble.first_duplicate(indptr, i_idx, nt)
    if n_dup:
        if duplicates == "error":
            row = int(np.searchsorted(indptr, first_dup, side="right") - 1)
            uo = (user_ids[row] if user_ids is not None else np.int64(row)).item()
            io = (item_ids[i_idx[first_dup]] if item_ids is not None else i_idx[first_dup]).item()
            raise ValueError(
                f"{where}{': ' if where else ''}duplicate rating for user {uo!r}, item {io!r} "
                f"({n_dup} duplicate pairs in all); pass duplicates='mean', 'last' or 'sum' "
                f"to combine them"
            )
        u_s = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
        same = (u_s[1:] == u_s[:-1]) & (i_idx[1:] == i_idx[:-1])
        start = np.concatenate(([True], ~same))
        first = np.flatnonzero(start)
        last = np.concatenate((first[1:], [len(i_idx)])) - 1
        if duplicates == "last":
            values = values[last]
        else:
            group = np.cumsum(start) - 1
            sums = np.bincount(group, weights=values.astype(np.float64)).astype(np.float64)
            values = sums / np.bincount(group) if duplicates == "mean" else sums
        timestamps = None if timestamps is None else timestamps[last]
        u_s, i_idx = u_s[first], i_idx[first]
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(u_s, minlength=n_users), out=indptr[1:])
    with np.errstate(over="ignore"):  # an overflow is reported just below
        vals32 = np.asarray(values, dtype=np.float32)
    # a finite double may overflow float32, and so may a sum of duplicates
    if (n_dup or not finite or vals32 is not values) and not np.all(np.isfinite(vals32)):
        raise ValueError("ratings overflow float32 (after combining duplicates); rescale them")
    return indptr, i_idx, vals32, timestamps


# How ratings out of (user, item) order are put in order: "buckets" (the columns moved by
# bucket of users, then each bucket ordered in the cache) or "permutation" (a stable LSD
# radix sort's permutation, then a gather of each column: what earlier releases did, and
# the fallback when one bucket would need too much scratch). Benchmarks switch it to
# compare.
_PLACEMENT = "buckets"
_MAX_BUCKETS = 1024  # buckets of 2**shift users, at most this many (write streams)
_RADIX_BITS = 11  # the widest digit of the radix sort of a bucket

Placed = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def _words(a: np.ndarray) -> np.ndarray:
    """A 4- or 8-byte column as unsigned words of its width (the kernels move bits)."""
    return a.view(np.uint32 if a.dtype.itemsize == 4 else np.uint64)


def _place_by_buckets(
    u: np.ndarray,
    i: np.ndarray,
    values: np.ndarray,
    timestamps: np.ndarray | None,
    indptr: np.ndarray,
    pos: np.ndarray,
    shift: int,
    item_bits: int,
    nt: int,
    consume: bool = False,
) -> Placed | None:
    """(items, values, timestamps) in (user, item) order, stably, by the bucket placement
    of :mod:`mfkit.data._assemble` (buckets of ``2**shift`` users, ``pos`` from
    ``csr_counts``); None when the largest bucket (a user with most of the ratings) would
    need more scratch than the permutation does. ``consume``: the inputs are given up; with
    timestamps, the placed items and values are written into the timestamps' old memory (two
    halves of it), so only the placed timestamps need new memory; without, the items go
    where the values were."""
    n = len(u)
    edges = indptr[np.minimum(np.arange(pos.shape[1] + 1) << shift, len(indptr) - 1)]
    biggest = int(np.diff(edges).max()) if len(edges) > 1 else 0
    if biggest >= 2**31 or 16 * min(nt, pos.shape[1]) * biggest > 8 * n + (1 << 24):
        return None
    reuse = consume and values.dtype == np.float32
    reuse = reuse and all(a.flags.writeable for a in (u, i, values))
    t2: np.ndarray | None = None
    spare: dict[str, np.ndarray | None] = {"i": None, "v": None}
    if timestamps is not None:
        t2 = _assemble.bucket_scatter(_words(timestamps), u, shift, pos)
        if reuse and timestamps.flags.writeable:
            halves = timestamps.view(np.uint32)  # 2n words: items, then values
            spare = {"i": halves[:n], "v": halves[n:]}
        del timestamps
    v2 = _assemble.bucket_scatter(_words(values), u, shift, pos, spare["v"])
    if reuse and spare["i"] is None:  # no timestamps: the keys go where the values were
        spare["i"] = values.view(np.uint32)
    keys = _assemble.bucket_keys(u, i, shift, item_bits, pos, spare["i"])
    del spare
    cols = [v2] if t2 is None else [v2, t2]
    _assemble.bucket_rows(keys, indptr, shift, item_bits, cols, nt, _RADIX_BITS)
    return keys.view(np.int32), v2.view(values.dtype), None if t2 is None else t2.view(np.int64)


def _place_by_permutation(
    u: np.ndarray,
    i: np.ndarray,
    values: np.ndarray,
    timestamps: np.ndarray | None,
    n_users: int,
    n_items: int,
    nt: int,
) -> Placed:
    """The same as :func:`_place_by_buckets` through a permutation and gathers."""
    _, perm = _assemble.csr_order(u, i, n_users, n_items, nt)
    if perm is None:  # not reached: the callers place ratings that are out of order
        return i, values, timestamps
    i = _assemble.take(i, perm, nt)
    values = _assemble.take(values, perm, nt)
    if timestamps is not None:
        timestamps = _assemble.take(timestamps, perm, nt)
    return i, values, timestamps


def pairs_to_csr(rows: Any, cols: Any, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr int64, indices int32)`` of the (row, col) pairs, sorted by row then col
    (pairs are kept as given: no de-duplication)."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    order = np.lexsort((cols, rows))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, cols[order].astype(np.int32)


def sorted_unique(a: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """The distinct values of ``a`` in sorted order, by one sort (several times faster than
    the hash-based ``np.unique`` of recent NumPy on millions of integer keys; same result).
    ``overwrite=True`` sorts a writable ``a`` in place instead of a copy."""
    s = np.asarray(a).ravel()
    if overwrite and s.flags.writeable:
        s.sort()
    else:
        s = np.sort(s)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


_FAULTS = {
    1: "item index out of range",
    2: "item indices not sorted and distinct within a user",
    3: "a rating is NaN or infinite",
}


def check_csr_structure(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray | None, n_cols: int
) -> str | None:
    """What is wrong with a CSR structure (row pointer, column range, sorted distinct
    columns per row, finite values when given), or None. O(nnz), in a parallel kernel."""
    if len(indptr) == 0 or indptr[0] != 0 or indptr[-1] != len(indices):
        return "indptr does not run from 0 to the number of ratings"
    if np.any(indptr[1:] < indptr[:-1]):
        return "indptr decreases"
    fault, pos = _assemble.check_csr(
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(indices, dtype=np.int32),
        None if values is None else np.ascontiguousarray(values, dtype=np.float32),
        int(n_cols),
        resolve_n_threads(None),
    )
    if fault:
        return f"{_FAULTS[fault]} (at rating {pos})"
    return None
