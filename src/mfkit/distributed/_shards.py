"""The resident rating shards of a fit on a Dask cluster, and the gathered half-step that
every model's cluster fit runs on them (ALS solves its rows there, BayesianMF samples them).

How the shards are made:

1. Each input partition is summarised on its worker (distinct ids with their rating counts,
   the exact rating sum, min and max); the client merges the summaries into the sorted id
   maps, so ids get the same indices as :meth:`mfkit.Ratings.from_dataframe` gives them.
2. Users and items are cut into contiguous shards of about equal rating counts; every
   partition is split by shard once and each shard assembled into CSR (users) or CSC (items)
   on a worker, where it stays for the whole fit: exactly the rows of the single-machine
   matrices, in the same order.

A gathered half-step (:class:`HalfSteps`) broadcasts the fixed side to the workers and runs
a task on every shard of the other side where the shard lives; the client writes the rows
back. A worker lost under it is survived: the task inputs are still on the client, Dask
rebuilds the lost shards from the input partitions, and the half-step runs again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mfkit.data import IdMap
from mfkit.distributed import _tasks
from mfkit.distributed._cluster import gather_within, lost_errors, pause_after_loss

#: what a fit waits for one half-step (or the preparation of the shards) before it fails
DEFAULT_TIMEOUT = 600.0
#: column names (user, item, rating)
Columns = tuple[str, str, str]


class ClusterRatings:
    """The shape, id maps and per-row rating counts of ratings that stay on a cluster."""

    def __init__(
        self,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        user_counts: np.ndarray,
        item_counts: np.ndarray,
        nnz: int,
    ) -> None:
        self.user_ids, self.item_ids = user_ids, item_ids
        self._user_counts, self._item_counts = user_counts, item_counts
        self.nnz = nnz

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.user_ids), len(self.item_ids))

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def user_map(self) -> IdMap:
        return IdMap(self.user_ids, len(self.user_ids))

    @property
    def item_map(self) -> IdMap:
        return IdMap(self.item_ids, len(self.item_ids))

    def user_counts(self) -> np.ndarray:
        return self._user_counts

    def item_counts(self) -> np.ndarray:
        return self._item_counts


def balanced_bounds(counts: np.ndarray, n_shards: int) -> np.ndarray:
    """Shard edges ``0 = e_0 < e_1 < ... = len(counts)`` cutting the rows into at most
    ``n_shards`` contiguous runs of about equal total count (no empty shard)."""
    n = len(counts)
    total = np.cumsum(counts, dtype=np.int64)
    targets = (total[-1] * np.arange(1, n_shards)) // n_shards
    cuts = np.searchsorted(total, targets, side="right")
    edges = np.unique(np.concatenate(([0], cuts, [n])))
    return edges.astype(np.int64)


def dask_modules() -> tuple[Any, Any]:
    """``(dask, distributed)``, or an ImportError naming the extra that installs them."""
    try:
        import dask
        import distributed
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise ImportError(
            f"fitting a Dask collection needs dask and distributed ({exc}); install them "
            f"with pip install 'mfkit[dask]'"
        ) from None
    return dask, distributed


def get_client(distributed: Any, client: Any) -> Any:
    """``client`` checked, or the current client; a ValueError without a cluster."""
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        return client
    try:
        return distributed.get_client()
    except ValueError:
        raise ValueError(
            "fitting a Dask collection needs a Dask cluster: start one (for example "
            "distributed.Client(distributed.LocalCluster())) or pass client="
        ) from None


def check_frame(data: Any, cols: Columns) -> None:
    """``data`` must be a Dask DataFrame with the columns ``cols``."""
    if not (hasattr(data, "to_delayed") and hasattr(data, "columns")):
        raise TypeError(
            f"data must be a dask.dataframe.DataFrame, got {type(data).__name__}; make one "
            f"from files with mfkit.distributed.read_ratings"
        )
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ValueError(
            f"DataFrame has no column(s) {missing}; it has {list(data.columns)}. Name them "
            f"with user_col=, item_col=, rating_col="
        )


def computed(validation: Any) -> Any:
    """Validation ratings on the client: a Dask DataFrame is computed (it is small)."""
    if hasattr(validation, "compute") and hasattr(validation, "to_delayed"):
        return validation.compute()
    return validation


class Resident:
    """The ratings of a fit resident on the cluster: their summary (``info``: count, exact
    sum, sum of squares, min, max, ids and counts; ``summary``: a :class:`ClusterRatings`),
    the shard edges of each side, each shard's home worker and the futures of the user
    (CSR) and item (CSC) shards."""

    def __init__(
        self,
        info: dict[str, Any],
        edges: tuple[np.ndarray, np.ndarray],
        homes: tuple[list[Any], list[Any]],
        shards: tuple[list[Any], list[Any]],
        id_maps: Any = None,
    ) -> None:
        self.info = info
        #: a task of the (user ids, item ids) that the shards were mapped with
        self.id_maps = id_maps
        self.nnz = int(info["n"])
        self.summary = ClusterRatings(
            info["users"], info["items"], info["user_counts"], info["item_counts"], self.nnz
        )
        self.edges, self.homes, self.shards = edges, homes, shards

    def release(self) -> None:
        """Drop the shards' futures (the trainers share these lists). A cancel would also
        cancel the released tasks that depend on them, which distributed does not handle
        (it drops the client's connection)."""
        for side in self.shards:
            side.clear()


def build_shards(
    client: Any, dask: Any, data: Any, cols: Columns, n_shards: int | None, timeout: float
) -> Resident:
    """Summarise the partitions, cut both sides into shards (``n_shards`` per side, default
    two per worker) and start assembling them on the workers (steps 1 and 2 above)."""
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    n_shards = 2 * n_workers if n_shards is None else n_shards
    delayed = dask.delayed
    parts = data[list(cols)].to_delayed()
    names = [f"partition {p}" for p in range(len(parts))]

    # 1. the id maps, the rating counts per user and item, the exact sum: merged on the
    # cluster from per-partition summaries (kept there as the shards' input) and copied here
    summaries = [
        delayed(_tasks.partition_summary)(part, w, cols)
        for part, w in zip(parts, names, strict=True)
    ]
    info_future = client.compute(delayed(_tasks.merge_summaries)(*summaries))
    info = gather_within([info_future], timeout, "summarising the partitions", client)[0]
    if info["n"] == 0:
        raise ValueError("data has no ratings: cannot fit an empty rating matrix")
    user_ids, item_ids = info["users"], info["items"]

    # 2. the resident shards: every partition split once, each shard assembled on a worker
    edges = (
        balanced_bounds(info["user_counts"], min(n_shards, len(user_ids))),
        balanced_bounds(info["item_counts"], min(n_shards, len(item_ids))),
    )
    # a task of the graph (not scattered data), so a lost shard can always be rebuilt
    id_maps = delayed(_tasks.id_maps_of)(info_future)
    splits = [
        delayed(_tasks.split_partition, pure=True)(part, w, cols, id_maps, edges)
        for part, w in zip(parts, names, strict=True)
    ]
    shard_graphs: tuple[list[Any], list[Any]] = ([], [])
    for side, (e, n_opp) in enumerate(zip(edges, (len(item_ids), len(user_ids)), strict=True)):
        label = "user" if side == 0 else "item"
        for s, (a, b) in enumerate(zip(e[:-1], e[1:], strict=True)):
            pieces = [delayed(_tasks.pick, pure=True)(sp, side, s) for sp in splits]
            shard_graphs[side].append(
                delayed(_tasks.assemble_shard, pure=True)(
                    int(b - a), n_opp, f"{label} shard {s}", id_maps, side, int(a), *pieces
                )
            )
    # shard s of either side on worker s mod W, so that every worker solves its share of
    # each half-step (the tasks run where their shard is); after a worker is lost, its
    # shards may be rebuilt on any other
    workers = sorted(client.scheduler_info().get("workers", {}))
    homes = tuple(
        [[workers[s % len(workers)]] if workers else None for s in range(len(graphs))]
        for graphs in shard_graphs
    )
    user_shards, item_shards = (
        [
            client.compute(g, workers=home, allow_other_workers=True)
            for g, home in zip(graphs, side_homes, strict=True)
        ]
        for graphs, side_homes in zip(shard_graphs, homes, strict=True)
    )
    return Resident(info, edges, (homes[0], homes[1]), (user_shards, item_shards), id_maps)


def gather_seen(
    client: Any, user_shards: list[Any], timeout: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which items each user rated (the CSR ``indptr`` and ``indices`` of all user shards,
    read-only), for ``recommend(exclude_seen=True)``: 4 bytes per rating."""
    seen_futures = [client.submit(_tasks.seen_of, sh) for sh in user_shards]
    parts_seen = gather_within(seen_futures, timeout, "building the user shards", client)
    del seen_futures
    offsets = np.concatenate(([0], np.cumsum([p[0][-1] for p in parts_seen])))
    seen_arrays: tuple[np.ndarray, np.ndarray] = (
        np.concatenate(
            [[0]] + [p[0][1:] + off for p, off in zip(parts_seen, offsets, strict=False)]
        ).astype(np.int64),
        np.concatenate([p[1] for p in parts_seen]).astype(np.int32),
    )
    for arr in seen_arrays:
        arr.flags.writeable = False
    return seen_arrays


#: a shard task: ``task(shard, fixed, *extras, options)`` -> (rows, biases or None, per-row
#: squared error or None, None or an error message)
ShardTask = Callable[..., _tasks.Part]


class HalfSteps:
    """The gathered half-steps of one fit on the resident shards: the client holds both
    sides of the factors; each half-step sends the fixed side to the workers and runs a
    task on every shard of the other side, where the shard was built."""

    def __init__(
        self,
        client: Any,
        shards: tuple[list[Any], list[Any]],
        homes: tuple[list[Any], list[Any]],
        edges: tuple[np.ndarray, np.ndarray],
        name: str,
        timeout: float,
        retries: int,
    ) -> None:
        """``shards``, ``homes``, ``edges``: each side's shard futures, their home workers
        and the shard edges (as a :class:`Resident` holds them); ``name`` goes into the
        task keys."""
        self.client = client
        self.shards, self.homes, self.edges = shards, homes, edges
        self.name, self.timeout, self.retries = name, timeout, retries

    @classmethod
    def on(
        cls, client: Any, resident: Resident, name: str, timeout: float, retries: int
    ) -> HalfSteps:
        """The half-steps on the shards of ``resident``."""
        return cls(client, resident.shards, resident.homes, resident.edges, name, timeout, retries)

    def run(
        self,
        side: int,
        task: ShardTask,
        fixed: Any,
        extras: Callable[[], list[tuple[Any, ...]]],
        options: dict[str, Any],
        X: np.ndarray,
        xbias: np.ndarray | None,
        sse: np.ndarray | None,
    ) -> tuple[int, int, str] | None:
        """Run ``task(shard, fixed, *extras()[s], options)`` on every shard ``s`` of
        ``side`` (0 users, 1 items) and write each shard's rows into ``X[a:b]`` (and
        ``xbias``, and its per-row squared errors into ``sse``, where not None).
        ``extras`` is called again for every attempt (it may scatter per-shard inputs).
        Returns None, or ``(a, b, message)`` of the first shard (rows ``a`` to ``b - 1``)
        whose task reported an error (nothing of it or of later shards is written)."""
        client = self.client
        edges = self.edges[side]
        label = "user" if side == 0 else "item"
        for attempt in range(self.retries + 1):
            try:
                # one key for the fixed side: the client sends it to one worker, and the
                # others fetch it from there (Dask's worker-to-worker transfers)
                sent = client.scatter([fixed], hash=False)[0]
                more = extras()
                futures = [
                    client.submit(
                        task,
                        shard,
                        sent,
                        *more[s],
                        options,
                        pure=False,
                        key=f"mfkit-{self.name}-{label}-{s}-{time.monotonic_ns()}",
                        # where the shard was built: no work stealing that would move the
                        # shard; anywhere else once that worker is gone
                        workers=self.homes[side][s],
                        allow_other_workers=True,
                    )
                    for s, shard in enumerate(self.shards[side])
                ]
                results = gather_within(futures, self.timeout, f"the {label} half-step", client)
                break
            except lost_errors():
                # a worker died under the half-step: its tasks' inputs are still on the
                # client, so run them again (Dask itself recomputes the lost shards) once
                # the scheduler has noticed (a broadcast may have gone to the dead worker)
                if attempt == self.retries:
                    raise
                pause_after_loss(label, attempt, self.retries)
        for s, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            rows, biases, row_sse, error = results[s]
            if error is not None:
                return int(a), int(b), error
            X[a:b] = rows
            if xbias is not None:
                xbias[a:b] = biases
            if sse is not None:
                sse[a:b] = row_sse
        return None


__all__ = [
    "DEFAULT_TIMEOUT",
    "ClusterRatings",
    "Columns",
    "HalfSteps",
    "Resident",
    "ShardTask",
    "balanced_bounds",
    "build_shards",
    "check_frame",
    "computed",
    "dask_modules",
    "gather_seen",
    "get_client",
]
