"""Benchmark of mfkit.ALS: seconds per iteration and held-out RMSE.

For each synthetic set (1M ratings shaped like MovieLens-1M, 10M like MovieLens-10M:
69,878 users x 10,677 items), each k and each solver, mfkit.ALS is timed per full
iteration (user half-step then item half-step) with 1 and 2 threads, and the RMSE on a
seeded held-out 10% is reported after ``--iterations`` iterations. The runs with fewer
threads only time ``--timing-iterations`` iterations and check that their factors are
bit-identical to the many-thread run's factors at that point.

When installed, Spark MLlib ALS (``local[2]``, same rank, iterations and regParam; Spark
scales the penalty by each row's rating count like mfkit's ``weighted=True`` and has no bias
terms, so mfkit is also run with ``biases=False`` for the like-for-like row) and implicit's
ALS (an implicit-feedback objective: a speed reference for the solver only) run on the same
matrix in the same process. Neither is required.

Every mfkit run is repeated on each kernel path of ``--isas`` (default: every path this CPU
offers, see :func:`mfkit.available_isas`); the summary gives each path's time per iteration
against the baseline path's (the portable kernels, no fused multiply-add: what mfkit ran
before the fused paths) measured in the same run, and against the floors of 0.30 s (CG, 3
steps) and 0.70 s (Cholesky) per iteration on 10M ratings, k=64, two threads.

Examples::

    python benchmarks/bench_als.py                          # everything (takes a while)
    python benchmarks/bench_als.py --quick                  # 10M, k=64, 2 threads, each path
    python benchmarks/bench_als.py --sizes 1m --factors 64  # a quick look
    python benchmarks/bench_als.py --cache-dir /tmp/mfkit-data --csv als.csv
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from benchutil import cpu_name

import mfkit
from mfkit.model_selection import train_test_split
from mfkit.ratings import Ratings

#: name -> (n_users, n_items, n_ratings)
SIZES = {
    "1m": (6_040, 3_706, 1_000_209),
    "10m": (69_878, 10_677, 10_000_054),
}


# ----------------------------------------------------------------------------- helpers
def machine_info() -> dict[str, str]:
    model = cpu_name()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return {
        "cpu": model,
        "usable cores": str(cores),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "mfkit": mfkit.__version__,
        "openmp": str(mfkit.openmp_enabled()),
        "blas": "not used by mfkit.ALS (own row kernels)",
    }


def load_data(size: str, cache_dir: str | None) -> Ratings:
    n_users, n_items, n_ratings = SIZES[size]
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"synthetic-{n_users}x{n_items}-{n_ratings}-seed0.npz"
        if path.exists():
            with np.load(path) as z:
                return Ratings(
                    z["indptr"], z["indices"], z["values"], (n_users, n_items), check=False
                )
    X = mfkit.datasets.synthetic(
        None, n_users=n_users, n_items=n_items, n_ratings=n_ratings, random_state=0
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, indptr=X.indptr, indices=X.indices, values=X.values)
        os.replace(tmp, path)
    return X


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class PeakRSS:
    """Samples the resident set size in a background thread while active."""

    def __enter__(self) -> PeakRSS:
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def state_digest(m: mfkit.ALS) -> str:
    h = hashlib.sha256()
    for a in (m.user_factors, m.item_factors, m.user_biases, m.item_biases):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def data_bytes(train: Ratings) -> int:
    csr = train.indptr.nbytes + train.indices.nbytes + train.values.nbytes
    csc = sum(a.nbytes for a in train.csc_arrays())
    return csr + csc


def test_rmse(pred: np.ndarray, r: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=np.float64) - r) ** 2)))


# ----------------------------------------------------------------------------- mfkit
def run_mfkit(
    train: Ratings,
    test: Ratings,
    k: int,
    solver: str,
    threads: list[int],
    args: argparse.Namespace,
    biases: bool = True,
    isa: str = "baseline",
) -> list[dict[str, Any]]:
    rows = []
    most = max(threads)
    digests: dict[int, str] = {}
    times: dict[int, float] = {}
    factor_bytes = (train.n_users + train.n_items) * (k + 1) * np.dtype(args.dtype).itemsize
    tu, ti, tr = test.to_triplets()
    for n in sorted(threads, reverse=True):
        epochs = args.iterations if n == most else args.timing_iterations
        snap: dict[str, str] = {}

        def keep(m: Any, rec: dict[str, float], snap: dict[str, str] = snap) -> None:
            if int(rec["epoch"]) == args.timing_iterations:
                snap["digest"] = state_digest(m)

        model = mfkit.ALS(
            factors=k,
            epochs=epochs,
            regularization=args.regularization,
            weighted=True,
            solver=solver,
            cg_steps=args.cg_steps,
            biases=biases,
            dtype=args.dtype,
            random_state=0,
            n_threads=n,
        )
        cpu0 = time.process_time()
        with mfkit.use_isa(isa), PeakRSS() as mem:
            model.fit(train, callback=keep)
        cpu = (time.process_time() - cpu0) / epochs
        per_iter = statistics.median(model.history_["seconds"])
        for _ in range(args.repeat - 1):
            # on a shared machine the best of several runs is the least disturbed one
            again = mfkit.ALS(**{**model.get_params(), "epochs": args.timing_iterations})
            with mfkit.use_isa(isa):
                again.fit(train)
            per_iter = min(per_iter, statistics.median(again.history_["seconds"]))
        times[n] = per_iter
        digests[n] = snap.get("digest", "")
        ref = data_bytes(train) + factor_bytes
        row = {
            "system": "mfkit" if biases else "mfkit biases=False",
            "isa": isa,
            "solver": solver if solver == "cholesky" else f"cg{args.cg_steps}",
            "k": k,
            "threads": n,
            "s_per_iter": per_iter,
            "cpu_s": cpu,
            "speedup": float("nan"),
            "rmse": test_rmse(model.predict(tu, ti), tr) if n == most else float("nan"),
            "identical": "",
            "mem_ratio": (data_bytes(train) + (mem.peak - mem.start)) / ref,
        }
        rows.append(row)
    for row in rows:
        row["speedup"] = times[min(threads)] / row["s_per_iter"]
        if row["threads"] != most:
            row["identical"] = "yes" if digests[row["threads"]] == digests[most] else "NO"
    return rows


# ----------------------------------------------------------------------------- peers
def run_spark(
    train: Ratings, test: Ratings, k: int, args: argparse.Namespace
) -> dict[str, Any] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pyspark about pandas versions
        return _run_spark(train, test, k, args)


def _run_spark(
    train: Ratings, test: Ratings, k: int, args: argparse.Namespace
) -> dict[str, Any] | None:
    try:
        import pandas as pd
        from pyspark.ml.recommendation import ALS as SparkALS
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("mfkit-bench")
        .config("spark.driver.memory", args.spark_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        u, i, r = train.to_triplets()
        tr = spark.createDataFrame(
            pd.DataFrame({"user": u.astype(np.int32), "item": i, "rating": r})
        ).repartition(4)
        tr.cache().count()
        tu, ti, trat = test.to_triplets()
        te = spark.createDataFrame(pd.DataFrame({"user": tu.astype(np.int32), "item": ti}))
        te.cache().count()

        def fit(iterations: int) -> tuple[Any, float]:
            als = SparkALS(
                rank=k,
                maxIter=iterations,
                regParam=args.regularization,
                userCol="user",
                itemCol="item",
                ratingCol="rating",
                coldStartStrategy="nan",
                seed=0,
            )
            t0 = time.perf_counter()
            model = als.fit(tr)
            model.userFactors.count()  # make sure the factors are materialised
            return model, time.perf_counter() - t0

        _, t1 = fit(1)
        model, tn = fit(args.iterations)
        per_iter = (tn - t1) / max(args.iterations - 1, 1)
        pdf = model.transform(te).toPandas()
        pred = pdf.merge(
            pd.DataFrame({"user": tu.astype(np.int32), "item": ti, "rating": trat}),
            on=["user", "item"],
        )
        # users or items Spark never saw get NaN: predict the training mean like mfkit's
        # baseline would without biases
        p = pred["prediction"].to_numpy(dtype=np.float64)
        p = np.where(np.isnan(p), float(np.mean(train.values)), p)
        rmse = test_rmse(p, pred["rating"].to_numpy())
    finally:
        spark.stop()
    return {
        "system": "Spark MLlib ALS local[2]",
        "isa": "-",
        "solver": "cholesky",
        "k": k,
        "threads": 2,
        "s_per_iter": per_iter,
        "cpu_s": float("nan"),
        "speedup": float("nan"),
        "rmse": rmse,
        "identical": "",
        "mem_ratio": float("nan"),
    }


def run_implicit(
    train: Ratings, k: int, use_cg: bool, threads: int, args: argparse.Namespace
) -> dict[str, Any] | None:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    import scipy.sparse as sp

    user_items = sp.csr_matrix(train.to_scipy()).astype(np.float32)

    def fit() -> float:
        # implicit's row solves call BLAS inside its own thread pool: BLAS gets one thread
        model = AlternatingLeastSquares(
            factors=k,
            regularization=args.regularization,
            iterations=args.timing_iterations,
            use_cg=use_cg,
            num_threads=threads,
            random_state=0,
        )
        t0 = time.perf_counter()
        model.fit(user_items, show_progress=False)
        return (time.perf_counter() - t0) / args.timing_iterations

    if threadpool_limits is not None:
        with threadpool_limits(1, "blas"):
            per_iter = fit()
    else:
        per_iter = fit()
    return {
        "system": "implicit ALS (implicit-feedback objective)",
        "isa": "-",
        "solver": "cg3" if use_cg else "cholesky",
        "k": k,
        "threads": threads,
        "s_per_iter": per_iter,
        "cpu_s": float("nan"),
        "speedup": float("nan"),
        "rmse": float("nan"),
        "identical": "",
        "mem_ratio": float("nan"),
    }


# ----------------------------------------------------------------------------- report
COLUMNS = [
    ("data", 5, "{}"),
    ("system", 44, "{}"),
    ("isa", 8, "{}"),
    ("solver", 8, "{}"),
    ("k", 4, "{}"),
    ("threads", 7, "{}"),
    ("s_per_iter", 10, "{:.3f}"),
    ("cpu_s", 7, "{:.3f}"),
    ("speedup", 7, "{:.2f}"),
    ("rmse", 7, "{:.4f}"),
    ("identical", 9, "{}"),
    ("mem_ratio", 9, "{:.2f}"),
]


def fmt(value: Any, spec: str) -> str:
    if isinstance(value, float) and np.isnan(value):
        return "-"
    return spec.format(value)


def print_row(row: dict[str, Any]) -> None:
    print("  ".join(fmt(row[c], s).rjust(w) for c, w, s in COLUMNS), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1m,10m", help="comma list of 1m, 10m")
    ap.add_argument("--factors", default="32,64,128", help="comma list of k")
    ap.add_argument("--solvers", default="cholesky,cg")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--iterations", type=int, default=10, help="iterations before the RMSE")
    ap.add_argument("--timing-iterations", type=int, default=3, help="iterations of other runs")
    ap.add_argument("--regularization", type=float, default=0.05)
    ap.add_argument("--cg-steps", type=int, default=3)
    ap.add_argument(
        "--repeat", type=int, default=1, help="time each mfkit run this often, keep the best"
    )
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--spark-factors", default="64", help="k for Spark runs ('' for none)")
    ap.add_argument("--spark-memory", default="8g")
    ap.add_argument("--implicit-factors", default="64", help="k for implicit runs ('' for none)")
    ap.add_argument(
        "--isas", default=",".join(mfkit.available_isas()), help="comma list of kernel paths"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="the floors' case only: 10m, k=64, 2 threads, 2 iterations, no peers",
    )
    ap.add_argument("--cache-dir", default=None, help="keep generated data sets here")
    ap.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.factors, args.threads = "10m", "64", "2"
        args.iterations = args.timing_iterations = 2
        args.spark_factors = args.implicit_factors = ""
    isas = [x for x in args.isas.split(",") if x]
    for x in isas:
        if x not in mfkit.available_isas():
            ap.error(f"kernel path {x!r} not available; this CPU offers {mfkit.available_isas()}")
    if args.timing_iterations > args.iterations:
        ap.error("--timing-iterations must not exceed --iterations")
    sizes = [s for s in args.sizes.split(",") if s]
    for s in sizes:
        if s not in SIZES:
            ap.error(f"unknown size {s!r}; choose from {sorted(SIZES)}")
    factors = [int(x) for x in args.factors.split(",") if x]
    solvers = [s for s in args.solvers.split(",") if s]
    threads = [int(x) for x in args.threads.split(",") if x]
    spark_k = {int(x) for x in args.spark_factors.split(",") if x}
    implicit_k = {int(x) for x in args.implicit_factors.split(",") if x}

    print("mfkit ALS benchmark")
    for key, value in machine_info().items():
        print(f"  {key:13s} {value}")
    print(
        f"  settings      dtype={args.dtype} regularization={args.regularization} "
        f"(weighted, ALS-WR) cg_steps={args.cg_steps}; rmse on a seeded 10% hold-out after "
        f"{args.iterations} iterations (other runs: {args.timing_iterations})"
    )
    print(
        f"  columns       s_per_iter = median wall seconds per iteration (best of {args.repeat}"
        " run(s)); cpu_s = process CPU seconds per iteration over all threads in the first"
        " run (cpu_s / s_per_iter well below the thread count means the cores were shared);"
        " speedup = s_per_iter at the fewest threads / this row's; identical = factors"
        " bit-identical to the most-threads run; mem_ratio = (CSR + CSC + peak RSS rise"
        " during fit) / (CSR + CSC + factors)"
    )
    print()
    print("  ".join(c.rjust(w) for c, w, _ in COLUMNS))
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any] | None, size: str) -> None:
        if row is None:
            return
        row["data"] = size
        rows.append(row)
        print_row(row)

    for size in sizes:
        t0 = time.perf_counter()
        data = load_data(size, args.cache_dir)
        train, test = train_test_split(data, 0.1, random_state=0)
        train.csc_arrays()
        print(
            f"# {size}: {data} ({time.perf_counter() - t0:.1f}s to build); "
            f"{train.nnz} training, {test.nnz} test ratings",
            flush=True,
        )
        for k in factors:
            for solver in solvers:
                for isa in isas:
                    for row in run_mfkit(train, test, k, solver, threads, args, isa=isa):
                        emit(row, size)
            if k in spark_k:
                for row in run_mfkit(
                    train, test, k, "cholesky", [max(threads)], args, False, isa=isas[-1]
                ):
                    emit(row, size)
                emit(run_spark(train, test, k, args), size)
            if k in implicit_k:
                for use_cg in (False, True):
                    emit(run_implicit(train, k, use_cg, max(threads), args), size)

    summarise(rows)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=[c for c, _, _ in COLUMNS])
            w.writeheader()
            for row in rows:
                w.writerow({c: row[c] for c, _, _ in COLUMNS})
    return 0


def summarise(rows: list[dict[str, Any]]) -> None:
    """Ratios against the references measured in this run."""
    print()

    def find(**kw: Any) -> dict[str, Any] | None:
        for row in rows:
            if all(row.get(key) == value for key, value in kw.items()):
                return row
        return None

    floors = {"cholesky": 0.70, "cg3": 0.30}
    for size in dict.fromkeys(r["data"] for r in rows):
        for k in dict.fromkeys(r["k"] for r in rows if r["data"] == size):
            mf = [r for r in rows if r["data"] == size and r["k"] == k and r["system"] == "mfkit"]
            for solver in dict.fromkeys(r["solver"] for r in mf):
                for isa in dict.fromkeys(r["isa"] for r in mf):
                    ts = {
                        r["threads"]: r["s_per_iter"]
                        for r in mf
                        if r["solver"] == solver and r["isa"] == isa
                    }
                    if len(ts) > 1:
                        lo, hi = min(ts), max(ts)
                        print(
                            f"{size} k={k} {solver} {isa}: {hi} threads {ts[lo] / ts[hi]:.2f}x "
                            f"faster than {lo} ({ts[hi]:.3f} s/iteration)"
                        )
                for n in sorted({r["threads"] for r in mf}):
                    base = find(data=size, k=k, system="mfkit", solver=solver, threads=n,
                                isa="baseline")  # fmt: skip
                    for isa in dict.fromkeys(r["isa"] for r in mf):
                        mine = find(data=size, k=k, system="mfkit", solver=solver, threads=n,
                                    isa=isa)  # fmt: skip
                        if mine is None:
                            continue
                        ratio = (
                            f", {base['s_per_iter'] / mine['s_per_iter']:.2f}x the baseline path"
                            if base is not None
                            else ""
                        )
                        floor = floors.get(solver) if (size, k, n) == ("10m", 64, 2) else None
                        verdict = (
                            ""
                            if floor is None
                            else f"; floor {floor:.2f} s: "
                            + ("met" if mine["s_per_iter"] <= floor else "NOT met")
                        )
                        print(
                            f"{size} k={k} {solver} {n} threads, path {isa}: "
                            f"{mine['s_per_iter']:.3f} s/iteration{ratio}{verdict}"
                        )
            spark = find(data=size, k=k, system="Spark MLlib ALS local[2]")
            if spark is not None:
                for system in ("mfkit", "mfkit biases=False"):
                    mine = find(data=size, k=k, system=system, solver="cholesky", threads=2)
                    if mine is not None:
                        print(
                            f"{size} k={k}: {system} cholesky is "
                            f"{spark['s_per_iter'] / mine['s_per_iter']:.1f}x faster per "
                            f"iteration than Spark; test RMSE {mine['rmse']:.4f} vs Spark "
                            f"{spark['rmse']:.4f}"
                        )


if __name__ == "__main__":
    sys.exit(main())
