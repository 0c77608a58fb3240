"""Benchmark of mfkit.ALS (or BayesianMF) on a Dask cluster against the same fit on one machine.

A seeded synthetic rating set (heavy-tailed users, ``--ratings`` ratings) is written as
Parquet files, one per partition; the workers read them (``dask.dataframe.read_parquet``),
so the client never holds the ratings. For each worker count a ``LocalCluster`` of worker
processes (``--threads-per-worker`` threads each) fits the same ALS as one machine with the
same total threads; the table reports seconds per iteration for both and their ratio, whether
the factors are byte-identical, and the bytes per iteration that Dask's own counters saw
(``Worker.transfer_outgoing_bytes_total``: worker-to-worker fetches of the fixed side, and
the solved rows returned to the client) next to the formula's prediction. The counted bytes
per iteration are read after each iteration (the first, which may still move shards, is
left out); ``--iterations`` must be at least 2.

Formula (W workers, k factors, 4-byte floats, m = n_users + n_items):
  per iteration, counted by Dask:  (W - 1) * 4 * (k + 1) * m   (the fixed side fetched by
                                   the workers that did not receive it from the client)
                                 + 4 * (k + 1) * m             (new rows back to the client)
                                 + 8 * n_items                 (per-item squared errors)
  plus, not counted by Dask:       4 * (k + 1) * m             (the client's one copy out)

With ``--keep-on-cluster`` the factors stay on the workers and each half-step sends every
shard its out-block, only the opposite rows it rates (Spark's out-blocks); per iteration:
  4 * (k + 1) * sum over both sides of sum over (shard s, opposite shard t on another
                worker) of the rows of t that s rates           (the out-blocks)
+ 4 * (k + 1) * m                                              (each solved shard copied to
                                                                a second worker)
+ 8 * n_items                                                  (per-item squared errors)
The table then also shows what the broadcast formula above would send for comparison.

With ``--model bayes`` the model is mfkit.BayesianMF (``--iterations`` Gibbs sweeps, a
quarter of them burn-in): the client makes the hyperparameter and noise draws and the
workers sample the rows, so a sweep sends what a gathered ALS iteration sends (the broadcast
formula above; the K x K priors ride in the tasks). "identical" then compares every kept
sample (factors, bias samples, noise precisions).

Examples::

    python benchmarks/bench_dask.py                                 # 1M ratings, k=32
    python benchmarks/bench_dask.py --ratings 10000000 --factors 64 # the 10M floor run
    python benchmarks/bench_dask.py --workers 2 4 8 --shards-per-worker 2
    python benchmarks/bench_dask.py --keep-on-cluster --workers 2 4
    python benchmarks/bench_dask.py --model bayes                   # BayesianMF sweeps
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchutil import machine_info, print_table

import mfkit


def digest(m: Any) -> str:
    h = hashlib.sha256()
    arrays = [m.user_factors_, m.item_factors_, m.user_biases_, m.item_biases_]
    if isinstance(m, mfkit.BayesianMF):
        arrays += [m.user_bias_samples_, m.item_bias_samples_, m.noise_precision_samples_]
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def write_parquet(n_ratings: int, partitions: int, folder: Path) -> tuple[Any, int, int]:
    import pandas as pd

    n_users = max(100, n_ratings // 143)
    n_items = max(50, min(20_000, n_ratings // 900))
    X = mfkit.datasets.synthetic(
        None, n_users=n_users, n_items=n_items, n_ratings=n_ratings, random_state=0
    )
    u, i, r = X.to_triplets()
    order = np.random.default_rng(1).permutation(len(r))  # files in no particular order
    df = pd.DataFrame({"user": u[order].astype(np.int64), "item": i[order].astype(np.int64)})
    df["rating"] = r[order].astype(np.float64)
    for p, part in enumerate(np.array_split(np.arange(len(df)), partitions)):
        df.iloc[part].to_parquet(folder / f"part-{p:03d}.parquet", index=False)
    return df, X.n_users, X.n_items


def counted_bytes(client: Any) -> int:
    totals = client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
    return int(sum(totals.values()))


def outblock_bytes(cm: Any, k: int, itemsize: int) -> int:
    """The out-block bytes of one iteration of a fit kept on the cluster: the rows each
    shard rates of the opposite shards held by other workers."""
    rows = 0
    for side in (0, 1):
        sizes = cm.ref_sizes[side]
        for s in range(sizes.shape[0]):
            for t in range(sizes.shape[1]):
                if cm.homes[side][s] != cm.homes[1 - side][t]:
                    rows += int(sizes[s, t])
    return itemsize * (k + 1) * rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--factors", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--shards-per-worker", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument(
        "--keep-on-cluster",
        action="store_true",
        help="keep the factors on the workers (out-blocks) instead of gathering them",
    )
    ap.add_argument(
        "--model",
        choices=["als", "bayes"],
        default="als",
        help="ALS (default) or BayesianMF (Gibbs sweeps; not with --keep-on-cluster)",
    )
    args = ap.parse_args()
    if args.model == "bayes" and args.keep_on_cluster:
        ap.error("--keep-on-cluster is not available for --model bayes")

    import dask.dataframe as dd
    import distributed

    info = machine_info()
    print("# machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    params: dict[str, Any] = dict(factors=args.factors, epochs=args.iterations, random_state=0)
    if args.model == "als":
        model_class: Any = mfkit.ALS
        params["regularization"] = 0.05
    else:
        model_class = mfkit.BayesianMF
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        df, n_users, n_items = write_parquet(args.ratings, args.partitions, Path(tmp))
        print(
            f"# data: {len(df):,} ratings, {n_users:,} users x {n_items:,} items, "
            f"{args.partitions} Parquet files; {model_class.__name__}, k={args.factors}, "
            f"{args.iterations} iterations"
        )
        for W in args.workers:
            threads = W * args.threads_per_worker
            ref = model_class(**params, n_threads=threads).fit(df)
            one = float(np.median(ref.history_["seconds"]))
            with (
                distributed.LocalCluster(
                    n_workers=W,
                    processes=True,
                    threads_per_worker=args.threads_per_worker,
                    dashboard_address=":0",
                    silence_logs=40,
                ) as cluster,
                distributed.Client(cluster) as client,
            ):
                ddf = dd.read_parquet(tmp)
                shards = W * args.shards_per_worker
                opts = dict(client=client, shards=shards)
                counts: list[int] = []
                t0 = time.perf_counter()

                def after_epoch(model: Any, record: dict[str, float]) -> None:
                    counts.append(counted_bytes(client))  # noqa: B023

                m = mfkit.distributed.fit(
                    model_class(**params, n_threads=args.threads_per_worker),
                    ddf,
                    callback=after_epoch,
                    keep_on_cluster=args.keep_on_cluster,
                    **opts,
                )
                setup = time.perf_counter() - t0 - sum(m.history_["seconds"])
                rows_bytes = 4 * (args.factors + 1) * (n_users + n_items)
                broadcast = (W - 1) * rows_bytes + rows_bytes + 8 * n_items
                if args.keep_on_cluster:
                    copies = rows_bytes if W >= 2 else 0
                    predicted = outblock_bytes(m, args.factors, 4) + copies + 8 * n_items
                    m = m.to_model()
                else:
                    predicted = broadcast
            per_it = float(np.median(m.history_["seconds"]))
            # the steady state: what the iterations after the first moved
            measured = (counts[-1] - counts[0]) / max(1, len(counts) - 1)
            extra = {"broadcast MB/it": f"{broadcast / 1e6:.2f}"} if args.keep_on_cluster else {}
            rows.append(
                {
                    "model": model_class.__name__,
                    "mode": "on cluster" if args.keep_on_cluster else "gathered",
                    "workers": W,
                    "shards/side": shards,
                    "threads": threads,
                    "setup s": f"{setup:.2f}",
                    "1 machine s/it": f"{one:.3f}",
                    "dask s/it": f"{per_it:.3f}",
                    "ratio": f"{per_it / one:.2f}",
                    "identical": digest(m) == digest(ref),
                    "counted MB/it": f"{measured / 1e6:.2f}",
                    "formula MB/it": f"{predicted / 1e6:.2f}",
                    "counted/formula": f"{measured / predicted:.2f}",
                    **extra,
                }
            )
    print_table(rows, title=f"mfkit.{model_class.__name__} on a Dask LocalCluster vs one machine")
    if not all(r["identical"] for r in rows):
        sys.exit("distributed factors differ from the single-machine factors")


if __name__ == "__main__":
    main()
