"""ALS on a Dask cluster: the same half-step kernel on shards resident on the workers.

How a fit runs (Spark MLlib's block ALS, with mfkit's kernel):

1. and 2. The ratings are summarised and shuffled once into user (CSR) and item (CSC)
   shards resident on the workers (:mod:`mfkit.distributed._shards`).
3. Each half-step broadcasts the fixed side's factors and biases to the workers and solves
   every shard's rows with :func:`mfkit.models.als.half_step`; the client assembles the new
   rows. A row's result depends only on its own ratings and the fixed side, so the factors
   are byte-identical to a fit on one machine for any number of workers, shards and threads.

The epoch loop is the models' own (``FactorModel._run_fit``): validation scores, early
stopping, callbacks, divergence and Ctrl-C behave as on one machine.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from mfkit._core.exact import exact_mean
from mfkit._core.isa import get_isa
from mfkit._core.validation import check_number, check_random_state
from mfkit.distributed import _tasks
from mfkit.distributed._bayes import fit_bayes
from mfkit.distributed._cluster import gather_within, lost_errors
from mfkit.distributed._heldout import split_held_out
from mfkit.distributed._resident import ClusterModel, ResidentTrainer, initial_parts, run_resident
from mfkit.distributed._shards import (
    DEFAULT_TIMEOUT,
    ClusterRatings,
    HalfSteps,
    Resident,
    balanced_bounds,
    build_shards,
    check_frame,
    computed,
    dask_modules,
    gather_seen,
    get_client,
)
from mfkit.distributed._validate import ClusterValidation, validation_on_cluster
from mfkit.models import ALS, BayesianMF, FactorModel, Trainer
from mfkit.models._autoreg import (
    AUTO_START,
    check_interrupted,
    selection_generator,
    set_choice,
    walk_grid,
)
from mfkit.models._state import Fitted
from mfkit.models._training import SAFE_PREDICTION


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
        steps: HalfSteps,
        fitted: Fitted,
        prior: tuple[np.ndarray, np.ndarray] | None,
        model: ALS,
        params: dict[str, Any],
        nnz: int,
    ) -> None:
        self.client, self.steps = client, steps
        self.edges = steps.edges
        self.state = fitted.state
        self.biases = bool(model.biases)
        self.cg = params["solver"] == "cg"
        self.nnz = nnz
        self.failure: str | None = None
        self.options = solve_options(fitted.global_mean, model, params)
        self.priors: tuple[list[Any], list[Any]] | None = None
        if prior is not None and params["prior_regularization"] > 0:
            self.priors = tuple(
                client.scatter(
                    [np.ascontiguousarray(P0[a:b]) for a, b in zip(e[:-1], e[1:], strict=True)],
                    hash=False,
                )
                for P0, e in zip(prior, self.edges, strict=True)
            )

    def _half_step(self, side: int) -> np.ndarray | None:
        state, client = self.state, self.client
        X, xbias, Y, ybias = (
            (state.P, state.bu, state.Q, state.bi)
            if side == 0
            else (state.Q, state.bi, state.P, state.bu)
        )
        edges = self.edges[side]
        sse = np.zeros(len(X), dtype=np.float64) if side == 1 else None

        def extras() -> list[tuple[Any, ...]]:
            # each shard's (start, prior); the conjugate-gradient solver starts from the
            # current rows and biases
            starts: list[Any] = [None] * (len(edges) - 1)
            if self.cg:
                starts = client.scatter(
                    [
                        (X[a:b].copy(), xbias[a:b].copy() if self.biases else None)
                        for a, b in zip(edges[:-1], edges[1:], strict=True)
                    ],
                    hash=False,
                )
            priors = [None] * len(starts) if self.priors is None else self.priors[side]
            return list(zip(starts, priors, strict=True))

        failed = self.steps.run(
            side,
            _tasks.solve_shard,
            (Y, ybias if self.biases else None),
            extras,
            dict(self.options, want_sse=side == 1),
            X,
            xbias if self.biases else None,
            sse,
        )
        if failed is not None:
            a, b, error = failed
            label = "user" if side == 0 else "item"
            self.failure = f"{label} half-step, {label}s {a} to {b - 1}: {error}"
            return None
        return sse if sse is not None else np.zeros(0)

    def fitted_attributes(self) -> dict[str, Any]:
        return {"isa": self.options["isa"]}

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
    """Fit ``model`` (an :class:`mfkit.ALS` or :class:`mfkit.BayesianMF`) to a Dask
    DataFrame of ratings on a cluster.

    ``model.fit(ddf)`` calls this with the defaults; call it directly for the options. The
    ratings stay on the workers: the client holds the id maps, the factors and (with
    ``seen=True``) which items each user rated. The fitted model is an ordinary mfkit model,
    byte-identical to ``model.fit(ddf.compute())`` on one machine.

    Parameters
    ----------
    model : ALS or BayesianMF
        The estimator; its parameters apply unchanged. A BayesianMF runs its Gibbs sampler
        on the client (every random draw but the rows') and draws the rows shard by shard
        on the workers: the same samples as on one machine.
    data : dask.dataframe.DataFrame
        Ratings with columns ``user_col``, ``item_col``, ``rating_col`` (integer or string
        ids; any number of partitions). :func:`read_ratings` makes one from rating files.
    validation : Dask or pandas DataFrame, or anything ``ALS.fit`` accepts, optional
        Held-out ratings, gathered to the client (they are small) and scored every epoch;
        with ``keep_on_cluster=True`` kept and scored on the workers instead.
    init, callback
        As for the model's ``fit`` (BayesianMF takes no ``init``).
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
        ``patience`` as on one machine; ``regularization='auto'`` runs its grid fits the
        same way, on the held-out ratings left on the workers. It is not available for
        BayesianMF (a ValueError: its prior draws need all the current rows
        on the client).

    Returns
    -------
    model, fitted (or a ClusterModel with ``keep_on_cluster=True``)

    What a lost worker does: the shards it held are recomputed by Dask from the input
    partitions (read again from the files or the graph) and its half-step tasks run again
    elsewhere, with the same bits. A fit survives any worker (its nanny restarting it or
    not) as long as one worker remains; it does not survive the loss of the scheduler or of
    the client, which holds the factors.
    """
    cols = (user_col, item_col, rating_col)
    if isinstance(model, BayesianMF):
        return fit_bayes(
            model, data, validation, init=init, callback=callback, client=client,
            shards=shards, cols=cols, seen=seen, timeout=timeout, retries=retries,
            keep_on_cluster=keep_on_cluster,
        )  # fmt: skip
    dask, distributed = dask_modules()
    if not isinstance(model, ALS):
        raise TypeError(
            f"{type(model).__name__} cannot be fitted on a Dask cluster yet; use mfkit.ALS "
            f"or mfkit.BayesianMF (or compute the DataFrame and fit it in memory)"
        )
    check_frame(data, cols)
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
    client = get_client(distributed, client)
    n_shards = None if shards is None else check_number(shards, "shards", low=1, integer=True)
    res = build_shards(client, dask, data, cols, n_shards, timeout)
    info, summary, nnz = res.info, res.summary, res.nnz
    total, lo, hi = info["sum"], info["min"], info["max"]
    resident = False  # whether a returned ClusterModel holds the shards now
    try:
        # regularization='auto': the grid fits on the held-out split of the resident shards,
        # before the main fit's draws (as on one machine)
        scores = None
        if params["regularization"] == "auto":
            scores = _choose_regularization(
                client, model, rng, res, params, init, timeout, retries, keep_on_cluster
            )
        if keep_on_cluster:
            cm = _fit_resident(
                client, model, summary, info, res.shards, res.homes, res.edges, params, init,
                rng, callback, seen, timeout, retries, validation, cols, res.id_maps, scores,
            )  # fmt: skip
            # its factors descend from the shards: the shards it does not hold are released
            # as their references go, and their lineage stays with Dask
            resident = True
            return cm
        seen_arrays = gather_seen(client, res.shards[0], timeout) if seen else None

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
            val = model._validation_scorer(computed(validation), summary, params)
        trainer = DaskALSTrainer(
            client, HalfSteps.on(client, res, "als", timeout, retries), fitted, prior, model,
            params, nnz,
        )  # fmt: skip
        # the ratings' RMS (a float sum of the shards' sums of squares: it only sets the
        # threshold of the divergence check)
        scale = math.sqrt(info["sum_sq"] / nnz)
        return model._run_fit(fitted, trainer, val, params, callback, scale, before)
    finally:
        if not resident:
            res.release()


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
    model: ALS,
    rng: np.random.Generator,
    res: Resident,
    params: dict[str, Any],
    init: Any,
    timeout: float,
    retries: int,
    resident: bool,
) -> list[tuple[float, float]]:
    """``regularization='auto'`` on the cluster: one machine's rule
    (:func:`mfkit.models._autoreg.select_regularization`) with its held-out split made
    shard by shard (:mod:`mfkit.distributed._heldout`) and its grid fits run as cluster
    fits on the training shards; the same value, scores and draws. ``resident``: the grid
    fits keep their factors on the cluster too (``keep_on_cluster=True``), scored there on
    the held ratings, which stay on the workers. Puts the value into ``params`` and
    returns the scores."""
    summary, homes, edges = res.summary, res.homes, res.edges
    sel = selection_generator(rng)
    scale = model._regularization_scale(summary, params)  # type: ignore[arg-type]
    split = split_held_out(
        client, sel, res.shards, homes, edges, summary.user_counts(), summary.n_users, timeout,
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
                held, ("user", "item", "rating"), None, None,
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

        steps = HalfSteps(client, split.shards, homes, edges, "als-grid", timeout, retries)
        trainer = DaskALSTrainer(client, steps, fitted, prior, sub, sub_params, split.nnz)
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
    scores: list[tuple[float, float]] | None,
) -> ClusterModel:
    """The fit with ``keep_on_cluster=True`` (see :mod:`mfkit.distributed._resident`);
    ``validation``: a Dask DataFrame scored on the cluster (:mod:`._validate`), validation
    ratings already there (a ClusterValidation, left to the caller), or None; ``id_maps``:
    a task of the training (user ids, item ids); ``scores``: those of
    ``regularization='auto'``."""
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
                client, validation, cols, id_maps, summary.shape, edges, len(edges[0]) - 1,
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


__all__ = ["DaskALSTrainer", "fit", "solve_options"]
