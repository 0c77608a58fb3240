"""SGD speed, memory and accuracy benchmark for mfkit.

Prints tables (and optionally writes them as CSV):

1. Serial floor: rating updates per second of one thread, k=64, float32, on a 1M-rating
   set, and of scikit-surprise's SVD on the same ratings in the same run when it is
   importable.
2. An ML-100k-sized fit (943 x 1,682, 100k ratings, k=100, 20 epochs) end to end, against
   Surprise's SVD, with held-out RMSE.
3. Peak memory of a fit on the 1M set (a fresh subprocess; tracemalloc peak during ``fit``
   plus the process's peak RSS) against the bytes of the CSR ratings plus the factors.
4. Updates per second and seconds per epoch for 1 and 2 threads, k in {32, 64, 128}, on the
   1M and 10M synthetic sets (and the 100M Netflix-shaped set with ``--large``), with the
   2-thread / 1-thread ratio.
5. Held-out RMSE after each epoch of the block-parallel SGD against the serial shuffled SGD,
   and the RMSE 100 serial epochs reach.
6. ``--large``: the Netflix-shaped set (480,189 x 17,770, 100M ratings) in a fresh
   subprocess: generation time, one-epoch time with 1 and 2 threads, 20 epochs plus block
   preparation with 2 threads, test RMSE, and peak RSS.

Everything is synthetic (``mfkit.datasets.synthetic``), so no download is needed. Timings
are medians over the timed epochs; compare ratios measured in the same run.

    python benchmarks/bench_sgd.py                 # 1M and 10M, all sections
    python benchmarks/bench_sgd.py --quick         # 1M only, fewer epochs (a smoke run)
    python benchmarks/bench_sgd.py --large         # adds the 100M Netflix-shaped set

On a machine shared with other busy processes, run with ``OMP_WAIT_POLICY=passive``: a
thread that finishes its blocks of a stratum early then sleeps instead of spinning, which
gives its core to the thread that still works (with spinning, 2 threads can be slower than
1 there); on an idle machine the two policies time the same.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np
from benchutil import cpu_name

import mfkit
from mfkit.datasets import synthetic
from mfkit.model_selection import train_test_split
from mfkit.models.sgd import AUTO_BLOCKS
from mfkit.ratings import Ratings

SIZES = {"1m": "ml-1m", "10m": "ml-10m", "100m": "netflix"}


# ---------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> str:
    model = cpu_name()
    return (
        f"{model}; {os.cpu_count()} cpus; python {platform.python_version()}; "
        f"numpy {np.__version__}; mfkit {mfkit.__version__}; "
        f"OpenMP {'on' if mfkit.openmp_enabled() else 'OFF'}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def table(title: str, header: list[str], rows: list[list[Any]], out: list[dict]) -> None:
    print(f"\n## {title}")
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[j]) for r in cells)) for j, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in cells:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    sys.stdout.flush()
    for r in rows:
        out.append({"table": title, **dict(zip(header, r, strict=True))})


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        if c != c:
            return "-"
        return f"{c:.4g}" if abs(c) < 1000 else f"{c:,.0f}"
    return str(c)


def epoch_seconds(model: mfkit.SGD) -> float:
    return float(np.median(model.history_["seconds"]))


def rmse(model: mfkit.SGD, test: Ratings) -> float:
    u, i, r = test.to_triplets()
    return float(np.sqrt(np.mean((model.predict(u, i) - r) ** 2)))


def surprise_module() -> Any:
    try:
        import surprise  # type: ignore[import-not-found]
    except ImportError:
        return None
    return surprise


def surprise_trainset(surprise: Any, data: Ratings) -> Any:
    import pandas as pd

    u, i, r = data.to_triplets()
    df = pd.DataFrame({"u": u, "i": i, "r": r.astype(np.float64)})
    lo, hi = float(r.min()), float(r.max())
    reader = surprise.Reader(rating_scale=(lo, hi))
    return surprise.Dataset.load_from_df(df, reader).build_full_trainset()


def split(data: Ratings, seed: int = 0) -> tuple[Ratings, Ratings]:
    return train_test_split(data, 0.1, random_state=seed)


# ---------------------------------------------------------------------------- sections
def serial_floor(args: argparse.Namespace, data: Ratings, out: list[dict]) -> None:
    rows = []
    for sched in ("constant", "adagrad"):
        m = mfkit.SGD(
            factors=64,
            epochs=args.timing_epochs,
            blocks=1,
            n_threads=1,
            random_state=0,
            learning_rate_schedule=sched,
        ).fit(data)
        s = epoch_seconds(m)
        rows.append([f"mfkit SGD serial ({sched})", 1, data.nnz / s / 1e6, s, float("nan")])
    surprise = None if args.no_surprise else surprise_module()
    if surprise is not None:
        ts = surprise_trainset(surprise, data)
        epochs = 3
        algo = surprise.SVD(n_factors=64, n_epochs=epochs, random_state=0)
        t0 = time.perf_counter()
        algo.fit(ts)
        s = (time.perf_counter() - t0) / epochs
        ref = data.nnz / s / 1e6
        rows.append(["surprise SVD", 1, ref, s, 1.0])
        for r in rows[:-1]:
            r[4] = r[2] / ref
    else:
        rows.append(["surprise SVD (not installed)", 1, float("nan"), float("nan"), float("nan")])
    table(
        f"1 thread, k=64, float32, {data.nnz:,} ratings (floor: >= 20M updates/s)",
        ["method", "threads", "M updates/s", "s/epoch", "x surprise"],
        rows,
        out,
    )


def ml100k_fit(args: argparse.Namespace, out: list[dict]) -> None:
    data = synthetic("ml-100k", random_state=0)
    train, test = split(data)
    u, i, r = train.to_triplets()
    rows = []
    configs = [
        ("mfkit SGD defaults (adagrad)", {}),
        (
            "mfkit SGD surprise settings",
            dict(learning_rate_schedule="constant", learning_rate=0.005, regularization=0.02),
        ),
    ]
    for name, kw in configs:
        t0 = time.perf_counter()
        m = mfkit.SGD(factors=100, epochs=20, random_state=0, **kw).fit((u, i, r))
        secs = time.perf_counter() - t0
        # the fit above mapped ids; score through the same ids
        tu, ti, tr = test.to_triplets()
        pred = m.predict(tu, ti, unknown="baseline")
        rows.append([name, secs, float(np.sqrt(np.mean((pred - tr) ** 2))), float("nan")])
    surprise = None if args.no_surprise else surprise_module()
    if surprise is not None:
        t0 = time.perf_counter()
        ts = surprise_trainset(surprise, train)
        algo = surprise.SVD(n_factors=100, n_epochs=20, random_state=0)
        algo.fit(ts)
        secs = time.perf_counter() - t0
        tu, ti, tr = test.to_triplets()
        pred = np.array([algo.predict(a, b).est for a, b in zip(tu, ti, strict=True)])
        # surprise clips its predictions to the rating scale; compare unclipped mfkit too
        rows.append(["surprise SVD", secs, float(np.sqrt(np.mean((pred - tr) ** 2))), 1.0])
        for row in rows[:-1]:
            row[3] = secs / row[1]
    else:
        rows.append(["surprise SVD (not installed)", float("nan"), float("nan"), float("nan")])
    table(
        "ML-100k-sized fit end to end (943 x 1682, 100k ratings, k=100, 20 epochs, 1 core)",
        ["method", "seconds", "test RMSE", "speedup vs surprise"],
        rows,
        out,
    )


MEMORY_CHILD = r"""
import json, resource, sys, time, tracemalloc
import mfkit
data = mfkit.datasets.synthetic(sys.argv[1], random_state=0)
csr = data.indptr.nbytes + data.indices.nbytes + data.values.nbytes
k = int(sys.argv[2]); blocks = sys.argv[3]
blocks = blocks if blocks == "auto" else int(blocks)
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
tracemalloc.start()
m = mfkit.SGD(factors=k, epochs=2, random_state=0, n_threads=2, blocks=blocks).fit(data)
cur, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
factors = sum(a.nbytes for a in (m.user_factors, m.item_factors, m.user_biases, m.item_biases))
print(json.dumps(dict(nnz=data.nnz, csr=csr, factors=factors, fit_peak=peak, B=m.blocks_,
                      fit_nbytes=m.fit_nbytes_, rss_before=rss_before,
                      rss_peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)))
"""


def fit_memory(args: argparse.Namespace, out: list[dict]) -> None:
    rows = []
    for blocks in ("1", "auto"):
        res = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, "ml-1m", "64", blocks],
            capture_output=True,
            text=True,
            check=True,
        )
        d = json.loads(res.stdout.strip().splitlines()[-1])
        base = d["csr"] + d["factors"]
        rows.append(
            [
                d["B"],
                d["nnz"],
                base / 2**20,
                d["fit_peak"] / 2**20,
                (d["csr"] + d["fit_peak"]) / base,
                d["fit_nbytes"] / 2**20,
                d["rss_peak"] / 2**20,
            ]
        )
    table(
        "peak memory of fit on the 1M set, k=64 float32 (fit peak = tracemalloc peak inside "
        "fit, on top of the CSR the caller holds)",
        [
            "B",
            "ratings",
            "CSR+factors MiB",
            "fit peak MiB",
            "(CSR+fit peak)/(CSR+factors)",
            "layout MiB",
            "process peak RSS MiB",
        ],
        rows,
        out,
    )


def speed_table(args: argparse.Namespace, sets: dict[str, Ratings], out: list[dict]) -> None:
    rows = []
    for name, data in sets.items():
        for k in args.factors:
            one = None
            for nt in args.threads:
                m = mfkit.SGD(
                    factors=k,
                    epochs=args.timing_epochs,
                    n_threads=nt,
                    random_state=0,
                    learning_rate_schedule=args.schedule,
                ).fit(data)
                s = epoch_seconds(m)
                rate = data.nnz / s / 1e6
                if nt == 1:
                    one = rate
                ratio = rate / one if one else float("nan")
                rows.append([name, data.nnz, k, m.blocks_, nt, s, rate, ratio])
                log(f"  {name} k={k} threads={nt}: {s:.3f} s/epoch, {rate:.1f} M/s")
    table(
        f"block-parallel SGD speed, float32, schedule {args.schedule!r}, blocks 'auto' "
        f"(floors on 10M, k=64: 1 thread >= 20M/s, 2 threads >= 1.8x)",
        ["set", "ratings", "k", "B", "threads", "s/epoch", "M updates/s", "x 1 thread"],
        rows,
        out,
    )


def rmse_curves(args: argparse.Namespace, sets: dict[str, Ratings], out: list[dict]) -> None:
    for name, data in sets.items():
        train, test = split(data)
        common = dict(factors=64, random_state=0, learning_rate_schedule=args.schedule)
        par = mfkit.SGD(epochs=args.rmse_epochs, n_threads=2, blocks=AUTO_BLOCKS, **common)
        par.fit(train, validation=test)
        ser = mfkit.SGD(epochs=args.rmse_epochs, n_threads=1, blocks=1, **common)
        ser.fit(train, validation=test)
        rows = []
        for e in range(args.rmse_epochs):
            a, b = par.history_["val_rmse"][e], ser.history_["val_rmse"][e]
            rows.append([e + 1, a, b, (a - b) / b * 100])
        if args.reference_epochs:
            ref = mfkit.SGD(epochs=args.reference_epochs, n_threads=1, blocks=1, **common)
            ref.fit(train, validation=test)
            hist = ref.history_["val_rmse"]
            last = hist[-1]
            rows.append([f"serial {args.reference_epochs}", float("nan"), last, float("nan")])
            rows.append(
                [
                    f"serial best (@{int(np.argmin(hist)) + 1})",
                    float("nan"),
                    min(hist),
                    float("nan"),
                ]
            )
            gap = (par.history_["val_rmse"][-1] - last) / last * 100
            rows.append(
                [
                    f"parallel {args.rmse_epochs} vs serial {args.reference_epochs}",
                    float("nan"),
                    float("nan"),
                    gap,
                ]
            )
        table(
            f"test RMSE per epoch, {name} ({train.nnz:,} training ratings), k=64, "
            f"parallel (B={par.blocks_}, 2 threads) vs serial shuffled SGD (B=1)",
            ["epoch", "parallel", "serial", "diff %"],
            rows,
            out,
        )


LARGE_CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
import mfkit
from mfkit.datasets import synthetic
from mfkit.ratings import Ratings

def maxrss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def split_csr(data, mask):
    # a 1% test split straight from the CSR arrays (no int64 position arrays)
    out = []
    for sel in (~mask, mask):
        counts = np.add.reduceat(sel, data.indptr[:-1], dtype=np.int64)
        counts[np.diff(data.indptr) == 0] = 0
        indptr = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        out.append(Ratings(indptr, data.indices[sel], data.values[sel], data.shape, check=False))
    return out

epochs, timing = int(sys.argv[1]), int(sys.argv[2])
t0 = time.perf_counter()
data = synthetic("netflix", random_state=0)
res = dict(gen_seconds=time.perf_counter() - t0, rss_gen=maxrss())
mask = np.random.default_rng(0).random(data.nnz) < 0.01
train, test = split_csr(data, mask)
del data, mask
res.update(rss_split=maxrss(), nnz=train.nnz, test_nnz=test.nnz, shape=list(train.shape))
res["csr"] = train.indptr.nbytes + train.indices.nbytes + train.values.nbytes
for nt in (1, 2):
    m = mfkit.SGD(factors=64, epochs=timing, n_threads=nt, random_state=0).fit(train)
    res[f"epoch_{nt}"] = float(np.median(m.history_["seconds"]))
    del m
tracemalloc.start()
t0 = time.perf_counter()
m = mfkit.SGD(factors=64, epochs=epochs, n_threads=2, random_state=0)
m.fit(train, validation=test)
res["fit_seconds"] = time.perf_counter() - t0
res["fit_peak"] = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
res["epoch_sum"] = float(sum(m.history_["seconds"]))
res["val_rmse"] = m.history_["val_rmse"]
res["B"] = m.blocks_
res["fit_nbytes"] = m.fit_nbytes_
res["rss_peak"] = maxrss()
print(json.dumps(res))
"""


def large(args: argparse.Namespace, out: list[dict]) -> None:
    log("large: generating the Netflix-shaped set and fitting it in a subprocess ...")
    res = subprocess.run(
        [sys.executable, "-c", LARGE_CHILD, str(args.rmse_epochs), str(args.timing_epochs)],
        capture_output=True,
        text=True,
        check=True,
    )
    d = json.loads(res.stdout.strip().splitlines()[-1])
    n = d["nnz"]
    rows = [
        ["generate synthetic('netflix')", d["gen_seconds"], float("nan")],
        ["1 epoch, 1 thread", d["epoch_1"], n / d["epoch_1"] / 1e6],
        ["1 epoch, 2 threads (floor < 3 s)", d["epoch_2"], n / d["epoch_2"] / 1e6],
        [
            f"{args.rmse_epochs} epochs + block prep + validation, 2 threads (floor < 90 s)",
            d["fit_seconds"],
            n * args.rmse_epochs / d["fit_seconds"] / 1e6,
        ],
        ["  of which the epochs", d["epoch_sum"], float("nan")],
        ["2 threads / 1 thread", d["epoch_1"] / d["epoch_2"], float("nan")],
        [
            "fit peak: training CSR + tracemalloc peak in fit, GiB (floor < 3)",
            (d["csr"] + d["fit_peak"]) / 2**30,
            float("nan"),
        ],
        [
            "process peak RSS after generation / split / everything, GiB",
            f"{d['rss_gen'] / 2**30:.2f} / {d['rss_split'] / 2**30:.2f} / "
            f"{d['rss_peak'] / 2**30:.2f}",
            float("nan"),
        ],
        ["fit scratch (records + offsets + AdaGrad), GiB", d["fit_nbytes"] / 2**30, float("nan")],
        [
            f"test RMSE after epoch 1 / {args.rmse_epochs}",
            f"{d['val_rmse'][0]:.4f} / {d['val_rmse'][-1]:.4f}",
            float("nan"),
        ],
    ]
    table(
        f"Netflix-shaped set {d['shape'][0]:,} x {d['shape'][1]:,}, {n:,} training ratings, "
        f"k=64 float32, B={d['B']}",
        ["measure", "value", "M updates/s"],
        rows,
        out,
    )


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1M set only, 2 timed epochs")
    p.add_argument("--large", action="store_true", help="also the 100M Netflix-shaped set")
    p.add_argument("--sizes", default="1m,10m", help="comma list of 1m, 10m (default 1m,10m)")
    p.add_argument("--factors", default="32,64,128", help="comma list of k")
    p.add_argument("--threads", default="1,2", help="comma list of thread counts")
    p.add_argument("--timing-epochs", type=int, default=3)
    p.add_argument("--rmse-epochs", type=int, default=20)
    p.add_argument("--reference-epochs", type=int, default=100)
    p.add_argument("--schedule", default="adagrad", choices=["constant", "decay", "adagrad"])
    p.add_argument("--no-surprise", action="store_true", help="skip scikit-surprise")
    p.add_argument(
        "--surprise-path",
        default=None,
        help="a site-packages directory appended to sys.path to find scikit-surprise "
        "(for a surprise installed in another environment of the same Python)",
    )
    p.add_argument(
        "--skip", default="", help="comma list of sections to skip: serial,ml100k,memory,speed,rmse"
    )
    p.add_argument("--csv", default=None, help="also write every table row to this CSV file")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.timing_epochs, args.reference_epochs = "1m", 2, 40
    args.factors = [int(x) for x in args.factors.split(",")]
    args.threads = [int(x) for x in args.threads.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    if args.surprise_path:
        sys.path.append(args.surprise_path)
    print(f"# mfkit SGD benchmark\n{machine()}")
    print("float32 factors; times are medians over the timed epochs; synthetic data")
    out: list[dict] = []
    sets: dict[str, Ratings] = {}
    for size in args.sizes.split(","):
        t0 = time.perf_counter()
        sets[size] = synthetic(SIZES[size], random_state=0)
        log(f"data {size}: {sets[size]} in {time.perf_counter() - t0:.1f}s")
    first = next(iter(sets.values()))
    if "serial" not in skip:
        serial_floor(args, sets.get("1m", first), out)
    if "ml100k" not in skip:
        ml100k_fit(args, out)
    if "memory" not in skip:
        fit_memory(args, out)
    if "speed" not in skip:
        speed_table(args, sets, out)
    if "rmse" not in skip:
        rmse_curves(args, sets, out)
    if args.large:
        large(args, out)
    if args.csv:
        keys = sorted({k for row in out for k in row})
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
