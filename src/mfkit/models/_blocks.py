"""How an SGD or SVD++ fit lays out its ratings: the packed record array, the number of
blocks ``blocks='auto'`` picks, the seeded user and item groups, the block layout of the
stratified record epoch, the row layout of the row-grouped epoch, and each epoch's plan."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from mfkit._core import _common
from mfkit._core.validation import check_choice, check_number
from mfkit.data import Ratings
from mfkit.models import _sgd_layout

#: one rating as the SGD kernels read it: user index, item index, rating (12 bytes, packed)
RATING_DTYPE = np.dtype([("u", "<i4"), ("i", "<i4"), ("r", "<f4")])


def rating_records(X: Ratings, n_threads: int = 1) -> np.ndarray:
    """The ratings of ``X`` as packed records in CSR order (a new, writable array), written
    in one pass over the CSR arrays (the one-block layout; no per-rating user index)."""
    rec = np.empty(X.nnz, dtype=RATING_DTYPE)
    _sgd_layout.build_blocks(
        X.indptr,
        X.indices,
        X.values,
        np.zeros(X.n_users, dtype=np.int32),
        np.zeros(X.n_items, dtype=np.int32),
        1,
        rec,
        np.empty(2, dtype=np.int64),
        n_threads=int(n_threads),
    )
    return rec


#: ``blocks='auto'`` keeps the serial path (B = 1) below this many training ratings ...
AUTO_BLOCKS_MIN_RATINGS = 500_000
#: ... and uses this many user and item groups from there on (fewer for narrow matrices)
AUTO_BLOCKS = 32
#: users (items) move between groups in runs of this many consecutive rows
GROUP_CHUNK = 16
#: largest accepted B (the layout keeps B*B block offsets)
MAX_BLOCKS = 1024
#: ``'auto'`` doubles B (up to ``AUTO_BLOCKS_MAX``) while one group's factor rows exceed this,
#: so the rows a block works on stay in a core's L2 cache instead of main memory
AUTO_GROUP_BYTES = 1 << 20
AUTO_BLOCKS_MAX = 256


def resolve_blocks(
    blocks: int | str, n_ratings: int, n_users: int, n_items: int, row_bytes: int = 256
) -> int:
    """The block count B a fit uses: ``blocks`` itself, or for ``'auto'`` 1 below
    ``AUTO_BLOCKS_MIN_RATINGS`` ratings and otherwise ``AUTO_BLOCKS``, doubled (up to
    ``AUTO_BLOCKS_MAX``) while a group's factor rows (``row_bytes`` each: k times the
    factor size) take more than ``AUTO_GROUP_BYTES``, then reduced so that every group gets
    at least four runs of ``GROUP_CHUNK`` rows (and 1 when that leaves fewer than 2 groups).
    Depends on the data shape, k and dtype, never on the thread count, so neither do the
    factors. (Netflix shape at k=64 float32: 128; MovieLens-10M: 32.)"""
    if isinstance(blocks, str):
        check_choice(blocks, "blocks", ("auto",))
        if n_ratings < AUTO_BLOCKS_MIN_RATINGS:
            return 1
        B = AUTO_BLOCKS
        while B < AUTO_BLOCKS_MAX and max(n_users, n_items) * row_bytes > B * AUTO_GROUP_BYTES:
            B *= 2
        B = min(B, min(n_users, n_items) // (4 * GROUP_CHUNK))
        return B if B >= 2 else 1
    return int(check_number(blocks, "blocks", low=1, high=MAX_BLOCKS, integer=True))


#: ``blocks='auto'`` for SVD++ (``implicit_feedback=True``): B = 1 below this many ratings,
#: else ``SVDPP_AUTO_BLOCKS`` user and item groups (fewer for narrow matrices)
SVDPP_AUTO_BLOCKS_MIN_RATINGS = 20_000
SVDPP_AUTO_BLOCKS = 4
#: SVD++ user chunks: at most this much coupling (see :func:`svdpp_chunks`) per chunk
SVDPP_CHUNK_COUPLING = 128


def resolve_svdpp_blocks(blocks: int | str, n_ratings: int, n_users: int, n_items: int) -> int:
    """The block count B of an SVD++ fit: ``blocks`` itself, or for ``'auto'`` 1 below
    ``SVDPP_AUTO_BLOCKS_MIN_RATINGS`` ratings and otherwise ``SVDPP_AUTO_BLOCKS``, reduced
    so that every group keeps at least four runs of ``GROUP_CHUNK`` rows (1 when that
    leaves fewer than 2). An SVD++ epoch synchronises its threads B + 1 times per user
    chunk, so B stays small. Never depends on the thread count."""
    if isinstance(blocks, str):
        check_choice(blocks, "blocks", ("auto",))
        if n_ratings < SVDPP_AUTO_BLOCKS_MIN_RATINGS:
            return 1
        B = min(SVDPP_AUTO_BLOCKS, min(n_users, n_items) // (4 * GROUP_CHUNK))
        return B if B >= 2 else 1
    return int(check_number(blocks, "blocks", low=1, high=MAX_BLOCKS, integer=True))


def svdpp_chunks(user_counts: np.ndarray, n_items: int) -> int:
    """The number C of user chunks of an SVD++ fit (the implicit factors y are brought up to
    date after every chunk; :mod:`mfkit.models._svdpp`).

    The users of one chunk all see the y of the chunk's start, and their steps on a shared
    y_j add up before any of them sees the others'. How much they add up is measured by the
    chunk's coupling ``sum over its users of |N(u)|^2 / n_items`` (the mean, over items, of
    the ratings of the raters of an item in the chunk; it sets the curvature of the loss in
    the common direction of the y). C is the smallest number of rating-balanced chunks that
    keeps it at most ``SVDPP_CHUNK_COUPLING``: ``ceil(sum |N(u)|^2 / (128 n_items))``,
    between 1 and the number of users. The steps went astray from a coupling of about 1,500
    on MovieLens-100K and of 500 on a small dense synthetic set (at Surprise's SVD++
    settings), and matched the one-user-per-chunk sweep at 128; smaller chunks only cost
    synchronisation. Depends on the data only."""
    counts = np.asarray(user_counts, dtype=np.float64)
    n_users = len(counts)
    if n_users == 0 or n_items == 0:
        return 1
    coupling = float(counts @ counts) / n_items
    return int(max(1, min(n_users, math.ceil(coupling / SVDPP_CHUNK_COUPLING))))


#: SVD++ runs its epoch on ``n_threads`` threads only when the threads have at least this
#: many rating-factor updates (ratings x k) to share between two synchronisations
SVDPP_PARALLEL_WORK = 65_536


def svdpp_threads(n_threads: int, n_ratings: int, k: int, C: int, B: int) -> int:
    """The threads an SVD++ epoch uses: ``n_threads``, or 1 when the work between two
    synchronisations (``n_ratings * k / (C * (B + 1))``: B strata and the implicit pass per
    chunk) is below ``SVDPP_PARALLEL_WORK`` (about 0.1 ms on one core), where waking the
    other threads would cost more than it saves; on a machine whose cores are busy with
    other work a synchronisation can take a millisecond. The factors are the same either
    way."""
    work = n_ratings * k / (C * (B + 1))
    return n_threads if work >= SVDPP_PARALLEL_WORK else 1


def balanced_groups(counts: np.ndarray, B: int, seed: int, chunk: int = GROUP_CHUNK) -> np.ndarray:
    """Split rows into B groups holding about the same number of ratings.

    Rows move in runs of ``chunk`` consecutive indices, so that two threads never write to
    the same cache line of a factor, bias or accumulator array (and a group's rows fill
    whole memory pages). The runs are put in a seeded random order (splitmix64
    Fisher-Yates from ``seed``) and cut where the running rating count crosses multiples
    of ``total / B``: a run goes to group ``floor(B * (ratings before it + half its own) /
    total)``. Each group then holds ``total / B`` ratings up to about one run's count.
    Returns int32 group numbers, one per row.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = len(counts)
    n_chunks = -(-n // chunk)
    c = np.add.reduceat(counts, np.arange(0, n, chunk)) if n else counts
    order = np.arange(n_chunks, dtype=np.int64)
    _common.shuffle_inplace(order, int(seed) & 0xFFFFFFFFFFFFFFFF)
    c = c[order]
    total = int(c.sum())
    chunk_group = np.empty(n_chunks, dtype=np.int32)
    if total == 0:
        chunk_group[order] = (np.arange(n_chunks) * B // max(n_chunks, 1)).astype(np.int32)
    else:
        mid = (np.cumsum(c) - c).astype(np.float64) + 0.5 * c
        g = np.minimum(np.floor(mid * (B / total)).astype(np.int64), B - 1)
        chunk_group[order] = g.astype(np.int32)
    return np.repeat(chunk_group, chunk)[:n]


class BlockLayout(NamedTuple):
    """Ratings stored block by block for the stratified epoch.

    Block ``b = s * B + g`` holds the ratings of user group ``g`` and item group
    ``(g + s) % B``, in ``records[offsets[b]:offsets[b + 1]]``; stratum ``s`` is the
    contiguous run of blocks ``s*B .. s*B + B - 1``, which share no user and no item.
    """

    records: np.ndarray
    offsets: np.ndarray
    user_groups: np.ndarray
    item_groups: np.ndarray
    B: int

    @property
    def nbytes(self) -> int:
        return int(self.records.nbytes + self.offsets.nbytes)


def block_layout(
    X: Ratings,
    B: int,
    user_seed: int,
    item_seed: int,
    n_threads: int = 1,
    item_counts: np.ndarray | None = None,
) -> BlockLayout:
    """Group users and items (:func:`balanced_groups`) and scatter the ratings of ``X`` into
    the B x B blocks (within a block in CSR order) on ``n_threads`` threads (the layout does
    not depend on them). ``item_counts``: ``X.item_counts()`` when the caller has it.
    ``SGD.fit`` calls this once per fit."""
    B = int(check_number(B, "B", low=1, high=MAX_BLOCKS, integer=True))
    ug = balanced_groups(X.user_counts(), B, user_seed)
    ig = balanced_groups(X.item_counts() if item_counts is None else item_counts, B, item_seed)
    records = np.empty(X.nnz, dtype=RATING_DTYPE)
    offsets = np.empty(B * B + 1, dtype=np.int64)
    _sgd_layout.build_blocks(
        X.indptr, X.indices, X.values, ug, ig, B, records, offsets, n_threads=int(n_threads)
    )
    return BlockLayout(records, offsets, ug, ig, B)


def epoch_schedule(seed: int, B: int) -> tuple[np.ndarray, np.ndarray]:
    """The plan of one stratified epoch drawn from ``seed``: ``(strata, block_seeds)``.

    ``strata`` is the visiting order of the B strata (a splitmix64 Fisher-Yates permutation
    of ``0..B-1``); ``block_seeds[b]`` seeds the in-place Fisher-Yates shuffle of block b
    (the same splitmix64 shuffle as the serial path's) just before it is swept.
    """
    return _sgd_layout.epoch_schedule(np.uint64(seed), int(B))


#: the visiting orders of ``SGD(order=...)``
#: ``order='auto'`` is ``'rows'`` for plain SGD (SVD++ visits its ratings in its own block order)
ORDERS = ("auto", "shuffle", "rows")
#: ``order='rows'``, ``blocks='auto'``: B = 1 below ``AUTO_BLOCKS_MIN_RATINGS`` ratings, else
#: ``ROWS_AUTO_BLOCKS`` groups, doubled (up to ``AUTO_BLOCKS_MAX``) while one item group's
#: factor rows and scalars exceed ``ROWS_GROUP_BYTES`` (one core's L2 cache on the Zen 4
#: machine mfkit is measured on). Each (user, block) visit costs about as much as a few
#: ratings, so larger groups won over groups of half an L2: at k=64 on the MovieLens-10M
#: shape B=4 ran 1.1x as fast as B=8 on one and two threads, and on the Netflix shape B=8
#: 1.08x as fast as B=16 (``benchmarks/bench_kernels.py --large --blocks``)
ROWS_AUTO_BLOCKS = 4
ROWS_GROUP_BYTES = 1 << 20


def resolve_row_blocks(
    blocks: int | str, n_ratings: int, n_users: int, n_items: int, row_bytes: int = 256
) -> int:
    """The block count B of an ``order='rows'`` fit: ``blocks`` itself, or for ``'auto'`` 1
    below ``AUTO_BLOCKS_MIN_RATINGS`` ratings and otherwise ``ROWS_AUTO_BLOCKS``, doubled
    (up to ``AUTO_BLOCKS_MAX``) while an item group's rows (``row_bytes`` plus 16 bytes of
    scalars per item) take more than ``ROWS_GROUP_BYTES``, then reduced so that every group
    gets at least four runs of ``GROUP_CHUNK`` rows (1 when that leaves fewer than 2). Fewer
    blocks than the shuffled order's: a user's ratings in one block are walked with its row
    held in the first level cache, so the user side wants long runs, and only the item
    group has to fit in L2. Never depends on the thread count. (MovieLens-10M shape at k=64
    float32: 4; Netflix shape: 8.)"""
    if isinstance(blocks, str):
        check_choice(blocks, "blocks", ("auto",))
        if n_ratings < AUTO_BLOCKS_MIN_RATINGS:
            return 1
        B = ROWS_AUTO_BLOCKS
        while B < AUTO_BLOCKS_MAX and n_items * (row_bytes + 16) > B * ROWS_GROUP_BYTES:
            B *= 2
        B = min(B, min(n_users, n_items) // (4 * GROUP_CHUNK))
        return B if B >= 2 else 1
    return int(check_number(blocks, "blocks", low=1, high=MAX_BLOCKS, integer=True))


def range_groups(counts: np.ndarray, B: int, chunk: int = GROUP_CHUNK) -> np.ndarray:
    """Split rows into B groups of consecutive indices holding about the same number of
    ratings: the runs of ``chunk`` consecutive rows in index order, a run going to group
    ``floor(B * (ratings before it + half its own) / total)`` (as :func:`balanced_groups`
    but without the shuffle, so the groups are contiguous ranges and the group number does
    not decrease with the row). Returns int32 group numbers, one per row."""
    counts = np.asarray(counts, dtype=np.int64)
    n = len(counts)
    n_chunks = -(-n // chunk)
    c = np.add.reduceat(counts, np.arange(0, n, chunk)) if n else counts
    total = int(c.sum())
    if total == 0:
        chunk_group = (np.arange(n_chunks) * B // max(n_chunks, 1)).astype(np.int32)
    else:
        mid = (np.cumsum(c) - c).astype(np.float64) + 0.5 * c
        g = np.minimum(np.floor(mid * (B / total)).astype(np.int64), B - 1)
        chunk_group = g.astype(np.int32)
    return np.repeat(chunk_group, chunk)[:n]


class RowLayout(NamedTuple):
    """What the row-grouped epoch (``order='rows'``) keeps besides the CSR arrays.

    Users in B groups (:func:`balanced_groups`), group g's users ascending in
    ``group_users[group_ptr[g]:group_ptr[g + 1]]``; items in B contiguous ranges
    (:func:`range_groups`); ``segments[u, g]`` the CSR position of user u's first rating in
    item group g or later (``segments[u, B]`` the end of the row), so the user's ratings in
    block (user group of u, item group g) are ``indices[segments[u, g]:segments[u, g+1]]``.
    """

    segments: np.ndarray
    group_users: np.ndarray
    group_ptr: np.ndarray
    user_groups: np.ndarray
    item_groups: np.ndarray
    B: int

    @property
    def nbytes(self) -> int:
        return int(self.segments.nbytes + self.group_users.nbytes + self.group_ptr.nbytes)


def row_layout(X: Ratings, B: int, user_seed: int, n_threads: int = 1) -> RowLayout:
    """The :class:`RowLayout` of ``X`` for B groups (user groups seeded by ``user_seed``);
    n_users x (B + 1) x 8 bytes of run starts plus 4 bytes per user. Does not depend on
    ``n_threads``. ``SGD.fit`` with ``order='rows'`` calls this once per fit."""
    B = int(check_number(B, "B", low=1, high=MAX_BLOCKS, integer=True))
    ug = balanced_groups(X.user_counts(), B, user_seed)
    ig = range_groups(X.item_counts(), B)
    segments = np.empty((X.n_users, B + 1), dtype=np.int64)
    _sgd_layout.row_segments(X.indptr, X.indices, ig, B, segments, n_threads=int(n_threads))
    group_users = np.argsort(ug, kind="stable").astype(np.int32)
    group_ptr = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(np.bincount(ug, minlength=B), out=group_ptr[1:])
    return RowLayout(segments, group_users, group_ptr, ug, ig, B)


__all__ = [
    "RATING_DTYPE",
    "rating_records",
    "AUTO_BLOCKS_MIN_RATINGS",
    "AUTO_BLOCKS",
    "GROUP_CHUNK",
    "MAX_BLOCKS",
    "AUTO_GROUP_BYTES",
    "AUTO_BLOCKS_MAX",
    "resolve_blocks",
    "SVDPP_AUTO_BLOCKS_MIN_RATINGS",
    "SVDPP_AUTO_BLOCKS",
    "SVDPP_CHUNK_COUPLING",
    "resolve_svdpp_blocks",
    "svdpp_chunks",
    "SVDPP_PARALLEL_WORK",
    "svdpp_threads",
    "balanced_groups",
    "BlockLayout",
    "block_layout",
    "epoch_schedule",
    "ORDERS",
    "ROWS_AUTO_BLOCKS",
    "ROWS_GROUP_BYTES",
    "resolve_row_blocks",
    "range_groups",
    "RowLayout",
    "row_layout",
]
