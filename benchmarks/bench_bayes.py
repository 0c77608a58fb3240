"""BayesianMF speed and memory: one Gibbs sweep against one ALS Cholesky iteration.

On a synthetic set (``--preset``, default ml-10m: 69,878 users x 10,677 items, 10M ratings),
at ``--k`` factors, the script times ``--sweeps`` Gibbs sweeps of ``mfkit.BayesianMF`` and as
many Cholesky iterations of ``mfkit.ALS`` (both ``biases=True``, float32), each with
``--threads`` threads, and prints seconds per sweep/iteration and their ratio. It then fits
BayesianMF with 1 thread (and 3 with ``--identity``) and checks that the samples are
bit-identical. The peak memory of a BayesianMF fit (the training CSR plus every NumPy
allocation made during ``fit``, traced in a child process) is compared with the bound
``(CSR + CSC + (keep + 2) x factors) x 1.5``.

With ``--seed-spread FILE`` it instead measures how much the 5-fold RMSE of
``BayesianMF()`` at its defaults moves with the seed alone (a finite chain's Monte Carlo
error), for ``--seeds`` seeds, and, with ``--numpy-seeds M``, of the plain NumPy Gibbs
sampler of ``bench_accuracy.py`` (same model and priors) for M seeds, on the same folds: a
difference between the two smaller than the seed spread is not evidence that either
samples worse.

Examples::

    python benchmarks/bench_bayes.py --preset ml-1m --k 64       # a quick look
    python benchmarks/bench_bayes.py                              # 10M ratings, k=64
    python benchmarks/bench_bayes.py --seed-spread u.data --seeds 4 --numpy-seeds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from benchutil import machine_info, peak_rss_mb, print_table

import mfkit


def per_epoch(model: mfkit.models.FactorModel, X: mfkit.Ratings) -> tuple[float, float]:
    t0 = time.perf_counter()
    model.fit(X)
    total = time.perf_counter() - t0
    return float(np.median(model.history_["seconds"])), total


def child(preset: str, k: int, sweeps: int, keep: int, threads: int) -> None:
    import tracemalloc

    X = mfkit.datasets.synthetic(preset, random_state=0)
    m = mfkit.BayesianMF(factors=k, epochs=sweeps, burn_in=0, keep=keep, n_threads=threads)
    tracemalloc.start()  # NumPy reports its buffers to tracemalloc
    m.fit(X)
    fit_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    csr = X.indptr.nbytes + X.indices.nbytes + X.values.nbytes
    one = (X.n_users + X.n_items) * (k + 1) * 4
    bound = (2 * csr + (keep + 2) * one) * 1.5
    print(json.dumps({"csr_mb": csr / 2**20, "fit_peak_mb": fit_peak / 2**20,
                      "total_mb": (csr + fit_peak) / 2**20, "bound_mb": bound / 2**20,
                      "rss_mb": peak_rss_mb()}))  # fmt: skip


def seed_spread(path: str, seeds: int, numpy_seeds: int, threads: int) -> None:
    from bench_accuracy import folds, load_file, numpy_gibbs, run_mfkit, scores

    X = load_file(path)
    splits = folds(X, 5, 0)
    rows: list[dict[str, Any]] = []
    runs: list[tuple[str, int, Callable[[Any, Any], np.ndarray]]] = [
        ("mfkit BayesianMF()", s, run_mfkit(mfkit.BayesianMF(random_state=s, n_threads=threads)))
        for s in range(seeds)
    ]
    runs += [
        ("NumPy Gibbs (k=10, 100 sweeps)", s, numpy_gibbs(10, 100, s)) for s in range(numpy_seeds)
    ]
    for name, seed, run in runs:
        t0 = time.perf_counter()
        rmse = [scores(run(tr, te), te[2])[0] for tr, te in splits]
        rows.append({"sampler": name, "seed": seed, "rmse_5fold": float(np.mean(rmse)),
                     "fold_min": min(rmse), "fold_max": max(rmse),
                     "s_per_fold": (time.perf_counter() - t0) / len(splits)})  # fmt: skip
        print(f"# {name} seed {seed} done", flush=True)
    summary = []
    for name in dict.fromkeys(r["sampler"] for r in rows):
        v = np.array([r["rmse_5fold"] for r in rows if r["sampler"] == name])
        summary.append({"sampler": name, "seeds": len(v), "mean": float(v.mean()),
                        "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                        "min": float(v.min()), "max": float(v.max())})  # fmt: skip
    print_table(rows, f"5-fold RMSE by seed on {path} ({X.nnz:,} ratings), the same folds")
    print_table(summary, "seed spread of the 5-fold RMSE")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="ml-10m")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--keep", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--identity", action="store_true", help="also fit with 1 and 3 threads")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seed-spread", metavar="FILE", help="rating file: the seed-spread table")
    ap.add_argument("--seeds", type=int, default=4, help="BayesianMF seeds of --seed-spread")
    ap.add_argument("--numpy-seeds", type=int, default=0, help="NumPy sampler seeds")
    a = ap.parse_args()
    if a.seed_spread:
        print("machine: " + ", ".join(f"{k}={v}" for k, v in machine_info().items()))
        seed_spread(a.seed_spread, a.seeds, a.numpy_seeds, a.threads)
        return 0
    if a.child:
        child(a.preset, a.k, a.sweeps, a.keep, a.threads)
        return 0
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine_info().items()))
    X = mfkit.datasets.synthetic(a.preset, random_state=0)
    print(f"data: synthetic {a.preset}, {X.n_users} x {X.n_items}, {X.nnz} ratings, k={a.k}")
    X.csc_arrays()  # built once for both models, outside the timings
    s = a.sweeps
    bayes = mfkit.BayesianMF(factors=a.k, epochs=s, burn_in=0, keep=min(a.keep, s),
                             random_state=0, n_threads=a.threads)  # fmt: skip
    als = mfkit.ALS(factors=a.k, epochs=s, random_state=0, n_threads=a.threads)
    b_sweep, _ = per_epoch(bayes, X)
    a_iter, _ = per_epoch(als, X)
    rows = [
        {"model": "BayesianMF sweep", "threads": a.threads, "s_median": b_sweep},
        {"model": "ALS Cholesky iteration", "threads": a.threads, "s_median": a_iter},
        {"model": "ratio sweep / iteration", "threads": a.threads, "s_median": b_sweep / a_iter},
    ]
    print_table(rows, f"one Gibbs sweep vs one ALS iteration (median of {s})")
    if a.identity:
        for t in (1, 3):
            other = mfkit.BayesianMF(**{**bayes.get_params(), "n_threads": t}).fit(X)
            same = all(
                np.array_equal(getattr(other, n), getattr(bayes, n))
                for n in ("user_factors_", "item_factors_", "user_bias_samples_",
                          "item_bias_samples_", "noise_precision_samples_")
            )  # fmt: skip
            print(f"samples with {t} thread(s) bit-identical to {a.threads}: {same}")
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--preset", a.preset, "--k", str(a.k),
         "--sweeps", str(s), "--keep", str(min(a.keep, s)), "--threads", str(a.threads)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    mem = json.loads(out.stdout.strip().splitlines()[-1])
    print_table(
        [{"CSR_mb": mem["csr_mb"], "fit_allocations_mb": mem["fit_peak_mb"],
          "CSR+fit_mb": mem["total_mb"], "bound_mb": mem["bound_mb"],
          "process_peak_rss_mb": mem["rss_mb"]}],
        f"peak memory of a BayesianMF fit (keep={min(a.keep, s)}; NumPy allocations traced "
        "during fit, plus the training CSR; the bound is (CSR + CSC + (keep + 2) x factors) x 1.5)",
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
