"""Benchmark of mfkit.ImplicitALS against implicit's AlternatingLeastSquares.

The data: a seeded synthetic explicit set shaped like MovieLens-20M (138,493 users x
26,744 items, 20M ratings), turned into implicit feedback with ``mfkit.to_implicit(ratings,
threshold=4)`` (one interaction per rating of 4 or more, value 1); ``--size 1m`` uses the
MovieLens-1M shape for a quick look. A seeded per-user holdout (``--holdout`` of each user's
interactions) is the test set.

Both libraries fit the same training matrix in the same process at equal settings:
``ImplicitALS(factors=k, regularization=r, alpha=a, cg_steps=s)`` and
``AlternatingLeastSquares(factors=k, regularization=r, alpha=1.0, cg_steps=s)`` on the matrix
with entries ``1 + a * value`` -- the same objective (see the ImplicitALS docstring); both
with ``n_threads`` OpenMP threads, float32, and BLAS limited to one thread (threadpoolctl, as
implicit recommends). Printed:

* seconds per iteration (median over ``--iterations`` iterations; implicit's own per-iteration
  timer, mfkit's ``history_['seconds']``, which includes mfkit's training-loss evaluation
  while implicit's loss is off) and the ratio mfkit / implicit, for ``use_cg`` True and False;
* a check of the objective mapping: one exact (Cholesky) iteration of each from the same
  starting factors, and the largest relative difference of the resulting factors;
* ranking quality after ``--quality-iterations`` iterations with the CG solver for each of
  ``--seeds``: precision@10, recall@10, NDCG@10 and MAP@10 by mfkit's metrics for both models
  (implicit's factors are scored by the same code), on up to ``--eval-users`` test users
  (a seeded sample, the same for both).

BPR (``--bpr-iterations`` epochs, 0 to leave it out): ``mfkit.BPR`` and implicit's
``BayesianPersonalizedRanking`` at the same factors, learning rate, regularization, epochs and
threads on the binary training matrix: samples per second (training interactions / median
epoch time), AUC on held-out (user, positive, sampled negative) triples, precision@10 and
NDCG@10 (implicit's factors carry its item-bias column; they are scored as they are).

implicit is an optional benchmark dependency (``pip install implicit``); without it only the
mfkit rows are printed.

Examples::

    python benchmarks/bench_implicit.py --size 1m          # a quick look
    python benchmarks/bench_implicit.py                    # the 10M set (a few minutes)
    python benchmarks/bench_implicit.py --seeds 0 1 2 --csv implicit.csv
    python benchmarks/bench_implicit.py --size 1m --no-als --bpr-iterations 30
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import statistics
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from benchutil import machine_info, peak_rss_mb, print_table

import mfkit
from mfkit.model_selection import per_user_split

SIZES = {"1m": "ml-1m", "20m": "ml-20m"}
METRICS = ("precision@10", "recall@10", "ndcg@10", "map@10")


def blas_one_thread() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, "blas")


def load_implicit() -> Any:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        return None
    return AlternatingLeastSquares


def load_implicit_bpr() -> Any:
    try:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        return None
    return BayesianPersonalizedRanking


def auc_pairs(
    train: mfkit.Ratings, test: mfkit.Ratings, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to n held-out (user, positive, negative) triples, the negative drawn uniformly
    from the items the user has neither in training nor in the test set."""
    rng = np.random.default_rng(seed)
    u_all, i_all = test.user_index().astype(np.int64), test.indices.astype(np.int64)
    pick = rng.choice(len(u_all), min(n, len(u_all)), replace=False)
    u, i = u_all[pick], i_all[pick]
    known = set(zip(train.user_index().tolist(), train.indices.tolist(), strict=True))
    known.update(zip(u_all.tolist(), i_all.tolist(), strict=True))
    j = rng.integers(0, train.n_items, len(u))
    for t in range(len(u)):
        while (int(u[t]), int(j[t])) in known:
            j[t] = rng.integers(0, train.n_items)
    return u, i, j


def auc(P: np.ndarray, Q: np.ndarray, triples: tuple[np.ndarray, ...]) -> float:
    u, i, j = triples
    Pu = np.asarray(P[u], dtype=np.float64)
    si = np.einsum("ij,ij->i", Pu, np.asarray(Q[i], dtype=np.float64))
    sj = np.einsum("ij,ij->i", Pu, np.asarray(Q[j], dtype=np.float64))
    return float(np.mean(si > sj) + 0.5 * np.mean(si == sj))


def build_data(
    size: str, holdout: float, seed: int, cache: str | None
) -> tuple[mfkit.Ratings, mfkit.Ratings]:
    """The training and test interactions (read from / written to ``cache`` folders)."""
    if cache is not None and os.path.isdir(f"{cache}-train"):
        train, test = mfkit.Ratings.load(f"{cache}-train"), mfkit.Ratings.load(f"{cache}-test")
        print(f"data: {cache}-train/-test, train {train.nnz:,}, test {test.nnz:,} (cached)")
        return train, test
    t0 = time.perf_counter()
    explicit = mfkit.datasets.synthetic(SIZES[size], random_state=seed)
    feedback = mfkit.to_implicit(explicit, threshold=4)
    train, test = per_user_split(feedback, holdout, random_state=seed)
    print(
        f"data: {SIZES[size]}-shaped synthetic, {explicit.nnz:,} ratings -> {feedback.nnz:,} "
        f"interactions (rating >= 4), {feedback.n_users:,} users x {feedback.n_items:,} items; "
        f"train {train.nnz:,}, test {test.nnz:,} ({time.perf_counter() - t0:.1f} s)"
    )
    if cache is not None:
        train.save(f"{cache}-train")
        test.save(f"{cache}-test")
    return train, test


def implicit_matrix(train: mfkit.Ratings, alpha: float) -> sp.csr_matrix:
    """The training matrix with entries 1 + alpha * value (implicit's confidences)."""
    conf = (1.0 + alpha * np.asarray(train.values, dtype=np.float64)).astype(np.float32)
    # writable copies: implicit's kernels take writable buffers
    return sp.csr_matrix((conf, train.indices.copy(), train.indptr.copy()), shape=train.shape)


def mfkit_model(args: argparse.Namespace, solver: str, epochs: int, seed: int) -> Any:
    return mfkit.ImplicitALS(
        factors=args.factors,
        epochs=epochs,
        regularization=args.regularization,
        alpha=args.alpha,
        solver=solver,
        cg_steps=args.cg_steps,
        dtype="float32",
        random_state=seed,
        n_threads=args.threads,
    )


def implicit_model(ALS: Any, args: argparse.Namespace, use_cg: bool, iters: int, seed: int) -> Any:
    m = ALS(
        factors=args.factors,
        regularization=args.regularization,
        alpha=1.0,
        dtype=np.float32,
        use_cg=use_cg,
        iterations=iters,
        calculate_training_loss=False,
        num_threads=args.threads,
        random_state=seed,
    )
    m.cg_steps = args.cg_steps
    return m


def fit_implicit(model: Any, C: sp.csr_matrix) -> list[float]:
    seconds: list[float] = []
    # implicit calls back with (iteration, seconds, ...): ALS adds the loss, BPR more
    model.fit(C, show_progress=False, callback=lambda *a: seconds.append(a[1]))
    return seconds


def as_mfkit(train: mfkit.Ratings, P: np.ndarray, Q: np.ndarray, args: argparse.Namespace) -> Any:
    """An mfkit model holding given factors (zero epochs from init), so that both libraries'
    factors are ranked and scored by the same code."""
    m = mfkit.ImplicitALS(factors=np.shape(P)[1], epochs=0, n_threads=args.threads)
    return m.fit(train, init=(np.asarray(P), np.asarray(Q)))


def eval_users(test: mfkit.Ratings, n: int, seed: int) -> mfkit.Ratings:
    users = np.flatnonzero(test.user_counts() > 0)
    if len(users) > n:
        users = np.sort(np.random.default_rng(seed).choice(users, n, replace=False))
    keep = np.isin(test.user_index(), users)
    return test.subset(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="20m")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--regularization", type=float, default=0.05)
    ap.add_argument("--alpha", type=float, default=10.0)
    ap.add_argument("--cg-steps", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=3, help="timed iterations per run")
    ap.add_argument("--quality-iterations", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--eval-users", type=int, default=20_000)
    ap.add_argument("--bpr-iterations", type=int, default=20, help="BPR epochs (0: no BPR)")
    ap.add_argument("--bpr-learning-rate", type=float, default=0.05)
    ap.add_argument("--bpr-regularization", type=float, default=0.01)
    ap.add_argument(
        "--bpr-blocks",
        default="auto",
        help="mfkit.BPR blocks ('auto' is 1, a serial epoch, below 500,000 interactions)",
    )
    ap.add_argument("--no-als", action="store_true", help="only the BPR tables")
    ap.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    ap.add_argument(
        "--cache",
        default=None,
        help="keep the generated train/test sets in the folders CACHE-train and CACHE-test "
        "(and read them from there on the next run)",
    )
    args = ap.parse_args()

    info = machine_info()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    ALS = load_implicit()
    if ALS is None:
        print("implicit is not installed: mfkit rows only (pip install implicit)")
    else:
        import implicit

        print(f"implicit {implicit.__version__}")
    print(
        f"settings: k={args.factors}, threads={args.threads}, float32, regularization="
        f"{args.regularization}, alpha={args.alpha} (implicit: alpha=1 on 1 + alpha * value), "
        f"cg_steps={args.cg_steps}"
    )
    train, test = build_data(args.size, args.holdout, 0, args.cache)
    C = implicit_matrix(train, args.alpha)
    rows: list[dict[str, Any]] = []

    with blas_one_thread():
        if not args.no_als:
            memory_table(args, train, rows)
            als_tables(args, ALS, train, test, C, rows)
        if args.bpr_iterations > 0:
            bpr_tables(args, train, test, rows)
    print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")
    if args.csv:
        keys = sorted({k for r in rows for k in r})
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)


def _proc_status(key: str) -> int | None:
    """A byte count from /proc/self/status (Linux), or None."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def memory_table(args: argparse.Namespace, train: mfkit.Ratings, rows: list) -> None:
    """Peak memory of an ImplicitALS fit (2 iterations) against CSR + CSC + factors: the
    process's peak RSS is reset before the fit (Linux ``clear_refs``) and read after it; the
    ratio counts the fit's growth on top of the CSR and CSC arrays it reads."""
    ip, ic, vc = train.csc_arrays()
    csr = train.indptr.nbytes + train.indices.nbytes + train.values.nbytes
    csc = ip.nbytes + ic.nbytes + vc.nbytes
    factors = (train.n_users + train.n_items) * args.factors * 4
    table = []
    for solver in ("cg", "cholesky"):
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # the peak (VmHWM) starts again from the current RSS
        except OSError:
            print("peak memory: needs Linux /proc (skipped)")
            return
        base = _proc_status("VmRSS")
        mfkit.ImplicitALS(
            factors=args.factors,
            epochs=2,
            regularization=args.regularization,
            alpha=args.alpha,
            solver=solver,
            random_state=0,
            n_threads=args.threads,
        ).fit(train)
        peak = _proc_status("VmHWM")
        if base is None or peak is None:
            return
        growth = peak - base
        row = {
            "solver": solver,
            "CSR MB": csr / 2**20,
            "CSC MB": csc / 2**20,
            "factors MB": factors / 2**20,
            "fit growth MB": growth / 2**20,
            "(CSR+CSC+growth)/(CSR+CSC+factors)": (csr + csc + growth) / (csr + csc + factors),
        }
        table.append(row)
        rows.append({"table": "memory", **row})
    print_table(table, "peak memory of an ImplicitALS fit (floor: ratio under 1.5)")


def bpr_tables(
    args: argparse.Namespace, train: mfkit.Ratings, test: mfkit.Ratings, rows: list
) -> None:
    """BPR: samples per second and held-out AUC and ranking metrics, mfkit vs implicit."""
    BPR = load_implicit_bpr()
    triples = auc_pairs(train, test, 200_000, 3)
    sample = eval_users(test, args.eval_users, 1)
    C = sp.csr_matrix(
        (np.ones(train.nnz, dtype=np.float32), train.indices.copy(), train.indptr.copy()),
        shape=train.shape,
    )
    out = []
    for seed in args.seeds or [0]:
        m = mfkit.BPR(
            factors=args.factors,
            epochs=args.bpr_iterations,
            learning_rate=args.bpr_learning_rate,
            regularization=args.bpr_regularization,
            blocks=args.bpr_blocks if args.bpr_blocks == "auto" else int(args.bpr_blocks),
            random_state=seed,
            n_threads=args.threads,
        ).fit(train)
        t = statistics.median(m.history_["seconds"])
        res = mfkit.metrics.evaluate(m, sample, METRICS)
        row = {"seed": seed, "library": f"mfkit B={m.blocks_}", "samples_per_s": train.nnz / t}
        row["auc"] = auc(m.user_factors_, m.item_factors_, triples)
        row.update({k: res[k] for k in ("precision@10", "ndcg@10")})
        out.append(row)
        if BPR is not None:
            im = BPR(
                factors=args.factors,
                learning_rate=args.bpr_learning_rate,
                regularization=args.bpr_regularization,
                iterations=args.bpr_iterations,
                num_threads=args.threads,
                random_state=seed,
            )
            seconds = fit_implicit(im, C)
            t_i = statistics.median(seconds)
            P, Q = im.user_factors, im.item_factors  # k + 1 columns: the item bias
            res = mfkit.metrics.evaluate(as_mfkit(train, P, Q, args), sample, METRICS)
            row = {"seed": seed, "library": "implicit", "samples_per_s": train.nnz / t_i}
            row["auc"] = auc(P, Q, triples)
            row.update({k: res[k] for k in ("precision@10", "ndcg@10")})
            out.append(row)
    rows.extend({"table": "bpr", **r} for r in out)
    print_table(
        out,
        f"BPR after {args.bpr_iterations} epochs (lr {args.bpr_learning_rate}, reg "
        f"{args.bpr_regularization}); samples/s = training interactions / median epoch time; "
        f"AUC on {len(triples[0]):,} held-out (user, positive, negative) triples",
    )


def als_tables(
    args: argparse.Namespace,
    ALS: Any,
    train: mfkit.Ratings,
    test: mfkit.Ratings,
    C: sp.csr_matrix,
    rows: list,
) -> None:
    # ------------------------------------------------------------------ speed
    speed = []
    for solver, use_cg in (("cg", True), ("cholesky", False)):
        m = mfkit_model(args, solver, args.iterations, 0).fit(train)
        t_m = statistics.median(m.history_["seconds"])
        row = {"solver": solver, "mfkit_s_per_iter": t_m}
        if ALS is not None:
            t_i = statistics.median(
                fit_implicit(implicit_model(ALS, args, use_cg, args.iterations, 0), C)
            )
            row.update({"implicit_s_per_iter": t_i, "ratio_mfkit/implicit": t_m / t_i})
        speed.append(row)
        rows.append({"table": "speed", **row})
    print_table(speed, f"seconds per iteration (median of {args.iterations})")

    # ------------------------------------------------------------------ same objective
    if ALS is not None:
        rng = np.random.default_rng(5)
        P0 = (rng.random((train.n_users, args.factors)) * 0.01).astype(np.float32)
        Q0 = (rng.random((train.n_items, args.factors)) * 0.01).astype(np.float32)
        m = mfkit_model(args, "cholesky", 1, 0).fit(train, init=(P0, Q0))
        im = implicit_model(ALS, args, False, 1, 0)
        im.user_factors, im.item_factors = P0.copy(), Q0.copy()
        fit_implicit(im, C)
        diff = []
        for name, a, b in (
            ("user_factors", m.user_factors_, im.user_factors),
            ("item_factors", m.item_factors_, im.item_factors),
        ):
            rel = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
            diff.append({"factors": name, "max_abs_diff/max_abs": rel})
            rows.append({"table": "same_objective", "factors": name, "rel_diff": rel})
        print_table(diff, "one exact iteration from the same start: mfkit vs implicit")

    # ------------------------------------------------------------------ quality
    sample = eval_users(test, args.eval_users, 1)
    quality = []
    for seed in args.seeds:
        m = mfkit_model(args, "cg", args.quality_iterations, seed).fit(train)
        res = mfkit.metrics.evaluate(m, sample, METRICS)
        q = {"seed": seed, "library": "mfkit", **{k: res[k] for k in METRICS}}
        quality.append(q)
        if ALS is not None:
            im = implicit_model(ALS, args, True, args.quality_iterations, seed)
            fit_implicit(im, C)
            res = mfkit.metrics.evaluate(
                as_mfkit(train, im.user_factors, im.item_factors, args), sample, METRICS
            )
            quality.append({"seed": seed, "library": "implicit", **{k: res[k] for k in METRICS}})
    for q in quality:
        rows.append({"table": "quality", **q})
    if quality:
        print_table(
            quality,
            f"ranking quality after {args.quality_iterations} CG iterations, "
            f"{int(res['ranking_users']):,} test users",
        )
    for lib in ("mfkit", "implicit"):
        qs = [q for q in quality if q["library"] == lib]
        if qs:
            print(
                f"{lib:9s} mean over seeds: "
                + ", ".join(f"{k} {statistics.mean(q[k] for q in qs):.4f}" for k in METRICS)
                + (
                    f" (seed spread of ndcg@10 {np.ptp([q['ndcg@10'] for q in qs]):.4f})"
                    if len(qs) > 1
                    else ""
                )
            )


if __name__ == "__main__":
    main()
