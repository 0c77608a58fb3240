"""BayesianMF on a Dask cluster: the single-machine Gibbs run, with the row draws on the
workers.

The client runs :class:`mfkit.models.bayes.GibbsSampler` itself, so it makes every random
draw one machine makes, in the same order: the starting factors, the Normal-Wishart
hyperparameters of each side (from all the side's current rows, which the client holds),
the noise precision, and it keeps the samples and averages them. Only the row draws of
each half-sweep (:func:`mfkit.models.bayes.sample_rows`) run on the workers, on the
resident user and item shards of :mod:`mfkit.distributed._shards`: every shard samples its
rows with the normals of their global rows (``row_offset``), and the item shards return
their rows' squared residuals, which the client sums over all items in the single-machine
order. The samples are therefore byte-identical to ``BayesianMF.fit`` on one machine for
any number of workers, shards, partitions and threads.

Per half-sweep the client sends the fixed side's factors and biases once (the workers fetch
it from each other) and the K x K prior, and receives the new rows of the other side (and
one float64 per item in the item half).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mfkit._core.isa import get_isa
from mfkit._core.validation import check_number, check_random_state
from mfkit.distributed import _tasks
from mfkit.distributed._cluster import gather_within
from mfkit.distributed._shards import (
    DEFAULT_TIMEOUT,
    Columns,
    HalfSteps,
    build_shards,
    check_frame,
    computed,
    dask_modules,
    gather_seen,
    get_client,
)
from mfkit.models.bayes import BAYES_HISTORY_KEYS, BayesianMF, GibbsSampler, refuse_init


class ClusterRows:
    """The row draws of a Gibbs run on the shards resident on a cluster: each half-sweep
    broadcasts the fixed side and samples every shard of the other where it lives."""

    def __init__(self, steps: HalfSteps, n_threads: int, isa: str) -> None:
        self.steps, self.n_threads, self.isa = steps, n_threads, isa

    def sample(
        self,
        side: int,
        Y: np.ndarray,
        X: np.ndarray,
        ybias: np.ndarray | None,
        xbias: np.ndarray | None,
        draw: dict[str, Any],
        row_sse: np.ndarray | None,
    ) -> None:
        firsts = [(int(a),) for a in self.steps.edges[side][:-1]]
        options = dict(
            draw,
            side=side,
            want_sse=row_sse is not None,
            n_threads=self.n_threads,
            isa=self.isa,
        )
        failed = self.steps.run(
            side, _tasks.sample_shard, (Y, ybias), lambda: firsts, options, X, xbias, row_sse
        )
        if failed is not None:
            # the shard's message names the global row, as one machine's does
            raise np.linalg.LinAlgError(failed[2])


def fit_bayes(
    model: BayesianMF,
    data: Any,
    validation: Any = None,
    *,
    init: Any = None,
    callback: Any = None,
    client: Any = None,
    shards: int | None = None,
    cols: Columns = ("user", "item", "rating"),
    seen: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 5,
    keep_on_cluster: bool = False,
) -> BayesianMF:
    """Fit a :class:`mfkit.BayesianMF` to a Dask DataFrame on a cluster (the options are
    those of :func:`mfkit.distributed.fit`, which calls this). ``keep_on_cluster=True`` is
    refused: the hyperparameter draws of every half-sweep need all of the side's current
    rows on the client, so the factors are gathered there."""
    dask, distributed = dask_modules()
    check_frame(data, cols)
    timeout = check_number(timeout, "timeout", low=0, low_inclusive=False)
    retries = check_number(retries, "retries", low=0, integer=True)
    params = model._check_params()
    refuse_init(init)
    if not isinstance(keep_on_cluster, bool | np.bool_):
        raise TypeError(f"keep_on_cluster must be True or False, got {keep_on_cluster!r}")
    if keep_on_cluster:
        raise ValueError(
            "keep_on_cluster=True is not available for BayesianMF: each half-sweep draws "
            "the prior from all of a side's current rows, which the client holds; fit with "
            "keep_on_cluster=False (the default), which needs the factors (and the kept "
            "samples) to fit in the client's memory"
        )
    rng = check_random_state(model.random_state)
    client = get_client(distributed, client)
    n_shards = None if shards is None else check_number(shards, "shards", low=1, integer=True)
    res = build_shards(client, dask, data, cols, n_shards, timeout)
    try:
        info = res.info
        val = None
        if validation is not None:
            val = model._validation_arrays(computed(validation), res.summary)
        seen_arrays = gather_seen(client, res.shards[0], timeout) if seen else None
        # the exact sum of squares, shard by shard: with the exact sum, the starting noise
        # precision one machine computes from all ratings
        squares = gather_within(
            [
                client.submit(_tasks.shard_sum_sq, sh, workers=home, allow_other_workers=True)
                for sh, home in zip(res.shards[0], res.homes[0], strict=True)
            ],
            timeout,
            "building the user shards",
            client,
        )
        rows = ClusterRows(
            HalfSteps.on(client, res, "bayes", timeout, retries),
            # Dask runs one task per worker thread: one kernel thread each unless asked
            1 if model.n_threads is None else int(params["n_threads"]),
            # the client's kernel path, on every worker: the bits of the one-machine fit
            get_isa(),
        )
        history: dict[str, list[float]] = {key: [] for key in BAYES_HISTORY_KEYS}
        trainer = GibbsSampler(
            res.summary,
            rows,
            biases=bool(model.biases),
            nnz=res.nnz,
            sums=(int(info["sum"]), sum(int(q) for q in squares)),
            rating_range=(float(info["min"]), float(info["max"])),
            seen=seen_arrays,
            history=history,
            rng=rng,
            params=params,
        )
        return model._run_sampler(trainer, val, params, callback)
    finally:
        res.release()


__all__ = ["ClusterRows", "fit_bayes"]
