"""Validation scores on the cluster for fits whose factors stay there (``keep_on_cluster=True``).

One machine scores ``validation`` as ``err = predict(u, i) - r`` over the validation ratings
in the CSR order of ``as_ratings(validation)`` (users, then items, by their sorted ids), then
``sqrt(mean(err * err))`` and ``mean(|err|)``. Here:

1. The validation partitions are summarised and split into *validation shards* exactly as
   the training ratings are (sorted id maps of their own, contiguous users of about equal
   rating counts, CSR per shard), so shard ``v`` holds the positions ``offset_v ..`` of that
   order; each is mapped once to the training indices (-1: an id not seen in training,
   predicted by the baseline as one machine predicts it) and stays on its worker.
2. After every epoch each validation shard receives from the factor shards only the rows
   its pairs name and predicts them with the kernel one machine uses.
3. ``numpy.mean`` is NumPy's pairwise sum (blocks of up to 128 values summed with eight
   accumulators, larger runs halved at a multiple of 8) divided by the count. The client
   walks that summation tree over the global positions (:func:`pairwise_plan`): a subtree
   inside one shard is summed there by NumPy itself, and the few leaves of at most 128
   values that straddle two shards are sent whole and summed on the client in the same
   order. So the client receives a few numbers per shard, and the scores have the bits of
   one machine's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mfkit._core._common import predict_pairs
from mfkit.data import IdMap
from mfkit.distributed import _tasks
from mfkit.distributed._cluster import gather_within

#: NumPy's pairwise summation: the largest block summed without halving, and the unroll
_PW_BLOCK = 128
_PW_UNROLL = 8

#: one request to a shard: (start, stop, raw) in its own positions; raw: the values, else
#: their ``numpy.add.reduce``
Request = tuple[int, int, bool]


def _leaf(values: list[float]) -> float:
    """NumPy's pairwise sum of at most 128 values, in Python floats (IEEE doubles)."""
    n = len(values)
    if n < _PW_UNROLL:
        res = 0.0
        for x in values:
            res += x
        return res
    r = values[:_PW_UNROLL]
    i = _PW_UNROLL
    while i < n - n % _PW_UNROLL:
        for j in range(_PW_UNROLL):
            r[j] += values[i + j]
        i += _PW_UNROLL
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for x in values[i:]:
        res += x
    return res


def _walk(lo: int, hi: int, bounds: np.ndarray, sums: Any, raws: Any) -> Any:
    """The pairwise sum of positions ``lo:hi`` (split across shards at ``bounds``) from
    ``sums(shard, start, stop)`` of runs inside one shard and ``raws(start, stop)`` of the
    leaves across shards."""
    s = int(np.searchsorted(bounds, lo, side="right")) - 1
    if hi <= bounds[s + 1]:
        return sums(s, lo - int(bounds[s]), hi - int(bounds[s]))
    m = hi - lo
    if m <= _PW_BLOCK:
        return raws(lo, hi)
    half = m // 2
    half -= half % _PW_UNROLL
    return _walk(lo, lo + half, bounds, sums, raws) + _walk(lo + half, hi, bounds, sums, raws)


def _raw_pieces(lo: int, hi: int, bounds: np.ndarray) -> list[tuple[int, int, int]]:
    first = int(np.searchsorted(bounds, lo, side="right")) - 1
    out = []
    s = first
    while s < len(bounds) - 1 and bounds[s] < hi:
        a, b = max(lo, int(bounds[s])), min(hi, int(bounds[s + 1]))
        if a < b:
            out.append((s, a - int(bounds[s]), b - int(bounds[s])))
        s += 1
    return out


def pairwise_plan(bounds: np.ndarray) -> list[list[Request]]:
    """What each shard of positions ``bounds[s]:bounds[s + 1]`` contributes to NumPy's
    pairwise sum of all ``bounds[-1]`` values."""
    plan: list[list[Request]] = [[] for _ in range(len(bounds) - 1)]

    def sums(s: int, a: int, b: int) -> float:
        plan[s].append((a, b, False))
        return 0.0

    def raws(lo: int, hi: int) -> float:
        for s, a, b in _raw_pieces(lo, hi, bounds):
            plan[s].append((a, b, True))
        return 0.0

    _walk(0, int(bounds[-1]), bounds, sums, raws)
    return plan


def pairwise_total(bounds: np.ndarray, answers: list[list[Any]]) -> float:
    """NumPy's pairwise sum from the shards' ``answers`` to :func:`pairwise_plan`'s requests
    (in order): ``numpy.add.reduce`` of the whole array, bit for bit."""
    taken = [0] * len(answers)

    def take(s: int) -> Any:
        got = answers[s][taken[s]]
        taken[s] += 1
        return got

    def sums(s: int, a: int, b: int) -> float:
        return float(take(s))

    def raws(lo: int, hi: int) -> float:
        values: list[float] = []
        for s, _, _ in _raw_pieces(lo, hi, bounds):
            values.extend(float(x) for x in take(s))
        return _leaf(values)

    return float(_walk(0, int(bounds[-1]), bounds, sums, raws))


def answer(values: np.ndarray, requests: list[Request]) -> list[Any]:
    """A shard's answers to its requests: partial pairwise sums, or the values themselves."""
    return [
        values[a:b].copy() if raw else float(np.add.reduce(values[a:b])) for a, b, raw in requests
    ]


def map_validation(
    shard: _tasks.Shard,
    first_row: int,
    val_maps: tuple[np.ndarray, np.ndarray],
    train_maps: tuple[np.ndarray, np.ndarray],
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A validation shard as one machine's validation arrays: (training user index, training
    item index, rating as float64) in CSR order, -1 for an id not seen in training."""
    indptr, indices, values = shard
    n = len(indptr) - 1
    rows = np.repeat(np.arange(first_row, first_row + n, dtype=np.int64), np.diff(indptr))
    users = IdMap(train_maps[0], shape[0]).lookup(val_maps[0][rows], "validation user ids")
    items = IdMap(train_maps[1], shape[1]).lookup(val_maps[1][indices], "validation item ids")
    return (
        np.asarray(users, dtype=np.int64),
        np.asarray(items, dtype=np.int64),
        values.astype(np.float64),
    )


def score_shard(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    mu: float,
    requests: list[Request],
    n_user_pieces: int,
    *pieces: tuple[np.ndarray, np.ndarray, np.ndarray | None],
) -> tuple[list[Any], list[Any]]:
    """One validation shard's answers for the squared and the absolute errors of its
    predictions (the kernel and arithmetic of one machine's validation scorer)."""
    u, i, r = pairs
    P, bu, lu = _tasks._local_rows(pieces[:n_user_pieces], u)
    Q, bi, li = _tasks._local_rows(pieces[n_user_pieces:], i)
    empty = np.empty(0, dtype=P.dtype)
    out = np.empty(len(u), dtype=np.float64)
    predict_pairs(
        P, Q, empty if bu is None else bu, empty if bi is None else bi, mu, lu, li, out, 1
    )
    err = out - r
    return answer(err * err, requests), answer(np.abs(err), requests)


class ClusterValidation:
    """Validation ratings resident on the workers, scored against resident factor parts."""

    def __init__(
        self,
        client: Any,
        shards: list[Any],
        bounds: np.ndarray,
        edges: tuple[np.ndarray, np.ndarray],
        mu: float,
        timeout: float,
    ) -> None:
        self.client, self.shards, self.bounds = client, shards, bounds
        self.edges, self.mu, self.timeout = edges, mu, timeout
        self.plan = pairwise_plan(bounds)
        self.n = int(bounds[-1])

    def score(self, parts: tuple[list[Any], list[Any]]) -> dict[str, float]:
        """``val_rmse`` and ``val_mae`` of the factors ``parts``, as one machine scores them."""
        client = self.client
        futures = []
        for v, shard in enumerate(self.shards):
            pieces = [
                client.submit(_tasks.rows_for, f, shard, side, int(e[s]), int(e[s + 1]), pure=False)
                for side, e in enumerate(self.edges)
                for s, f in enumerate(parts[side])
            ]
            futures.append(
                client.submit(
                    score_shard,
                    shard,
                    self.mu,
                    self.plan[v],
                    len(parts[0]),
                    *pieces,
                    pure=False,
                )  # fmt: skip
            )
        got = gather_within(futures, self.timeout, "scoring the validation ratings", self.client)
        sq = pairwise_total(self.bounds, [g[0] for g in got])
        ab = pairwise_total(self.bounds, [g[1] for g in got])
        return {"val_rmse": float(np.sqrt(sq / self.n)), "val_mae": float(ab / self.n)}

    def release(self) -> None:
        self.shards.clear()


def validation_on_cluster(
    client: Any,
    validation: Any,
    cols: tuple[str, str, str],
    train_maps: Any,
    shape: tuple[int, int],
    edges: tuple[np.ndarray, np.ndarray],
    n_shards: int,
    mu: float,
    timeout: float,
    cut: Any,
) -> ClusterValidation:
    """``validation`` (a Dask DataFrame) summarised, split into validation shards and
    mapped to the training indices on the workers (``train_maps``: a task of the training
    (user ids, item ids); ``cut(counts, n)``: the shard edges of users of ``counts``)."""
    import dask

    delayed = dask.delayed
    missing = [c for c in cols if c not in validation.columns]
    if missing:
        raise ValueError(
            f"validation has no column(s) {missing}; it has {list(validation.columns)}; "
            f"give it the columns of data"
        )
    parts = validation[list(cols)].to_delayed()
    names = [f"validation partition {p}" for p in range(len(parts))]
    summaries = [
        delayed(_tasks.partition_summary)(part, w, cols)
        for part, w in zip(parts, names, strict=True)
    ]
    info_future = client.compute(delayed(_tasks.merge_summaries)(*summaries))
    info = gather_within([info_future], timeout, "summarising the validation ratings", client)[0]
    if info["n"] == 0:
        raise ValueError("validation has no ratings; pass None or some ratings")
    counts = info["user_counts"]
    bounds = (
        cut(counts, min(n_shards, len(counts))),
        np.array([0, len(info["items"])], dtype=np.int64),
    )
    val_maps = delayed(_tasks.id_maps_of)(info_future)
    splits = [
        delayed(_tasks.split_partition, pure=True)(part, w, cols, val_maps, bounds)
        for part, w in zip(parts, names, strict=True)
    ]
    graphs = []
    e = bounds[0]
    for s, (a, b) in enumerate(zip(e[:-1], e[1:], strict=True)):
        pieces = [delayed(_tasks.pick, pure=True)(sp, 0, s) for sp in splits]
        shard = delayed(_tasks.assemble_shard, pure=True)(
            int(b - a), len(info["items"]), f"validation user shard {s}", val_maps, 0, int(a),
            *pieces,
        )  # fmt: skip
        graphs.append(
            delayed(map_validation, pure=True)(shard, int(a), val_maps, train_maps, shape)
        )
    shards = client.compute(graphs)
    csr = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
    gather_within(
        [client.submit(len, f) for f in shards], timeout, "building the validation shards", client
    )
    return ClusterValidation(client, list(shards), csr[e], edges, mu, timeout)


__all__ = [
    "ClusterValidation",
    "answer",
    "map_validation",
    "pairwise_plan",
    "pairwise_total",
    "score_shard",
    "validation_on_cluster",
]
