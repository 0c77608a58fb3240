"""ALS on a Dask cluster: the same half-step kernel on shards resident on the workers.

How a fit runs (Spark MLlib's block ALS, with mfkit's kernel):

1. Each input partition is summarised on its worker (distinct ids with their rating counts,
   the exact rating sum, min and max); the client merges the summaries into the sorted id
   maps, so ids get the same indices as :meth:`mfkit.Ratings.from_dataframe` gives them.
2. Users and items are cut into contiguous shards of about equal rating counts; every
   partition is split by shard once and each shard assembled into CSR (users) or CSC (items)
   on a worker, where it stays for the whole fit: exactly the rows of the single-machine
   matrices, in the same order.
3. Each half-step broadcasts the fixed side's factors and biases to the workers and solves
   every shard's rows with :func:`mfkit.models.als.half_step`; the client assembles the new
   rows. A row's result depends only on its own ratings and the fixed side, so the factors
   are byte-identical to a fit on one machine for any number of workers, shards and threads.

The epoch loop is the models' own (``FactorModel._run_fit``): validation scores, early
stopping, callbacks, divergence and Ctrl-C behave as on one machine.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from typing import Any

import numpy as np

from mfkit._core.exact import exact_mean
from mfkit._core.isa import get_isa
from mfkit._core.validation import check_number, check_random_state
from mfkit.data import IdMap
from mfkit.distributed import _tasks
from mfkit.distributed._cluster import gather_within, lost_errors
from mfkit.distributed._heldout import split_held_out
from mfkit.distributed._resident import ClusterModel, ResidentTrainer, initial_parts, run_resident
from mfkit.distributed._validate import ClusterValidation, validation_on_cluster
from mfkit.models import ALS, FactorModel, Trainer
from mfkit.models._autoreg import (
    AUTO_START,
    check_interrupted,
    selection_generator,
    set_choice,
    walk_grid,
)
from mfkit.models._state import Fitted
from mfkit.models._training import SAFE_PREDICTION

logger = logging.getLogger("mfkit.distributed")

#: what a fit waits for one half-step (or the preparation of the shards) before it fails
DEFAULT_TIMEOUT = 600.0


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


def _dask_modules() -> tuple[Any, Any]:
    try:
        import dask
        import distributed
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise ImportError(
            f"fitting a Dask collection needs dask and distributed ({exc}); install them "
            f"with pip install 'mfkit[dask]'"
        ) from None
    return dask, distributed


def _client(distributed: Any, client: Any) -> Any:
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


def solve_options(global_mean: float, model: ALS, params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the shard half-step tasks."""
    return {
        "mu": global_mean,
        "regularization": params["regularization"],
        "bias_regularization": params["bias_regularization"],
        "weighted": bool(model.weighted),
        "solver": params["solver"],
        "cg_steps": params["cg_steps"],
        "prior_regularization": params["prior_regularization"],
        # Dask runs one task per worker thread: one kernel thread each unless asked
        "n_threads": 1 if model.n_threads is None else params["n_threads"],
        # the client's kernel path, on every worker: the bits of the one-machine fit
        "isa": get_isa(),
    }


class DaskALSTrainer(Trainer):
    """One ALS fit on a cluster: the futures of the resident user and item shards, and the
    half-steps that broadcast one side and solve the other shard by shard."""

    name = "ALS"

    def __init__(
        self,
        client: Any,
        distributed: Any,
        shards: tuple[list[Any], list[Any]],
        homes: tuple[list[Any], list[Any]],
        edges: tuple[np.ndarray, np.ndarray],
        fitted: Fitted,
        prior: tuple[np.ndarray, np.ndarray] | None,
        model: ALS,
        params: dict[str, Any],
        nnz: int,
        timeout: float,
        retries: int,
    ) -> None:
        self.client, self.distributed = client, distributed
        self.shards, self.edges = shards, edges
        self.homes = homes
        self.state = fitted.state
        self.biases = bool(model.biases)
        self.cg = params["solver"] == "cg"
        self.nnz, self.timeout, self.retries = nnz, timeout, retries
        self.failure: str | None = None
        self.options = solve_options(fitted.global_mean, model, params)
        self.priors: tuple[list[Any], list[Any]] | None = None
        if prior is not None and params["prior_regularization"] > 0:
            self.priors = tuple(
                client.scatter(
                    [np.ascontiguousarray(P0[a:b]) for a, b in zip(e[:-1], e[1:], strict=True)],
                    hash=False,
                )
                for P0, e in zip(prior, edges, strict=True)
            )

    def _half_step(self, side: int) -> np.ndarray | None:
        state, client = self.state, self.client
        X, xbias, Y, ybias = (
            (state.P, state.bu, state.Q, state.bi)
            if side == 0
            else (state.Q, state.bi, state.P, state.bu)
        )
        edges = self.edges[side]
        opts = dict(self.options, want_sse=side == 1)
        sse = np.zeros(len(X), dtype=np.float64) if side == 1 else None
        label = "user" if side == 0 else "item"
        for attempt in range(self.retries + 1):
            try:
                # one key for the fixed side: the client sends it to one worker, and the
                # others fetch it from there (Dask's worker-to-worker transfers)
                fixed = client.scatter([(Y, ybias if self.biases else None)], hash=False)[0]
                starts: list[Any] = [None] * (len(edges) - 1)
                if self.cg:
                    # the conjugate-gradient solver starts from the current rows and biases
                    starts = client.scatter(
                        [
                            (X[a:b].copy(), xbias[a:b].copy() if self.biases else None)
                            for a, b in zip(edges[:-1], edges[1:], strict=True)
                        ],
                        hash=False,
                    )
                futures = [
                    client.submit(
                        _tasks.solve_shard,
                        shard,
                        fixed,
                        starts[s],
                        None if self.priors is None else self.priors[side][s],
                        opts,
                        pure=False,
                        key=f"mfkit-als-{label}-{s}-{time.monotonic_ns()}",
                        # where the shard was built: no work stealing that would move the
                        # shard; anywhere else once that worker is gone
                        workers=self.homes[side][s],
                        allow_other_workers=True,
                    )
                    for s, shard in enumerate(self.shards[side])
                ]
                results = gather_within(futures, self.timeout, f"the {label} half-step", client)
                break
            except self._lost_errors():
                # a worker died under the half-step: its tasks' inputs are still on the
                # client, so solve them again (Dask itself recomputes the lost shards) once
                # the scheduler has noticed (a broadcast may have gone to the dead worker)
                if attempt == self.retries:
                    raise
                logger.warning(
                    "a worker was lost during the %s half-step; solving it again (%d of %d)",
                    label,
                    attempt + 1,
                    self.retries,
                )
                time.sleep(min(0.25 * 2**attempt, 5.0))
        for s, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            rows, biases, row_sse, error = results[s]
            if error is not None:
                self.failure = f"{label} half-step, {label}s {a} to {b - 1}: {error}"
                return None
            X[a:b] = rows
            if self.biases:
                xbias[a:b] = biases
            if sse is not None:
                sse[a:b] = row_sse
        return sse if sse is not None else np.zeros(0)

    def fitted_attributes(self) -> dict[str, Any]:
        return {"isa": self.options["isa"]}

    def _lost_errors(self) -> tuple[type[BaseException], ...]:
        """What a worker lost under a half-step raises on the client."""
        return lost_errors()

    def run_epoch(self, epoch: int) -> tuple[float, bool]:
        if self._half_step(0) is None:
            return math.nan, False
        item_sse = self._half_step(1)
        if item_sse is None:
            return math.nan, False
        # the same fixed-order sum over all items as one machine takes
        return math.sqrt(float(np.sum(item_sse)) / self.nnz), True

    def divergence_message(self, epoch: int) -> str:
        if self.failure is None:
            return super().divergence_message(epoch)
        return (
            f"ALS failed in epoch {epoch}: {self.failure}. The model keeps the factors of "
            f"epoch {epoch - 1}."
        )


def fit(
    model: FactorModel,
    data: Any,
    validation: Any = None,
    *,
    init: Any = None,
    callback: Any = None,
    client: Any = None,
    shards: int | None = None,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str = "rating",
    seen: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 5,
    keep_on_cluster: bool = False,
) -> Any:
    """Fit ``model`` (an :class:`mfkit.ALS`) to a Dask DataFrame of ratings on a cluster.

    ``model.fit(ddf)`` calls this with the defaults; call it directly for the options. The
    ratings stay on the workers: the client holds the id maps, the factors and (with
    ``seen=True``) which items each user rated. The fitted model is an ordinary mfkit model,
    byte-identical to ``model.fit(ddf.compute())`` on one machine.

    Parameters
    ----------
    model : ALS
        The estimator; its parameters apply unchanged.
    data : dask.dataframe.DataFrame
        Ratings with columns ``user_col``, ``item_col``, ``rating_col`` (integer or string
        ids; any number of partitions). :func:`read_ratings` makes one from rating files.
    validation : Dask or pandas DataFrame, or anything ``ALS.fit`` accepts, optional
        Held-out ratings, gathered to the client (they are small) and scored every epoch;
        with ``keep_on_cluster=True`` kept and scored on the workers instead.
    init, callback
        As for :meth:`mfkit.ALS.fit`.
    client : distributed.Client, optional
        The cluster to use (default: the current client, ``distributed.get_client()``).
    shards : int, optional
        Shards per side (default: two per worker); each holds contiguous users (items) of
        about equal rating count. The result does not depend on it.
    user_col, item_col, rating_col : str
        Column names (the defaults are those of :meth:`mfkit.Ratings.from_dataframe`).
    seen : bool, default True
        Gather which items each user rated (4 bytes per rating) so that
        ``recommend(exclude_seen=True)`` works as after a single-machine fit.
    timeout : float, default 600
        Seconds to wait for one half-step (and for the shards to be built) before failing
        with ``TimeoutError``, for example when no worker is left.
    retries : int, default 5
        Times a half-step is solved again after a worker was lost under it.
    keep_on_cluster : bool, default False
        Keep the factors on the cluster, shard by shard (backed up on a second worker), and
        return a :class:`~mfkit.distributed.ClusterModel` instead of the fitted ``model``:
        the client never holds a whole side of the factors. Its factors are byte-identical
        to the single-machine fit; ``save`` writes them shard by shard (``mfkit.load``
        reads the folder), ``recommend_all`` scores where they are, ``to_model`` gathers
        them. ``validation`` (a Dask or pandas DataFrame with the columns of ``data``) is then
        scored on the cluster (the client receives a few numbers per epoch), with
        ``patience`` as on one machine; ``regularization='auto'`` runs its grid fits
        the same way, on the held-out ratings left on the workers.

    Returns
    -------
    model, fitted (or a ClusterModel with ``keep_on_cluster=True``)

    What a lost worker does: the shards it held are recomputed by Dask from the input
    partitions (read again from the files or the graph) and its half-step tasks run again
    elsewhere, with the same bits. A fit survives any worker (its nanny restarting it or
    not) as long as one worker remains; it does not survive the loss of the scheduler or of
    the client, which holds the factors.
    """
    dask, distributed = _dask_modules()
    if not isinstance(model, ALS):
        raise TypeError(
            f"{type(model).__name__} cannot be fitted on a Dask cluster yet; use mfkit.ALS "
            f"(or compute the DataFrame and fit it in memory)"
        )
    if not (hasattr(data, "to_delayed") and hasattr(data, "columns")):
        raise TypeError(
            f"data must be a dask.dataframe.DataFrame, got {type(data).__name__}; make one "
            f"from files with mfkit.distributed.read_ratings"
        )
    cols = (user_col, item_col, rating_col)
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ValueError(
            f"DataFrame has no column(s) {missing}; it has {list(data.columns)}. Name them "
            f"with user_col=, item_col=, rating_col="
        )
    timeout = check_number(timeout, "timeout", low=0, low_inclusive=False)
    retries = check_number(retries, "retries", low=0, integer=True)
    params = model._check_params()
    if not isinstance(keep_on_cluster, bool | np.bool_):
        raise TypeError(f"keep_on_cluster must be True or False, got {keep_on_cluster!r}")
    if keep_on_cluster and validation is not None:
        if not hasattr(validation, "to_delayed"):
            if not hasattr(validation, "columns"):
                raise TypeError(
                    "with keep_on_cluster=True, validation must be a Dask or pandas "
                    f"DataFrame with the columns of data, got {type(validation).__name__}"
                )
            validation = dask.dataframe.from_pandas(validation, npartitions=1)
    rng = check_random_state(model.random_state)
    client = _client(distributed, client)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    n_shards = (
        2 * n_workers if shards is None else check_number(shards, "shards", low=1, integer=True)
    )
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
    nnz = info["n"]
    if nnz == 0:
        raise ValueError("data has no ratings: cannot fit an empty rating matrix")
    user_ids, item_ids = info["users"], info["items"]
    user_counts, item_counts = info["user_counts"], info["item_counts"]
    total, lo, hi = info["sum"], info["min"], info["max"]
    summary = ClusterRatings(user_ids, item_ids, user_counts, item_counts, nnz)

    # 2. the resident shards: every partition split once, each shard assembled on a worker
    edges = (
        balanced_bounds(user_counts, min(n_shards, len(user_ids))),
        balanced_bounds(item_counts, min(n_shards, len(item_ids))),
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
    # each half-step (the solve tasks run where their shard is); after a worker is lost, its
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
    resident = False  # whether a returned ClusterModel holds the shards now
    try:
        # regularization='auto': the grid fits on the held-out split of the resident shards,
        # before the main fit's draws (as on one machine)
        scores = None
        if params["regularization"] == "auto":
            scores = _choose_regularization(
                client, distributed, model, rng, summary, (user_shards, item_shards),
                (homes[0], homes[1]), edges, params, init, timeout, retries,
                keep_on_cluster, n_shards,
            )  # fmt: skip
        if keep_on_cluster:
            cm = _fit_resident(
                client, model, summary, info, (user_shards, item_shards), (homes[0], homes[1]),
                edges, params, init, rng, callback, seen, timeout, retries,
                validation, cols, id_maps, n_shards, scores,
            )  # fmt: skip
            # its factors descend from the shards: the shards it does not hold are released
            # as their references go, and their lineage stays with Dask
            resident = True
            return cm
        seen_arrays = None
        if seen:
            seen_futures = [client.submit(_tasks.seen_of, sh) for sh in user_shards]
            parts_seen = gather_within(seen_futures, timeout, "building the user shards", client)
            del seen_futures
            offsets = np.concatenate(([0], np.cumsum([p[0][-1] for p in parts_seen])))
            seen_arrays = (
                np.concatenate(
                    [[0]] + [p[0][1:] + off for p, off in zip(parts_seen, offsets, strict=False)]
                ).astype(np.int64),
                np.concatenate([p[1] for p in parts_seen]).astype(np.int32),
            )
            for arr in seen_arrays:
                arr.flags.writeable = False

        # 3. the epochs: the models' own loop over the cluster trainer
        before = model._fit_snapshot()
        fitted, prior = model._begin_fit(
            summary,
            global_mean=exact_mean(total, nnz) if model.biases else 0.0,
            rating_range=(lo, hi),
            seen=seen_arrays,
            init=init,
            rng=rng,
            params=params,
        )
        fitted.extras.update(_choice_extras(model, params, scores))
        val = None
        if validation is not None:
            if hasattr(validation, "compute") and hasattr(validation, "to_delayed"):
                validation = validation.compute()
            val = model._validation_scorer(validation, summary, params)
        trainer = DaskALSTrainer(
            client,
            distributed,
            (user_shards, item_shards),
            (homes[0], homes[1]),
            edges,
            fitted,
            prior,
            model,
            params,
            nnz,
            timeout,
            retries,
        )
        # the ratings' RMS (a float sum of the shards' sums of squares: it only sets the
        # threshold of the divergence check)
        scale = math.sqrt(info["sum_sq"] / nnz)
        return model._run_fit(fitted, trainer, val, params, callback, scale, before)
    finally:
        if not resident:
            # released by dropping the references (the trainer shares these lists): a
            # cancel would also cancel the released tasks that depend on them, which
            # distributed does not handle (it drops the client's connection)
            user_shards.clear()
            item_shards.clear()


def _choice_extras(
    model: ALS, params: dict[str, Any], scores: list[tuple[float, float]] | None = None
) -> dict[str, Any]:
    """What a single-machine fit records of its regularization weight: the value, and the
    scores of ``'auto'`` (None for a number)."""
    if not model._auto_regularization:
        return {}
    return {"regularization": params["regularization"], "regularization_scores": scores}


def _choose_regularization(
    client: Any,
    distributed: Any,
    model: ALS,
    rng: np.random.Generator,
    summary: ClusterRatings,
    shards: tuple[list[Any], list[Any]],
    homes: tuple[list[Any], list[Any]],
    edges: tuple[np.ndarray, np.ndarray],
    params: dict[str, Any],
    init: Any,
    timeout: float,
    retries: int,
    resident: bool,
    n_shards: int,
) -> list[tuple[float, float]]:
    """``regularization='auto'`` on the cluster: one machine's rule
    (:func:`mfkit.models._autoreg.select_regularization`) with its held-out split made
    shard by shard (:mod:`mfkit.distributed._heldout`) and its grid fits run as cluster
    fits on the training shards; the same value, scores and draws. ``resident``: the grid
    fits keep their factors on the cluster too (``keep_on_cluster=True``), scored there on
    the held ratings, which stay on the workers. Puts the value into ``params`` and
    returns the scores."""
    sel = selection_generator(rng)
    scale = model._regularization_scale(summary, params)  # type: ignore[arg-type]
    split = split_held_out(
        client, sel, shards, homes, edges, summary.user_counts(), summary.n_users, timeout,
        gather=not resident,
    )  # fmt: skip
    if split is None:  # too few ratings to hold any out: the starting value
        set_choice(model, params, float(AUTO_START * scale))
        return []
    seed = int(sel.integers(2**63))
    train = ClusterRatings(
        summary.user_ids, summary.item_ids, split.user_counts, split.item_counts, split.nnz
    )
    if resident:
        mu = exact_mean(split.total, split.nnz) if model.biases else 0.0
        held = ClusterValidation(client, split.validation, split.held_bounds, edges, mu, timeout)
        info = {
            "n": split.nnz,
            "sum": split.total,
            "sum_sq": split.sum_sq,
            "min": split.rating_range[0],
            "max": split.rating_range[1],
        }

        def fit_resident(sub: Any) -> list[float]:
            cm = _fit_resident(
                client, sub, train, info, split.shards, homes, edges, sub._check_params(),
                init, check_random_state(sub.random_state), None, False, timeout, retries,
                held, ("user", "item", "rating"), None, n_shards, None,
            )  # fmt: skip
            try:
                check_interrupted(cm.stop_reason_)
                return list(cm.history_["val_rmse"])
            finally:
                cm.release()

        try:
            lam, scores = walk_grid(model, scale, seed, fit_resident)
        finally:
            held.release()
            for side in split.shards:
                side.clear()
        set_choice(model, params, lam)
        return scores
    u, i, r = split.validation

    def fit_scored(sub: Any) -> list[float]:
        sub_params = sub._check_params()
        before = sub._fit_snapshot()
        fitted, prior = sub._begin_fit(
            train,
            global_mean=exact_mean(split.total, split.nnz) if sub.biases else 0.0,
            rating_range=split.rating_range,
            seen=None,
            init=init,
            rng=check_random_state(sub.random_state),
            params=sub_params,
        )
        fitted.extras.update(_choice_extras(sub, sub_params))

        def val() -> dict[str, float]:  # one machine's scorer on the same arrays
            val_rmse, val_mae = sub._score_arrays(u, i, r)
            return {"val_rmse": val_rmse, "val_mae": val_mae}

        trainer = DaskALSTrainer(
            client, distributed, split.shards, homes, edges, fitted, prior, sub, sub_params,
            split.nnz, timeout, retries,
        )  # fmt: skip
        sub._run_fit(
            fitted, trainer, val, sub_params, None, math.sqrt(split.sum_sq / split.nnz), before
        )
        check_interrupted(sub.stop_reason_)
        return list(sub.history_["val_rmse"])

    try:
        lam, scores = walk_grid(model, scale, seed, fit_scored)
    finally:
        for side in split.shards:
            side.clear()
    set_choice(model, params, lam)
    return scores


def _fit_resident(
    client: Any,
    model: ALS,
    summary: ClusterRatings,
    info: dict[str, Any],
    shards: tuple[list[Any], list[Any]],
    homes: tuple[list[Any], list[Any]],
    edges: tuple[np.ndarray, np.ndarray],
    params: dict[str, Any],
    init: Any,
    rng: np.random.Generator,
    callback: Any,
    seen: bool,
    timeout: float,
    retries: int,
    validation: Any,
    cols: tuple[str, str, str],
    id_maps: Any,
    n_shards: int,
    scores: list[tuple[float, float]] | None,
) -> ClusterModel:
    """The fit with ``keep_on_cluster=True`` (see :mod:`mfkit.distributed._resident`);
    ``validation``: a Dask DataFrame scored on the cluster (:mod:`._validate`), validation
    ratings already there (a ClusterValidation, left to the caller), or None; ``scores``:
    those of ``regularization='auto'``."""
    nnz = info["n"]
    global_mean = exact_mean(info["sum"], nnz) if model.biases else 0.0
    # each shard re-indexed against the opposite rows it rates, resident where it is, and
    # those rows cut by opposite shard (its out-block's pieces); their sizes on the client
    local: tuple[list[Any], list[Any]] = ([], [])
    pieces: tuple[list[list[Any]], list[list[Any]]] = ([], [])
    for side in (0, 1):
        for s, raw in enumerate(shards[side]):
            where = dict(workers=homes[side][s], allow_other_workers=True)
            loc = client.submit(_tasks.localize, raw, **where)
            split = client.submit(_tasks.ref_pieces, loc, edges[1 - side], **where)
            local[side].append(loc)
            pieces[side].append(
                [
                    client.submit(operator.getitem, split, t, **where)
                    for t in range(len(edges[1 - side]) - 1)
                ]
            )
    counts = gather_within(
        [client.submit(len, p) for side in pieces for row in side for p in row],
        timeout,
        "building the shards",
        client,
    )
    n_u, n_i = len(edges[0]) - 1, len(edges[1]) - 1
    sizes = (
        np.array(counts[: n_u * n_i], dtype=np.int64).reshape(n_u, n_i),
        np.array(counts[n_u * n_i :], dtype=np.int64).reshape(n_i, n_u),
    )
    parts, priors, bound = initial_parts(client, model, summary, edges, homes, init, rng, params)
    options = solve_options(global_mean, model, params)
    val = None
    owned = False  # whether this fit made val (and releases it)
    cm = ClusterModel(
        client, model, params, edges, parts, homes, local[0] if seen else None,
        summary.user_map.ids, summary.item_map.ids, global_mean, (info["min"], info["max"]),
        {key: [] for key in model._history_keys(params)},
        {**_choice_extras(model, params, scores), "isa": options["isa"]},
    )  # fmt: skip
    try:
        if bound + abs(global_mean) >= SAFE_PREDICTION[np.dtype(params["dtype"]).char]:
            raise ValueError(
                "the starting factors are so large that predictions overflow "
                f"{np.dtype(params['dtype'])}: lower init_std (now {params['init_std']:g}) or "
                "pass smaller init= factors"
            )
        trainer = ResidentTrainer(
            client, local, homes, edges, priors, pieces, sizes,
            options, params["solver"] == "cg", nnz,
            timeout, retries, lost_errors(),
        )  # fmt: skip
        trainer.protect(parts)
        if isinstance(validation, ClusterValidation):
            val = validation
        elif validation is not None:
            owned = True
            val = validation_on_cluster(
                client, validation, cols, id_maps, summary.shape, edges, n_shards,
                global_mean, timeout, balanced_bounds,
            )  # fmt: skip
        out = run_resident(cm, trainer, params, callback, math.sqrt(info["sum_sq"] / nnz), val)
        out.ref_sizes = sizes
    except BaseException:
        cm.release()
        raise
    finally:
        if owned and val is not None:
            val.release()
    return out


__all__ = ["DEFAULT_TIMEOUT", "ClusterRatings", "DaskALSTrainer", "balanced_bounds", "fit"]
