"""``regularization='auto'`` on a cluster: the single-machine held-out split, made shard by shard.

One machine holds out ``sel.random(nnz) < AUTO_VALIDATION_FRACTION`` of the ratings in CSR
order (``sel`` spawned from the model's ``random_state``, see
:mod:`mfkit.models._autoreg`). A user shard is a contiguous run of CSR rows, so its ratings
are the positions ``offset .. offset + n`` of that order, and its slice of the mask is the
draws ``offset .. offset + n`` of ``sel``'s stream. PCG64 (numpy's default bit generator)
and PCG64DXSM make one 64-bit step per ``random()`` double and can ``advance`` by any
number of steps at once, so each worker draws its own slice from the generator's state
moved on by ``offset``. Any other bit generator (a user-supplied ``Generator``) cannot: the
client then draws the slices one shard after another (the same stream, so the same bits)
and sends each, packed to a bit per rating, with its shard's split task.

Each user shard then splits on its worker into the training rows (its CSR without the held
ratings), the held ratings (the scoring set, a tenth of the ratings: gathered by the client,
or kept on the workers for fits whose factors stay there) and, for each item shard, the
(user, item) pairs it holds out. An item shard removes those pairs from its CSC, so the
training item shards are exactly the CSC of ``X.subset(~held)``, and no rating but the
held-out tenth leaves the workers.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mfkit._core.exact import exact_sum_f32
from mfkit.distributed._cluster import gather_within
from mfkit.distributed._tasks import Shard
from mfkit.models._autoreg import AUTO_VALIDATION_FRACTION

#: bit generators whose ``random()`` takes one step per double and which can ``advance``
ADVANCING: tuple[type, ...] = (np.random.PCG64, np.random.PCG64DXSM)


def can_advance(sel: np.random.Generator) -> bool:
    """Whether the workers can draw their slices of ``sel``'s mask themselves."""
    return type(sel.bit_generator) in ADVANCING


def held_slice(kind: type, state: dict[str, Any], offset: int, n: int) -> np.ndarray:
    """Draws ``offset .. offset + n`` of the held-out mask of a generator of bit generator
    ``kind`` in ``state``: ``(Generator(kind) in state).random(offset + n)[offset:] <
    AUTO_VALIDATION_FRACTION`` without drawing the first ``offset``."""
    bits = kind()
    bits.state = state
    bits.advance(offset)
    return np.random.Generator(bits).random(n) < AUTO_VALIDATION_FRACTION


def _mask(spec: tuple[Any, ...], n: int) -> np.ndarray:
    if spec[0] == "draw":
        _, kind, state, offset = spec
        return held_slice(kind, state, offset, n)
    return np.unpackbits(spec[1], count=n).astype(bool)


def split_user_shard(
    shard: Shard, spec: tuple[Any, ...], first_row: int, item_edges: np.ndarray
) -> tuple[Shard, tuple[np.ndarray, np.ndarray, np.ndarray], list[Any], dict[str, Any]]:
    """A user shard cut by its slice of the held-out mask (``spec``: ``("draw", kind,
    state, offset)`` or ``("bits", packed mask)``): (training shard, held (user, item,
    rating) in CSR order, for each item shard the held (user, item) pairs in it, the
    training ratings' summary)."""
    indptr, indices, values = shard
    n_rows = len(indptr) - 1
    held = _mask(spec, len(values))
    keep = ~held
    rows = np.repeat(np.arange(n_rows, dtype=np.int32), np.diff(indptr))
    counts = np.bincount(rows[keep], minlength=n_rows).astype(np.int64)
    train_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=train_ptr[1:])
    train_values = values[keep]
    users = rows[held] + np.int32(first_row)
    items = indices[held]
    which = np.searchsorted(item_edges, items, side="right") - 1
    pieces = [(users[which == t], items[which == t]) for t in range(len(item_edges) - 1)]
    summary = {
        "n": len(train_values),
        "sum": exact_sum_f32(train_values),
        "sum_sq": float(np.sum(np.square(train_values, dtype=np.float64))),
        "min": float(train_values.min()) if len(train_values) else None,
        "max": float(train_values.max()) if len(train_values) else None,
        "counts": counts,
    }
    return (
        (train_ptr, indices[keep], train_values),
        (users, items, values[held]),
        pieces,
        summary,
    )


def train_item_shard(
    shard: Shard, first_item: int, n_users: int, *pieces: tuple[np.ndarray, np.ndarray]
) -> tuple[Shard, np.ndarray]:
    """An item shard (CSC rows ``first_item ..``) without the held pairs ``pieces`` (from
    every user shard): (training shard, its per-item rating counts)."""
    indptr, indices, values = shard
    n_rows = len(indptr) - 1
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr))
    # (item, user) keys ascend through a CSC shard: a held pair's position by bisection
    keys = rows * np.int64(n_users) + indices
    users = np.concatenate([p[0] for p in pieces]).astype(np.int64)
    items = np.concatenate([p[1] for p in pieces]).astype(np.int64)
    pos = np.searchsorted(keys, (items - first_item) * np.int64(n_users) + users)
    keep = np.ones(len(values), dtype=bool)
    keep[pos] = False
    counts = np.bincount(rows[keep], minlength=n_rows).astype(np.int64)
    train_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=train_ptr[1:])
    return (train_ptr, indices[keep], values[keep]), counts


@dataclass
class HeldOutSplit:
    """The training shards (futures, resident on the workers) and what the client holds of
    a held-out split: the training part's per-row counts and rating statistics, and the
    held ratings as the validation arrays one machine scores."""

    shards: tuple[list[Any], list[Any]]
    user_counts: np.ndarray
    item_counts: np.ndarray
    nnz: int
    total: int
    sum_sq: float
    rating_range: tuple[float, float]
    #: gathered: the (users, items, ratings) arrays; else futures of each user shard's
    validation: Any
    #: the positions of each user shard's held ratings in the held-out order
    held_bounds: np.ndarray


def split_held_out(
    client: Any,
    sel: np.random.Generator,
    shards: tuple[list[Any], list[Any]],
    homes: tuple[list[Any], list[Any]],
    edges: tuple[np.ndarray, np.ndarray],
    user_counts: np.ndarray,
    n_users: int,
    timeout: float,
    gather: bool = True,
) -> HeldOutSplit | None:
    """The held-out split of the resident shards by ``sel``'s mask (None when it holds out
    no rating or all of them, as one machine's rule then takes the starting value). Draws
    from ``sel`` what one machine draws for the mask (nnz doubles). ``gather``: copy the
    held ratings to the client (else they stay on the workers, one part per user shard)."""
    e_u, e_i = edges
    csr = np.concatenate(([0], np.cumsum(user_counts, dtype=np.int64)))
    offsets = csr[e_u]
    state = sel.bit_generator.state if can_advance(sel) else None
    splits = []
    for s, shard in enumerate(shards[0]):
        a, b = int(offsets[s]), int(offsets[s + 1])
        if state is not None:
            spec: tuple[Any, ...] = ("draw", type(sel.bit_generator), state, a)
        else:
            spec = ("bits", np.packbits(sel.random(b - a) < AUTO_VALIDATION_FRACTION))
        where = dict(workers=homes[0][s], allow_other_workers=True)
        splits.append(
            client.submit(split_user_shard, shard, spec, int(e_u[s]), e_i, pure=False, **where)
        )
    if state is not None:
        # where one machine's draw leaves it
        sel.bit_generator.advance(int(csr[-1]))  # type: ignore[attr-defined]
    got = gather_within(
        [client.submit(_held_count, sp, pure=False) for sp in splits],
        timeout,
        "splitting off the held-out ratings",
        client,
    )
    held_counts = np.array([g[0] for g in got], dtype=np.int64)
    n_held = int(held_counts.sum())
    if n_held == 0 or n_held == csr[-1]:
        return None
    train_users = [client.submit(operator.getitem, sp, 0, pure=False) for sp in splits]
    train_items, item_counts = [], []
    for t, shard in enumerate(shards[1]):
        pieces = [client.submit(_piece, sp, t, pure=False) for sp in splits]
        both = client.submit(
            train_item_shard,
            shard,
            int(e_i[t]),
            n_users,
            *pieces,
            pure=False,
            workers=homes[1][t],
            allow_other_workers=True,
        )
        train_items.append(client.submit(operator.getitem, both, 0, pure=False))
        item_counts.append(client.submit(operator.getitem, both, 1, pure=False))
    counts = gather_within(item_counts, timeout, "splitting off the held-out ratings", client)
    summaries = [g[1] for g in got]
    rated = [x for x in summaries if x["n"]]
    held = [
        client.submit(
            validation_pairs, sp, pure=False, workers=homes[0][s], allow_other_workers=True
        )
        for s, sp in enumerate(splits)
    ]
    validation: Any = held
    if gather:
        got_held = gather_within(held, timeout, "gathering the held-out ratings", client)
        validation = tuple(np.concatenate([h[j] for h in got_held]) for j in range(3))
    return HeldOutSplit(
        shards=(train_users, train_items),
        user_counts=np.concatenate([x["counts"] for x in summaries]),
        item_counts=np.concatenate(counts),
        nnz=sum(x["n"] for x in summaries),
        total=sum(x["sum"] for x in summaries),
        sum_sq=float(sum(x["sum_sq"] for x in summaries)),
        rating_range=(min(x["min"] for x in rated), max(x["max"] for x in rated)),
        validation=validation,
        held_bounds=np.concatenate(([0], np.cumsum(held_counts))),
    )


def _held_count(split: Any) -> tuple[int, dict[str, Any]]:
    return len(split[1][2]), split[3]


def validation_pairs(split: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What one machine's validation scorer reads of ``X.subset(held)``, for one user
    shard's held ratings: row and item indices (int64) and the ratings in float64, in CSR
    order."""
    users, items, values = split[1]
    return users.astype(np.int64), items.astype(np.int64), values.astype(np.float64)


def _piece(split: Any, t: int) -> tuple[np.ndarray, np.ndarray]:
    """The held pairs of a user shard's split that fall in item shard ``t``."""
    return split[2][t]


__all__ = [
    "ADVANCING",
    "HeldOutSplit",
    "can_advance",
    "held_slice",
    "split_held_out",
    "split_user_shard",
    "train_item_shard",
    "validation_pairs",
]
