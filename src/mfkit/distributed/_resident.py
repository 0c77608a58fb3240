"""ALS whose factors stay on the cluster: ``mfkit.distributed.fit(..., keep_on_cluster=True)``.

The factors of each shard of users and items are solved and kept on the workers (with a
backup copy on a second worker during the fit);
the client holds the id maps, the per-row rating counts and, per iteration, the per-item
squared errors (8 bytes per item) and a few numbers per shard. The starting factors are the
single-machine draws, made on the client one shard at a time and sent to the cluster, so the
result is byte-identical to a fit on one machine (:meth:`ClusterModel.to_model` gathers it
into an ordinary model when it fits in memory).

What the epoch loop keeps of the single-machine one: the training RMSE, divergence (a row
that is not positive definite, NaN/inf, the blow-up tests: the model keeps the last good
epoch), callbacks (``callback(cluster_model, record)``; False stops), Ctrl-C (keeps the last
completed epoch), ``validation=`` scored on the cluster (see :mod:`._validate`: the same
bits as one machine's scores) and early stopping with ``patience``, which ends with the
best epoch's factors (``best_epoch_``) as one machine does.

A lost worker: every solved shard is copied to a second worker (a key of its own, which
Dask's memory manager leaves alone) before the previous epoch's parts are released, so the
loss of one worker loses no factors: the backups take the lost parts' place, the lost
worker's shards are re-homed on the others and the half-step is solved again.
"""

from __future__ import annotations

import math
import operator
import os
import time
import uuid
import warnings
from typing import Any

import numpy as np

from mfkit._core.validation import check_number
from mfkit._core.version import __version__
from mfkit.data import IdMap
from mfkit.distributed import _tasks
from mfkit.distributed._cluster import gather_within, pause_after_loss, wait_pinned
from mfkit.distributed._score import check_pairs
from mfkit.exceptions import DivergenceError
from mfkit.models import FactorModel
from mfkit.models._manifest import FORMAT_NAME, FORMAT_VERSION, write_array, write_manifest
from mfkit.models._persistence import _jsonable
from mfkit.models._state import FactorState, Fitted, normal_rows
from mfkit.models._training import BLOWUP_FACTOR, SAFE_PREDICTION

Future = Any


class ClusterModel:
    """A fitted ALS whose factors are shards on a Dask cluster (what
    ``mfkit.distributed.fit(..., keep_on_cluster=True)`` returns).

    Attributes (as on a fitted model): ``user_ids_``, ``item_ids_`` (None: indices),
    ``global_mean_``, ``rating_range_``, ``history_``, ``stop_reason_``, ``n_users``,
    ``n_items``; ``user_factors_``, ``item_factors_``, ``user_biases_``, ``item_biases_`` are
    ``dask.array`` collections chunked by shard. ``model`` is the estimator (its parameters).
    The factors live as long as this object (or until :meth:`release`).
    """

    def __init__(
        self,
        client: Any,
        model: FactorModel,
        params: dict[str, Any],
        edges: tuple[np.ndarray, np.ndarray],
        parts: tuple[list[Future], list[Future]],
        homes: tuple[list[Any], list[Any]],
        user_shards: list[Future] | None,
        user_ids: np.ndarray | None,
        item_ids: np.ndarray | None,
        global_mean: float,
        rating_range: tuple[float, float],
        history: dict[str, list[float]],
        extras: dict[str, Any],
    ) -> None:
        self.client, self.model, self._params = client, model, params
        self.edges, self.parts, self.homes = edges, parts, homes
        self.user_shards = user_shards
        self.user_ids_, self.item_ids_ = user_ids, item_ids
        self.global_mean_, self.rating_range_ = global_mean, rating_range
        self.history_ = history
        self.stop_reason_ = "epochs"
        self.best_epoch_: int | None = None
        self.extras = extras
        self.dtype = np.dtype(params["dtype"])
        #: rows of opposite shard t that shard s of each side rates (set by the fit)
        self.ref_sizes: tuple[np.ndarray, np.ndarray] | None = None
        self.factors = int(params["factors"])

    @property
    def n_users(self) -> int:
        return int(self.edges[0][-1])

    @property
    def n_items(self) -> int:
        return int(self.edges[1][-1])

    def _array(self, side: int, which: int) -> Any:
        import dask
        import dask.array as da

        e = self.edges[side]
        blocks = []
        for s, part in enumerate(self.parts[side]):
            n = int(e[s + 1] - e[s])
            shape = (n, self.factors) if which == 0 else (n,)
            held = dask.delayed(operator.getitem, pure=True)(part, which)
            blocks.append(da.from_delayed(held, shape=shape, dtype=self.dtype))
        return da.concatenate(blocks)

    @property
    def user_factors_(self) -> Any:
        return self._array(0, 0)

    @property
    def item_factors_(self) -> Any:
        return self._array(1, 0)

    @property
    def user_biases_(self) -> Any:
        return self._array(0, 1)

    @property
    def item_biases_(self) -> Any:
        return self._array(1, 1)

    def _gather_side(self, side: int) -> tuple[np.ndarray, np.ndarray]:
        got = self.client.gather(
            [self.client.submit(_tasks.gather_part, p, pure=False) for p in self.parts[side]]
        )
        rows = np.concatenate([g[0] for g in got])
        n = len(rows)
        biases = (
            np.concatenate([g[1] for g in got])
            if got[0][1] is not None
            else np.zeros(n, dtype=self.dtype)
        )
        return np.ascontiguousarray(rows), biases

    def _gather_seen(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.user_shards is None:
            return None
        got = self.client.gather(
            [self.client.submit(_tasks.seen_local, sh, pure=False) for sh in self.user_shards]
        )
        offsets = np.concatenate(([0], np.cumsum([p[0][-1] for p in got])))
        indptr = np.concatenate(
            [[0]] + [p[0][1:] + off for p, off in zip(got, offsets, strict=False)]
        ).astype(np.int64)
        indices = np.concatenate([p[1] for p in got]).astype(np.int32)
        indptr.flags.writeable = False
        indices.flags.writeable = False
        return indptr, indices

    def to_model(self) -> FactorModel:
        """The estimator fitted with these factors, gathered to the client (an ordinary
        model: predict, recommend, save); byte-identical to the single-machine fit."""
        P, bu = self._gather_side(0)
        Q, bi = self._gather_side(1)
        fitted = Fitted(
            state=FactorState(P, Q, bu, bi),
            user_map=IdMap(self.user_ids_, self.n_users),
            item_map=IdMap(self.item_ids_, self.n_items),
            seen=self._gather_seen(),
            global_mean=self.global_mean_,
            rating_range=self.rating_range_,
            history={k: list(v) for k, v in self.history_.items()},
            best_epoch=self.best_epoch_,
            stop_reason=self.stop_reason_,
            extras=dict(self.extras),
        )
        self.model._set_fitted(fitted, self._params)
        return self.model

    def recommend_all(self, n: int = 10, *, exclude_seen: bool = True, n_threads: int = 1) -> Any:
        """The top-``n`` items of every user as a Dask DataFrame (``user``, ``rank``,
        ``item``, ``score``), one partition per user shard, computed where the shard's
        factors are against all item factors: equal to ``recommend`` of the single-machine
        model bit for bit; ``.to_parquet(path)`` writes it without gathering."""
        import dask
        import dask.dataframe as dd
        import pandas as pd

        n = int(check_number(n, "n", low=1, integer=True))
        n_threads = int(check_number(n_threads, "n_threads", low=1, integer=True))
        if not isinstance(exclude_seen, bool | np.bool_):
            raise TypeError(f"exclude_seen must be True or False, got {exclude_seen!r}")
        if exclude_seen and self.user_shards is None:
            raise ValueError(
                "this fit kept no record of the training ratings (seen=False); pass "
                "exclude_seen=False"
            )
        e = self.edges[0]
        ids = self.user_ids_ if self.user_ids_ is not None else np.arange(self.n_users)
        task = dask.delayed(_tasks.recommend_part, pure=True)
        frames = [
            task(
                part,
                self.user_shards[s] if exclude_seen and self.user_shards is not None else None,
                ids[e[s] : e[s + 1]],
                self.item_ids_,
                self.global_mean_ if self.model.biases else 0.0,
                n,
                n_threads,
                *self.parts[1],
            )
            for s, part in enumerate(self.parts[0])
        ]
        item_dtype = self.item_ids_.dtype if self.item_ids_ is not None else np.int64
        meta = pd.DataFrame(
            {
                "user": np.empty(0, dtype=ids.dtype),
                "rank": np.empty(0, dtype=np.int64),
                "item": np.empty(0, dtype=item_dtype),
                "score": np.empty(0, dtype=np.float64),
            }
        )
        return dd.from_delayed(frames, meta=meta, verify_meta=False)

    def predict(
        self,
        pairs: Any,
        *,
        user_col: str = "user",
        item_col: str = "item",
        column: str = "prediction",
        unknown: str = "error",
        clip: bool = False,
        n_threads: int = 1,
    ) -> Any:
        """The predicted ratings of a Dask DataFrame of (user, item) pairs, as a Dask
        DataFrame (``pairs`` with ``column`` appended), as
        :func:`mfkit.distributed.predict` gives them for an ordinary model: each partition
        gets from each shard only the factor rows its pairs name, so no worker needs the
        whole model; equal to the single-machine ``predict`` bit for bit."""
        import dask
        import dask.dataframe as dd

        check_pairs(pairs, (user_col, item_col), column, unknown, clip)
        n_threads = int(check_number(n_threads, "n_threads", low=1, integer=True))
        meta = pairs._meta.copy()
        meta[column] = np.empty(0, dtype=np.float64)
        delayed = dask.delayed
        id_maps = delayed((self.user_ids_, self.item_ids_), name=f"mfkit-ids-{uuid.uuid4().hex}")
        span = None if not clip else tuple(self.rating_range_)
        frames = []
        for p, part in enumerate(pairs.to_delayed()):
            idx = delayed(_tasks.pair_indices, pure=True)(
                part, (user_col, item_col), id_maps, (self.n_users, self.n_items), unknown,
                f"partition {p}",
            )  # fmt: skip
            pieces = [
                delayed(_tasks.rows_for, pure=True)(f, idx, side, int(e[s]), int(e[s + 1]))
                for side, e in enumerate(self.edges)
                for s, f in enumerate(self.parts[side])
            ]
            frames.append(
                delayed(_tasks.predict_part, pure=True)(
                    part,
                    idx,
                    self.global_mean_,
                    column,
                    unknown,
                    span,
                    n_threads,
                    len(self.parts[0]),
                    *pieces,
                )  # fmt: skip
            )
        return dd.from_delayed(frames, meta=meta, verify_meta=False)

    def save(self, path: Any, *, seen: bool = True, timeout: float = 600.0) -> None:
        """Write the model shard by shard into the folder ``path`` (created if needed): each
        worker writes the ``.npy`` files of the shards it holds (so ``path`` must be on
        storage the workers share with the client), the client writes the id arrays and
        then ``manifest.json`` (see :mod:`mfkit.models._manifest`), by one rename, last.
        ``mfkit.load(path)`` reads it back into an ordinary model. Files of an earlier save
        into the same folder are removed once the new manifest is in place."""
        folder = os.path.abspath(os.fspath(path))
        os.makedirs(folder, exist_ok=True)
        sub = f"shards-{uuid.uuid4().hex[:16]}"
        os.makedirs(os.path.join(folder, sub))
        futures = []
        for side, label in ((0, "user"), (1, "item")):
            for s, part in enumerate(self.parts[side]):
                shard = None
                if side == 0 and seen and self.user_shards is not None:
                    shard = self.user_shards[s]
                futures.append(
                    self.client.submit(
                        _tasks.write_part,
                        folder,
                        f"{sub}/{label}-{s:05d}",
                        part,
                        shard,
                        self.model.biases,
                        pure=False,
                        workers=self.homes[side][s],
                        allow_other_workers=True,
                    )
                )
        entries = gather_within(futures, timeout, "writing the shards", self.client)
        n_user = len(self.parts[0])
        e = self.edges
        manifest: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "mfkit_version": __version__,
            "model": type(self.model).__name__,
            "params": {k: _jsonable(v) for k, v in self.model.get_params().items()},
            "global_mean": self.global_mean_,
            "rating_range": list(self.rating_range_),
            "history": {k: [float(x) for x in v] for k, v in self.history_.items()},
            "best_epoch": self.best_epoch_,
            "stop_reason": self.stop_reason_,
            "fitted": {k: _jsonable(v) for k, v in self.extras.items()},
            "shape": [self.n_users, self.n_items],
            "factors": self.factors,
            "dtype": self.dtype.name,
            "user_ids": None,
            "item_ids": None,
            "shards": {
                "user": [
                    {"rows": [int(e[0][s]), int(e[0][s + 1])], **entries[s]} for s in range(n_user)
                ],
                "item": [
                    {"rows": [int(e[1][s]), int(e[1][s + 1])], **entries[n_user + s]}
                    for s in range(len(self.parts[1]))
                ],
            },
        }
        for label, ids in (("user", self.user_ids_), ("item", self.item_ids_)):
            if ids is not None:
                manifest[f"{label}_ids"] = write_array(folder, f"{sub}/{label}_ids.npy", ids)
        write_manifest(folder, manifest)
        # the earlier saves' files: no manifest names them any more
        for name in os.listdir(folder):
            if name.startswith("shards-") and name != sub:
                old = os.path.join(folder, name)
                for f in os.listdir(old):
                    os.unlink(os.path.join(old, f))
                os.rmdir(old)

    def release(self) -> None:
        """Drop this model's hold on its factors and shards (Dask frees them once nothing
        else, such as a ``user_factors_`` collection, refers to them)."""
        for side in self.parts:
            side.clear()
        if self.user_shards is not None:
            self.user_shards.clear()

    def __repr__(self) -> str:
        return (
            f"ClusterModel({self.model!r}, {self.n_users} users x {self.n_items} items in "
            f"{len(self.parts[0])} + {len(self.parts[1])} shards)"
        )


def initial_parts(
    client: Any,
    model: FactorModel,
    summary: Any,
    edges: tuple[np.ndarray, np.ndarray],
    homes: tuple[list[Any], list[Any]],
    init: Any,
    rng: np.random.Generator,
    params: dict[str, Any],
) -> tuple[tuple[list[Future], list[Future]], tuple[list[Future], list[Future]] | None, float]:
    """The starting factors as shards on the cluster, the prior shards (None without
    ``prior_regularization``), and the starting prediction bound.

    Without ``init``: the single-machine draws (users, then items, from the same generator
    stream) made one shard at a time, so the client never holds a whole side."""
    k, dtype, std = params["factors"], np.dtype(params["dtype"]), params["init_std"]
    biases = bool(model.biases)
    counts = (summary.user_counts(), summary.item_counts())
    out: tuple[list[Future], list[Future]] = ([], [])
    priors: tuple[list[Future], list[Future]] | None = None
    tops = [0.0, 0.0, 0.0, 0.0]
    if init is None:
        for side in (0, 1):
            e = edges[side]
            for s in range(len(e) - 1):
                a, b = int(e[s]), int(e[s + 1])
                rows = normal_rows(rng, b - a, k, dtype)
                rows *= dtype.type(std)
                rows[counts[side][a:b] == 0] = 0
                tops[side] = max(tops[side], _tasks._top(rows))
                part = _tasks.start_part(rows, np.zeros(b - a, dtype=dtype) if biases else None)
                out[side].append(client.scatter([part], workers=homes[side][s], hash=False)[0])
                del rows, part
    else:
        # given starting factors are on the client already
        state, prior = model._initial_state(summary, init, rng, params)
        for side, (X, xb) in enumerate(((state.P, state.bu), (state.Q, state.bi))):
            tops[side], tops[side + 2] = _tasks._top(X), _tasks._top(xb)
            e = edges[side]
            for s in range(len(e) - 1):
                a, b = int(e[s]), int(e[s + 1])
                part = _tasks.start_part(X[a:b].copy(), xb[a:b].copy() if biases else None)
                out[side].append(client.scatter([part], workers=homes[side][s], hash=False)[0])
        if prior is not None and params["prior_regularization"] > 0:
            priors = tuple(  # type: ignore[assignment]
                [
                    client.scatter(np.ascontiguousarray(P0[a:b]), hash=False)
                    for a, b in zip(e[:-1], e[1:], strict=True)
                ]
                for P0, e in zip(prior, edges, strict=True)
            )
    if params["prior_regularization"] > 0 and priors is None:
        raise ValueError("prior_regularization > 0 needs prior factors: pass init=(P0, Q0) to fit")
    bound = k * tops[0] * tops[1] + tops[2] + tops[3]
    return out, priors, bound


class ResidentTrainer:
    """The half-steps of a fit whose factors stay on the cluster."""

    def __init__(
        self,
        client: Any,
        shards: tuple[list[Future], list[Future]],
        homes: tuple[list[Any], list[Any]],
        edges: tuple[np.ndarray, np.ndarray],
        priors: tuple[list[Future], list[Future]] | None,
        pieces: tuple[list[list[Future]], list[list[Future]]],
        sizes: tuple[np.ndarray, np.ndarray],
        options: dict[str, Any],
        cg: bool,
        nnz: int,
        timeout: float,
        retries: int,
        lost_errors: tuple[type[BaseException], ...],
    ) -> None:
        self.client = client
        self.shards, self.homes, self.edges = shards, homes, edges
        self.priors = priors
        # pieces[side][s][t]: the rows of opposite shard t that shard s of ``side`` rates
        # (resident where shard s is); sizes[side][s, t]: how many
        self.pieces, self.sizes = pieces, sizes
        self.options, self.cg, self.nnz = options, cg, nnz
        self.timeout, self.retries, self.lost = timeout, retries, lost_errors
        self.failure: str | None = None
        self.tops = [0.0, 0.0, 0.0, 0.0]
        self.backups: tuple[list[Future | None], list[Future | None]] = ([], [])
        self.prior_backups: tuple[list[Future | None], list[Future | None]] | None = None

    def backup(self, futures: list[Future], homes: list[Any]) -> list[Future | None]:
        """A copy of each future on a worker other than its home (None with one worker),
        waited for: the loss of one worker then loses no factors. (Backups are keys of their
        own: Dask's memory manager, which may drop extra replicas, leaves them alone.)"""
        workers = sorted(self.client.scheduler_info().get("workers", {}))
        if len(workers) < 2:
            return [None] * len(futures)
        out: list[Future | None] = []
        for s, f in enumerate(futures):
            home = homes[s][0] if homes[s] else None
            others = [w for w in workers if w != home]
            out.append(
                self.client.submit(
                    _tasks.copy_part,
                    f,
                    pure=False,
                    workers=[others[s % len(others)]],
                    allow_other_workers=True,
                )
            )
        wait_pinned(
            [b for b in out if b is not None], self.timeout, "backing up the factors",
            self.client, set(), gather=False,
        )  # fmt: skip
        return out

    def restore(
        self,
        current: tuple[list[Future], list[Future]],
        backups: tuple[list[Future | None], list[Future | None]],
    ) -> None:
        """Put the backups in place of the parts that no worker holds any more (in place),
        and back those up again."""
        for side in (0, 1):
            parts, spare = current[side], backups[side]
            held = self.client.who_has(parts)
            for s, f in enumerate(parts):
                if not held.get(f.key) and spare[s] is not None:
                    parts[s] = spare[s]
                    spare[s] = self.backup([parts[s]], [self.homes[side][s]])[0]
        if self.priors is not None and self.prior_backups is not None:
            for side in (0, 1):
                held = self.client.who_has(self.priors[side])
                for s, f in enumerate(self.priors[side]):
                    spare_p = self.prior_backups[side][s]
                    if not held.get(f.key) and spare_p is not None:
                        self.priors[side][s] = spare_p
                        self.prior_backups[side][s] = self.backup([spare_p], [self.homes[side][s]])[
                            0
                        ]

    def protect(self, parts: tuple[list[Future], list[Future]]) -> None:
        """Back up the starting factors and the priors."""
        self.backups = (self.backup(parts[0], self.homes[0]), self.backup(parts[1], self.homes[1]))
        if self.priors is not None:
            self.prior_backups = (
                self.backup(self.priors[0], self.homes[0]),
                self.backup(self.priors[1], self.homes[1]),
            )

    def _half_step(
        self,
        side: int,
        current: tuple[list[Future], list[Future]],
        backups: tuple[list[Future | None], list[Future | None]],
    ) -> Any:
        client, label = self.client, ("user" if side == 0 else "item")
        opts = dict(self.options, want_sse=side == 1)
        fixed = current[1 - side]
        for attempt in range(self.retries + 1):
            try:
                pinned = self._live_homes()
                new = []
                stamp = time.monotonic_ns()
                for s, shard in enumerate(self.shards[side]):
                    # the out-block of shard s: from each opposite shard the rows it rates,
                    # cut where that shard's factors are and sent to shard s
                    sources = [t for t in range(len(fixed)) if self.sizes[side][s, t]] or [0]
                    blocks = [
                        # held by the same worker: cut inside the solve task, no transfer
                        ("here", fixed[t], self.pieces[side][s][t])
                        if self.homes[1 - side][t] == self.homes[side][s]
                        else (
                            "cut",
                            client.submit(
                                _tasks.out_block,
                                fixed[t],
                                self.pieces[side][s][t],
                                pure=False,
                                key=f"mfkit-out-{label}-{s}-{t}-{stamp}",
                                workers=self.homes[1 - side][t],
                                allow_other_workers=False,
                            ),
                        )
                        for t in sources
                    ]
                    new.append(
                        client.submit(
                            _tasks.solve_resident,
                            shard,
                            current[side][s] if self.cg else None,
                            None if self.priors is None else self.priors[side][s],
                            opts,
                            *blocks,
                            pure=False,
                            key=f"mfkit-als-{label}-{s}-{stamp}",
                            workers=self.homes[side][s],
                            # never moved by work stealing (that would move the shard);
                            # a lost worker's shards go to another by _live_homes
                            allow_other_workers=False,
                        )
                    )
                    del blocks
                stats_f = [client.submit(_tasks.part_stats, f, pure=False) for f in new]
                stats = wait_pinned(stats_f, self.timeout, f"the {label} half-step", client, pinned)
                del stats_f
                return new, stats, self.backup(new, self.homes[side])
            except self.lost:
                if attempt == self.retries:
                    raise
                try:  # what the lost worker held: its backups take its place
                    self.restore(current, backups)
                except self.lost:
                    pass
                pause_after_loss(label, attempt, self.retries)
        raise AssertionError("unreachable")  # pragma: no cover

    def _live_homes(self) -> set[str]:
        """Re-home the shards of workers that left (in place: the ClusterModel shares the
        lists) and return the workers the half-step is pinned to."""
        workers = sorted(self.client.scheduler_info().get("workers", {}))
        used: set[str] = set()
        for side_homes in self.homes:
            for s, home in enumerate(side_homes):
                if workers and (not home or home[0] not in workers):
                    side_homes[s] = [workers[s % len(workers)]]
                if side_homes[s]:
                    used.add(side_homes[s][0])
        return used

    def run_epoch(
        self, epoch: int, current: tuple[list[Future], list[Future]]
    ) -> tuple[float, tuple[list[Future], list[Future]] | None]:
        """One iteration from ``current``: (training RMSE, the new parts), or (nan, None)
        when it failed (``self.failure`` says why)."""
        users, ustats, ubackups = self._half_step(0, current, self.backups)
        if not self._accept(0, ustats):
            return math.nan, None
        items, istats, ibackups = self._half_step(
            1, (users, current[1]), (ubackups, self.backups[1])
        )
        if not self._accept(1, istats):
            return math.nan, None
        self.backups = (ubackups, ibackups)
        sse = np.concatenate([st[0] for st in istats])
        # the same fixed-order sum over all items as one machine takes
        return math.sqrt(float(np.sum(sse)) / self.nnz), (users, items)

    def _accept(self, side: int, stats: list[Any]) -> bool:
        label = "user" if side == 0 else "item"
        e = self.edges[side]
        for s, (_, error, finite, _, _) in enumerate(stats):
            if error is not None:
                self.failure = f"{label} half-step, {label}s {e[s]} to {e[s + 1] - 1}: {error}"
                return False
            if not finite:
                self.failure = f"a {label} factor became NaN or inf; raise regularization"
                return False
        self.tops[side] = max(st[3] for st in stats)
        self.tops[side + 2] = max(st[4] for st in stats)
        return True

    def bound(self, k: int, global_mean: float) -> float:
        with np.errstate(over="ignore"):
            return k * self.tops[0] * self.tops[1] + self.tops[2] + self.tops[3] + abs(global_mean)


def run_resident(
    cm: ClusterModel,
    trainer: ResidentTrainer,
    params: dict[str, Any],
    callback: Any,
    scale: float,
    val: Any = None,
) -> ClusterModel:
    """The epoch loop of a fit that keeps its factors on the cluster (see the module
    docstring for what it keeps of the single-machine loop). ``val``: the validation
    ratings on the cluster (a :class:`~mfkit.distributed._validate.ClusterValidation`)."""
    history = cm.history_
    current = cm.parts
    done = 0
    patience = params["patience"] if val is not None else None
    monitor, higher_is_better = cm.model._monitor(params)
    best: tuple[float, int] | None = None  # (score, epoch) of the best epoch so far
    # the best epoch's parts and their backups (futures: held, not copied)
    best_parts: tuple[tuple[list[Future], list[Future]], Any] | None = None
    wait = 0
    k, dtype = cm.factors, cm.dtype
    name = type(cm.model).__name__
    try:
        for epoch in range(1, params["epochs"] + 1):
            t0 = time.perf_counter()
            rmse, new = trainer.run_epoch(epoch, current)
            seconds = time.perf_counter() - t0
            if new is None or not math.isfinite(rmse):
                cm.stop_reason_ = "diverged"
                why = trainer.failure or "a residual became NaN or inf; raise regularization"
                raise DivergenceError(
                    f"{name} failed in epoch {epoch}: {why}. A fit with keep_on_cluster=True "
                    f"releases its factors when it fails"
                )
            why = ""
            if rmse > BLOWUP_FACTOR * max(scale, 1e-12):
                why = (
                    f"the training RMSE grew to {rmse:.3g}, over {BLOWUP_FACTOR:g} times the "
                    f"ratings' scale ({scale:.3g})"
                )
            elif trainer.bound(k, cm.global_mean_) >= SAFE_PREDICTION[dtype.char]:
                why = f"the factors grew so large that predictions overflow {dtype}"
            if why:
                del new
                cm.stop_reason_ = "diverged"
                raise DivergenceError(
                    f"{name} diverged in epoch {epoch}: {why}; raise regularization. A fit "
                    f"with keep_on_cluster=True releases its factors when it fails"
                )
            if epoch == 1:
                scale = max(scale, rmse)
            # the previous epoch's parts are released as their last references go
            current = new
            cm.parts = current
            done = epoch
            record = {
                "epoch": float(epoch),
                "train_rmse": rmse,
                "val_rmse": math.nan,
                "val_mae": math.nan,
                "seconds": seconds,
            }
            if val is not None:
                record.update(_scored(val, trainer, current))
            for key in history:
                history[key].append(record[key])
            if params.get("verbose"):
                print(f"epoch {epoch}: train_rmse={rmse:.5f} ({seconds:.2f} s)")
            if patience is not None:
                # as one machine: compared as "lower is better"
                score = -record[monitor] if higher_is_better else record[monitor]
                if best is None or score < best[0] - params["tol"]:
                    best = (score, epoch)
                    best_parts = (
                        (list(current[0]), list(current[1])),
                        (list(trainer.backups[0]), list(trainer.backups[1])),
                    )
                    wait = 0
                else:
                    wait += 1
                    if wait >= patience:
                        cm.stop_reason_ = "early_stopping"
                        break
            if callback is not None and callback(cm, record) is False:
                cm.stop_reason_ = "callback"
                break
    except KeyboardInterrupt:
        if done == 0:
            raise
        cm.stop_reason_ = "interrupted"
        warnings.warn(
            f"training interrupted during epoch {done + 1}; the model keeps the factors of "
            f"epoch {done}",
            UserWarning,
            stacklevel=3,
        )
        return cm
    if best is not None and best_parts is not None:
        # the best epoch's factors, as one machine keeps them (its backups for lost parts)
        kept, spare = best_parts
        try:
            trainer.restore(kept, spare)
        except trainer.lost:
            pass
        cm.parts = kept
        cm.best_epoch_ = best[1]
    return cm


def _scored(val: Any, trainer: ResidentTrainer, current: Any) -> dict[str, float]:
    """The validation scores of ``current``, scored again after a lost worker (whose
    parts the backups replace)."""
    for attempt in range(trainer.retries + 1):
        try:
            return dict(val.score(current))
        except trainer.lost:
            if attempt == trainer.retries:
                raise
            try:
                trainer.restore(current, trainer.backups)
            except trainer.lost:
                pass
            time.sleep(min(0.25 * 2**attempt, 5.0))
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["ClusterModel", "ResidentTrainer", "initial_parts", "run_resident"]
