"""The README's pictures, measured in this run: SGD throughput by library and RMSE by library.

Prints two tables and draws each as a PNG chart with :mod:`mfkit.plot` (needs matplotlib):

1. Throughput: rating updates per second of one SGD epoch (k=64, float32) on a synthetic
   MovieLens-1M-shaped set: mfkit's SGD with 1 and 2 threads, a plain Python/NumPy SGD loop
   (one Python iteration per rating, the way Surprise's SVD updates; timed on a 20,000-rating
   slice) and scikit-surprise's SVD when it is importable.
2. Accuracy: held-out RMSE per epoch of mfkit's SGD and ALS (k=64) on a 10% test split of the
   same set, with two references computed in NumPy in the same run: the global mean, and
   the damped user and item bias baseline (Koren 2010).

Everything is synthetic (``mfkit.datasets.synthetic``): no download, and the same seed gives
the same RMSE figures on any machine (the throughput figures depend on the machine, which
the output records).

    python benchmarks/bench_figures.py --out docs      # writes docs/throughput.png, docs/rmse.png
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import matplotlib
import numpy as np
from benchutil import machine_info, print_table

import mfkit
from mfkit import plot
from mfkit.model_selection import train_test_split

matplotlib.use("Agg")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def python_sgd_rate(train: mfkit.Ratings, k: int, n: int, seed: int = 0) -> float:
    """Updates per second of a per-rating Python loop over NumPy rows (the biased SGD
    update of Funk / Surprise's SVD, learning rate 0.005, regularization 0.02)."""
    rng = np.random.default_rng(seed)
    u_all, i_all, r_all = train.to_triplets()
    pick = rng.choice(len(r_all), size=min(n, len(r_all)), replace=False)
    u, i, r = u_all[pick], i_all[pick], r_all[pick].astype(np.float64)
    P = rng.normal(0, 0.1, (train.n_users, k))
    Q = rng.normal(0, 0.1, (train.n_items, k))
    bu = np.zeros(train.n_users)
    bi = np.zeros(train.n_items)
    mu = float(r_all.mean())
    lr, reg = 0.005, 0.02
    t0 = time.perf_counter()
    for a, b, x in zip(u.tolist(), i.tolist(), r.tolist(), strict=True):
        pu, qi = P[a], Q[b]
        err = x - (mu + bu[a] + bi[b] + pu @ qi)
        bu[a] += lr * (err - reg * bu[a])
        bi[b] += lr * (err - reg * bi[b])
        P[a] = pu + lr * (err * qi - reg * pu)
        Q[b] = qi + lr * (err * pu - reg * qi)
    return len(r) / (time.perf_counter() - t0)


def surprise_rate(train: mfkit.Ratings, k: int) -> float | None:
    try:
        import pandas as pd
        from surprise import SVD, Dataset, Reader
    except ImportError:
        return None
    u, i, r = train.to_triplets()
    df = pd.DataFrame({"u": u, "i": i, "r": r})
    ts = Dataset.load_from_df(df, Reader(rating_scale=(1, 5))).build_full_trainset()
    algo = SVD(n_factors=k, n_epochs=1, random_state=0)
    t0 = time.perf_counter()
    algo.fit(ts)
    return train.nnz / (time.perf_counter() - t0)


def mfkit_rate(train: mfkit.Ratings, k: int, threads: int, epochs: int) -> float:
    m = mfkit.SGD(factors=k, epochs=epochs, n_threads=threads, random_state=0).fit(train)
    return train.nnz / float(np.median(m.history_["seconds"]))


def bias_baseline_rmse(train: mfkit.Ratings, test: mfkit.Ratings, damping: float = 5.0) -> float:
    """RMSE of mu + b_u + b_i with damped means (item biases first, then user biases)."""
    u, i, r = train.to_triplets()
    mu = float(r.mean())
    bi = np.bincount(i, r - mu, train.n_items) / (np.bincount(i, None, train.n_items) + damping)
    res = r - mu - bi[i]
    bu = np.bincount(u, res, train.n_users) / (np.bincount(u, None, train.n_users) + damping)
    tu, ti, tr = test.to_triplets()
    return float(np.sqrt(np.mean((tr - (mu + bu[tu] + bi[ti])) ** 2)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs", help="folder for the PNG files (default: docs)")
    p.add_argument("--preset", default="ml-1m", help="synthetic set (default: ml-1m)")
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--epochs", type=int, default=20, help="epochs of the accuracy fits")
    p.add_argument("--python-ratings", type=int, default=20_000)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    info = machine_info()
    info["load average"] = f"{os.getloadavg()[0]:.1f}"
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))

    data = mfkit.datasets.synthetic(args.preset, random_state=0)
    train, test = train_test_split(data, 0.1, random_state=0)
    k = args.factors
    log(f"data: synthetic {args.preset!r} {data}")

    # ------------------------------------------------------------------ throughput
    rows: list[dict[str, Any]] = []
    for threads in (1, 2):
        rate = mfkit_rate(train, k, threads, epochs=3)
        rows.append({"library": "mfkit SGD", "threads": threads, "updates/s": rate})
        log(f"mfkit {threads} thread(s): {rate / 1e6:.1f} M/s")
    py = python_sgd_rate(train, k, args.python_ratings)
    rows.append({"library": "Python loop (NumPy rows)", "threads": 1, "updates/s": py})
    sr = surprise_rate(train, k)
    if sr is not None:
        rows.append({"library": "Surprise SVD", "threads": 1, "updates/s": sr})
    base = rows[0]["updates/s"]
    for row in rows:
        row["x mfkit 1 thread"] = row["updates/s"] / base
    print_table(
        rows,
        f"SGD rating updates per second, k={k}, float32, synthetic {args.preset!r} "
        f"({train.nnz:,} training ratings); Surprise {'measured' if sr else 'not installed'}",
    )
    ax = plot.bar_chart(
        rows,
        "library",
        "updates/s",
        group="threads",
        log=True,
        title=f"SGD throughput, k={k}, {train.nnz / 1e6:.1f}M ratings\n{info['cpu']}, "
        f"{info['usable_cores']} cores, load average {info['load average']} during the run",
        xlabel="rating updates per second (log scale)",
    )
    ax.title.set_fontsize("medium")
    plot.save(ax, os.path.join(args.out, "throughput.png"))

    # ------------------------------------------------------------------ accuracy
    sgd = mfkit.SGD(factors=k, epochs=args.epochs, random_state=0).fit(train, validation=test)
    als = mfkit.ALS(factors=k, epochs=args.epochs, random_state=0).fit(train, validation=test)
    mean_rmse = float(np.sqrt(np.mean((test.values - train.values.mean()) ** 2)))
    bias_rmse = bias_baseline_rmse(train, test)
    acc = [
        {"model": "global mean (NumPy)", "test RMSE": mean_rmse, "fit s": 0.0},
        {"model": "bias baseline (NumPy)", "test RMSE": bias_rmse, "fit s": 0.0},
    ]
    for name, m in (("mfkit SGD", sgd), ("mfkit ALS", als)):
        h = m.history_
        acc.append(
            {"model": name, "test RMSE": h["val_rmse"][-1], "fit s": float(np.sum(h["seconds"]))}
        )
    print_table(acc, f"held-out RMSE after {args.epochs} epochs, k={k}, 10% test split")
    ax = plot.learning_curves({"mfkit SGD": sgd, "mfkit ALS": als})
    ax.axhline(bias_rmse, color="grey", ls="-.", lw=1, label="bias baseline (NumPy)")
    ax.legend(fontsize="small")
    ax.set_title(f"held-out RMSE per epoch, k={k}, synthetic {args.preset!r}")
    plot.save(ax, os.path.join(args.out, "rmse.png"))
    print(f"\nwrote {args.out}/throughput.png and {args.out}/rmse.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
