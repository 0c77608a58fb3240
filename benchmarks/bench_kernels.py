"""SGD kernel paths against a roofline estimate, the fixed costs of ``fit``, and LibMF.

Prints tables (optionally a PNG of the first with ``--plot out.png``, matplotlib needed):

1. Updates per second of one SGD epoch on one thread (the kernel call only, no set-up) for
   every kernel path this CPU runs (``mfkit.available_isas()``) and k in {16, 32, 64, 128},
   float32, AdaGrad (the default schedule), next to a roofline estimate for this machine
   (see ``roofline`` for the bytes and flops per update and the assumptions). Rates are
   ratings / thread CPU second (the time the thread really ran) and ratings / wall second.
2. The serial floor: one thread, 10M ratings, k=64 (``--quick``: 1M): the best path against
   40M updates/s and against 1.6x the baseline path (the portable loop of mfkit 0.1,
   unchanged, so it is "today's figure") measured in the same run.
3. The fixed costs of ``SGD.fit``: fit time minus the sum of the epoch times at 100k, 1M
   and 10M ratings (``--quick``: 100k, 1M), 20 epochs (``--quick``: 5), two threads,
   against the floor of 15% for the 1M fit; with the peak memory of the fit (tracemalloc)
   against the CSR arrays plus the factors.
4. ``--libmf DIR`` (repeatable, a LibMF build directory holding ``mf-train``): LibMF on the
   same ratings (written as "user item rating" text, 0-based), k=64, L2 0.05, the same
   thread count, timed as ``mf-train --quiet -t N+1`` minus ``-t 1`` (so reading the file,
   set-up and writing the model cancel out: N iterations of its training loop), against
   mfkit's median epoch and whole fit, with the ratio; the floor is 2x LibMF's updates/s on
   two threads at 10M ratings.

``--orders`` prints instead the visiting orders side by side (``SGD(order='shuffle')``
against ``order='rows'``): epoch updates/s at 1M and 10M ratings on 1 and 2 threads, the
two orders alternating rep by rep, and a fit per order with its peak memory (with
``--large`` also on the Netflix shape).

``--chunks`` prints instead the default order's epoch speed with a block's users shuffled
one by one (``user_chunk=1``, the order of earlier releases) against in chunks of 16 (every
fit), the two alternating rep by rep, at 10M ratings (with ``--large`` also on the Netflix
shape).

``--large`` adds the Netflix-shaped set (480,189 x 17,770, 100M ratings) to sections 3 and
4 with its floors (an epoch <= 1.5 s on two threads, a 20-epoch fit <= 40 s and <= 0.6x
LibMF's loop, peak memory <= 1.3x CSR + factors). It needs ~6 GiB and several minutes to
generate the data.

Everything is synthetic (``mfkit.datasets.synthetic``). On a machine shared with other
busy processes wall-clock figures are noisy: compare the paths within one run (the CPU
second rates are steadier), and set ``OMP_WAIT_POLICY=passive``.

    python benchmarks/bench_kernels.py --quick
    python benchmarks/bench_kernels.py --libmf /path/to/libmf --libmf /path/to/libmf-avx
    python benchmarks/bench_kernels.py --large --libmf /path/to/libmf --plot kernels.png
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import Any

import numpy as np
from benchutil import cpu_name, print_machine, print_table

import mfkit
from mfkit._core.isa import isa_level
from mfkit.data import Ratings
from mfkit.datasets import synthetic
from mfkit.models import _sgd
from mfkit.models._state import normal_rows
from mfkit.models.sgd import (
    block_layout,
    epoch_schedule,
    rating_records,
    resolve_blocks,
    resolve_row_blocks,
    row_layout,
)

KS = (16, 32, 64, 128)
#: single-precision flops a core's multiply/FMA pipes retire per cycle, per path. Assumed:
#: two 256-bit FMA pipes (AMD Zen 4; a 512-bit operation takes both, so AVX-512 has the
#: same peak; cores with two 512-bit FMA pipes would double it): 2 x 8 lanes x 2 flops = 32
#: with FMA. The baseline path has no FMA: each multiply and each add is its own operation,
#: 2 x 8 = 16 flops per cycle at best (its helpers run an AVX2 clone without FMA where the
#: CPU has AVX2, SSE2 otherwise). Every multiply of the update feeds an add, so the
#: separate add pipes do not raise these peaks.
FLOPS_PER_CYCLE = {"baseline": 16.0, "avx2": 32.0, "avx512": 32.0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_ghz() -> float:
    """The clock from /proc/cpuinfo (the nominal one under a hypervisor), else 3.0."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1]) / 1000
    except (OSError, ValueError):
        pass
    return 3.0


def copy_bandwidth() -> float:
    """Bytes per second one core moves copying a 256 MiB array (read + write counted)."""
    a = np.ones(1 << 25)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best


def roofline(k: int, path: str, ghz: float, bandwidth: float) -> dict[str, float]:
    """The roofline of one AdaGrad update at k (float32).

    Flops: dot product 2k; the two gradient directions d = e q - reg p 3k each; the two row
    steps p + s d 2k each; the two squared norms |d|^2 2k each: 16k, plus ~30 scalar
    operations (ignored). Bytes: the rows p_u and q_i are read and written back (16k bytes)
    and the record (12 bytes) read; the six per-row scalars (two biases, four accumulators)
    touch six more cache lines, read and written (6 * 128 bytes), when they are not cached.
    Two estimates of the memory side: "DRAM", rows and scalars from memory at the measured
    copy bandwidth of one core (a rating matrix too large for the caches, random rows); and
    "L2", the block-parallel layout, where a block's rows stay in the L2 cache and only the
    records stream from memory (12 bytes per update). The compute side: FLOPS_PER_CYCLE at
    the nominal clock. The roofline is the minimum of compute and memory rates.
    """
    flops = 16 * k
    row_bytes = 16 * k + 12 + 6 * 128
    compute = FLOPS_PER_CYCLE[path] * ghz * 1e9 / flops
    dram = bandwidth / row_bytes
    l2 = bandwidth / 12
    return {"flops": flops, "bytes": row_bytes, "compute": compute, "dram": dram, "l2": l2}


def load_set(name: str) -> Ratings:
    log(f"generating {name} ...")
    t = time.perf_counter()
    X = synthetic(name, random_state=0)
    log(f"  {X.nnz:,} ratings in {time.perf_counter() - t:.1f} s")
    return X


def start_state(nu: int, ni: int, k: int) -> tuple[tuple[Any, ...], dict[str, np.ndarray]]:
    """The kernel arguments of an AdaGrad epoch from a fresh float32 start: factors drawn
    into 64-byte aligned arrays as ``fit`` allocates them (``normal_rows``; a NumPy array
    from ``astype`` starts 16 bytes past a line, and every 64-byte row access then spans
    two cache lines), zero biases, unit accumulators."""
    rng = np.random.default_rng(0)
    P, Q = normal_rows(rng, nu, k, np.float32), normal_rows(rng, ni, k, np.float32)
    P *= np.float32(0.1)
    Q *= np.float32(0.1)
    bu, bi = np.zeros(nu, np.float32), np.zeros(ni, np.float32)
    G = {
        "Gp": np.ones(nu, np.float32),
        "Gq": np.ones(ni, np.float32),
        "Gbu": np.ones(nu, np.float32),
        "Gbi": np.ones(ni, np.float32),
    }
    return (P, Q, bu, bi, 3.5, 0.08, 0.05, 0.05, True), G


def epoch_rates(X: Ratings, k: int, path: str, reps: int) -> tuple[float, float, int]:
    """(updates per thread CPU second, per wall second, B) of one AdaGrad epoch on one
    thread, best of `reps`: the kernel call only, on the layout ``SGD.fit`` uses for this
    data and k (``blocks='auto'``: the shuffled record array below 500k ratings, else B x B
    blocks whose rows stay in the caches, each block shuffled by the kernel)."""
    nu, ni = X.shape
    B = resolve_blocks("auto", X.nnz, nu, ni, 4 * k)
    if B == 1:
        rec, offsets = rating_records(X), None
        _sgd.shuffle_records(rec, 1)
    else:
        layout = block_layout(X, B, 1, 2)
        rec, offsets = layout.records, layout.offsets
    args, G = start_state(nu, ni, k)
    level = isa_level(path)
    cpu, wall = float("inf"), float("inf")
    for rep in range(reps):
        c, w = time.thread_time(), time.perf_counter()
        if offsets is None:
            _sgd.sgd_epoch(rec, *args, isa=level, **G)
        else:
            strata, seeds = epoch_schedule(rep, B)
            _sgd.sgd_block_epoch(rec, offsets, strata, seeds, True, 1, *args, isa=level, **G)
        cpu = min(cpu, time.thread_time() - c)
        wall = min(wall, time.perf_counter() - w)
    return X.nnz / max(cpu, 1e-9), X.nnz / wall, B


def order_rate(
    X: Ratings,
    order: str,
    threads: int,
    rep: int,
    path: str | None = None,
    B: int = 0,
    user_chunk: int = 16,
) -> tuple[float, float, int]:
    """(updates per wall second, per thread CPU second, B) of one AdaGrad epoch, k=64,
    float32, on the fastest path, in the visiting order ``order`` ('shuffle': the block
    layout's records, each block shuffled; 'rows': the row-grouped walk of the CSR arrays,
    a block's users shuffled in chunks of ``user_chunk``, 16 as in a fit), on the layout
    ``SGD.fit`` uses for it (or on B x B blocks, B > 0); the epoch plan seeded by
    ``rep``."""
    nu, ni, k = X.n_users, X.n_items, 64
    args, G = start_state(nu, ni, k)
    level = isa_level(path or mfkit.available_isas()[-1])
    if order == "rows":
        B = B or resolve_row_blocks("auto", X.nnz, nu, ni, 4 * k)
        lay = _ROW_LAYOUTS.get((id(X), B)) or row_layout(X, B, 1)
        _ROW_LAYOUTS[(id(X), B)] = lay
        strata, seeds = epoch_schedule(rep, B)
        c, w = time.thread_time(), time.perf_counter()
        _sgd.sgd_rows_epoch(
            X.indptr, X.indices, X.values, lay.segments, lay.group_users, lay.group_ptr,
            strata, seeds, True, threads, *args, isa=level, user_chunk=user_chunk, **G,
        )  # fmt: skip
    else:
        B = B or resolve_blocks("auto", X.nnz, nu, ni, 4 * k)
        blk = _BLOCK_LAYOUTS.get((id(X), B)) or block_layout(X, B, 1, 2)
        _BLOCK_LAYOUTS[(id(X), B)] = blk
        strata, seeds = epoch_schedule(rep, B)
        c, w = time.thread_time(), time.perf_counter()
        _sgd.sgd_block_epoch(
            blk.records, blk.offsets, strata, seeds, True, threads, *args, isa=level, **G
        )
    cpu, wall = time.thread_time() - c, time.perf_counter() - w
    return X.nnz / wall, X.nnz / max(cpu, 1e-9), B


_ROW_LAYOUTS: dict[tuple[int, int], Any] = {}
_BLOCK_LAYOUTS: dict[tuple[int, int], Any] = {}


def blocks_table(args: argparse.Namespace, sets: dict[str, Ratings]) -> None:
    """The block count of the default order ('rows') against its epoch speed: updates/s of
    one epoch at B in 2, 4, 8, 16 on 1 and ``--threads`` threads for the 10M (and, with
    ``--large``, the Netflix-shaped) set, the B values alternating rep by rep; best and
    median of ``--reps``. ``blocks='auto'`` marks the B a fit takes."""
    rows = []
    for name in [n for n in ("ml-10m", "netflix") if n in sets]:
        X = sets[name]
        auto = resolve_row_blocks("auto", X.nnz, X.n_users, X.n_items, 256)
        for threads in sorted({1, args.threads}):
            runs: dict[int, list[float]] = {B: [] for B in (2, 4, 8, 16)}
            for rep in range(args.reps):
                for B in runs:
                    runs[B].append(order_rate(X, "rows", threads, rep, B=B)[0])
            for B, r in runs.items():
                rows.append(
                    {"set": name, "threads": threads, "B": B, "auto": "yes" if B == auto else "",
                     "best M/s": max(r) / 1e6, "median M/s": float(np.median(r)) / 1e6}
                )  # fmt: skip
    print_table(rows, "order='rows' epoch speed by block count (k=64, float32, AdaGrad)")


def chunks_table(args: argparse.Namespace, sets: dict[str, Ratings]) -> None:
    """The default order's user shuffle: updates/s of one epoch with a block's users in
    one Fisher-Yates order (user_chunk=1, the order of earlier releases) against chunks of 16 (every
    fit), on 1 and ``--threads`` threads for the 10M (and, with ``--large``, the
    Netflix-shaped) set, the two alternating rep by rep; best and median of ``--reps``,
    and the median of the per-pair ratios."""
    rows = []
    for name in [n for n in ("ml-10m", "netflix") if n in sets]:
        X = sets[name]
        for threads in sorted({1, args.threads}):
            order_rate(X, "rows", threads, 99)  # warm-up: the layout, first touch
            runs: dict[int, list[float]] = {1: [], 16: []}
            for rep in range(max(args.reps, 3)):
                for c in (1, 16) if rep % 2 == 0 else (16, 1):
                    runs[c].append(order_rate(X, "rows", threads, rep, user_chunk=c)[0])
            ratio = np.array(runs[16]) / np.array(runs[1])
            for c, r in runs.items():
                rows.append(
                    {"set": name, "threads": threads, "user_chunk": c,
                     "best M/s": max(r) / 1e6, "median M/s": float(np.median(r)) / 1e6,
                     "median pair ratio 16/1": float(np.median(ratio)) if c == 16 else "",
                     "16 ahead": f"{int((ratio > 1).sum())}/{len(ratio)}" if c == 16 else ""}
                )  # fmt: skip
    print_table(rows, "order='rows' epoch speed by user_chunk (k=64, float32, AdaGrad)")


def order_table(args: argparse.Namespace, sets: dict[str, Ratings]) -> None:
    """Visiting orders side by side: epoch updates/s of 'shuffle' and 'rows' at 1M and 10M
    ratings on 1 and 2 threads, the two orders alternating rep by rep (so a change of the
    machine's load hits both), best and median of ``--reps`` epochs each; then a 20-epoch
    (``--epochs``) fit per order with its peak memory."""
    rows = []
    for name in ("ml-1m", "ml-10m"):
        if name not in sets:
            continue
        X = sets[name]
        for threads in (1, 2):
            got: dict[str, list[tuple[float, float]]] = {"shuffle": [], "rows": []}
            Bs = {}
            for order in got:  # a warm-up epoch of each (layouts, first touch)
                Bs[order] = order_rate(X, order, threads, 99)[2]
            for rep in range(max(args.reps, 3)):
                for order in got:
                    wall, cpu, _ = order_rate(X, order, threads, rep)
                    got[order].append((wall, cpu))
            base = np.median([w for w, _ in got["shuffle"]])
            for order, v in got.items():
                walls = [w for w, _ in v]
                rows.append(
                    {
                        "set": name,
                        "threads": threads,
                        "order": order,
                        "B": Bs[order],
                        "M upd/s wall best": max(walls) / 1e6,
                        "M upd/s wall median": float(np.median(walls)) / 1e6,
                        # the calling thread's CPU time: a rate only with one thread
                        "M upd/s cpu best": (
                            max(c for _, c in v) / 1e6 if threads == 1 else float("nan")
                        ),
                        "median / shuffle": float(np.median(walls)) / base,
                    }
                )
    print_table(
        rows,
        "visiting orders, one AdaGrad epoch, k=64, float32, path "
        f"{mfkit.available_isas()[-1]}; orders alternated rep by rep; load average "
        f"{os.getloadavg()[0]:.2f}",
    )
    fits = []
    for name, X in sets.items():
        if name == "ml-100k":
            continue
        for order in ("shuffle", "rows"):
            warm = mfkit.SGD(factors=64, epochs=1, regularization=0.05, order=order)
            warm.n_threads = args.threads
            warm.fit(X)
            m, seconds, peak = fit_once(X, args.epochs, args.threads, order=order)
            csr = X.indptr.nbytes + X.indices.nbytes + X.values.nbytes
            factors = m.user_factors_.nbytes + m.item_factors_.nbytes
            fits.append(
                {
                    "set": name,
                    "order": order,
                    "B": m.blocks_,
                    "fit s": seconds,
                    "median epoch s": float(np.median(m.history_["seconds"])),
                    "train rmse": m.history_["train_rmse"][-1],
                    "peak / (CSR+factors)": (csr + peak) / (csr + factors),
                }
            )
    print_table(
        fits,
        f"SGD.fit per visiting order, k=64, float32, AdaGrad, {args.epochs} epochs, "
        f"{args.threads} threads; peak = CSR arrays + the fit's tracemalloc peak",
    )


# ---------------------------------------------------------------------------- sections
def kernel_table(args: argparse.Namespace, X: Ratings) -> list[dict[str, Any]]:
    ghz, bw = cpu_ghz(), copy_bandwidth()
    rows: list[dict[str, Any]] = []
    for k in KS:
        for path in mfkit.available_isas():
            cpu, wall, B = epoch_rates(X, k, path, args.reps)
            roof = roofline(k, path, ghz, bw)
            bound = min(roof["compute"], roof["l2"])
            rows.append(
                {
                    "k": k,
                    "B": B,
                    "path": path,
                    "M upd/s (cpu)": cpu / 1e6,
                    "M upd/s (wall)": wall / 1e6,
                    "flops/upd": roof["flops"],
                    "bytes/upd": roof["bytes"],
                    "compute roof": roof["compute"] / 1e6,
                    "DRAM roof": roof["dram"] / 1e6,
                    "% of roof": 100 * cpu / bound,
                }
            )
    print_table(
        rows,
        f"1 thread, one AdaGrad epoch, float32, {X.nnz:,} ratings ({X.shape[0]:,} x "
        f"{X.shape[1]:,}); roofs in M updates/s at {ghz:.2f} GHz nominal, one-core copy "
        f"bandwidth {bw / 1e9:.1f} GB/s; '% of roof' = cpu rate / min(compute, L2 roof)",
    )
    return rows


def serial_floor(args: argparse.Namespace, X: Ratings) -> None:
    """One thread, k=64: the shuffled-record epoch (the kernel table's) and the default
    row-grouped epoch, each on the baseline and the fastest path (best of ``--reps``)."""
    best = mfkit.available_isas()[-1]
    rows, rates = [], {}
    for order in ("shuffle", "rows"):
        for path in ("baseline", best):
            if order == "shuffle":
                cpu, wall, B = epoch_rates(X, 64, path, args.reps)
            else:
                runs = [order_rate(X, "rows", 1, rep, path) for rep in range(args.reps)]
                wall, cpu, B = (max(r[0] for r in runs), max(r[1] for r in runs), runs[0][2])
            rates[order, path] = cpu
            rows.append(
                {"order": order, "B": B, "path": path, "M upd/s (cpu)": cpu / 1e6,
                 "M upd/s (wall)": wall / 1e6}
            )  # fmt: skip
    print_table(rows, f"serial floor: 1 thread, k=64, float32, AdaGrad, {X.nnz:,} ratings")
    for order in ("shuffle", "rows"):
        cpu = rates[order, best]
        floor(f"{order}, {best} >= 40M updates/s (cpu rate)", cpu / 1e6, 40.0, higher=True)
        floor(
            f"{order}, {best} >= 1.6x baseline shuffle (cpu rates)",
            cpu / rates["shuffle", "baseline"],
            1.6,
            higher=True,
        )


def floor(what: str, value: float, limit: float, *, higher: bool) -> None:
    ok = value >= limit if higher else value <= limit
    print(f"FLOOR {'PASS' if ok else 'FAIL'}: {what}: {value:.4g}")


def fit_once(
    X: Ratings, epochs: int, threads: int, order: str = "auto"
) -> tuple[mfkit.SGD, float, int]:
    """A fit with a fixed regularization (0.05; 'auto' would add its search): the model,
    the fit's seconds and its tracemalloc peak in bytes above what existed before."""
    m = mfkit.SGD(
        factors=64,
        epochs=epochs,
        regularization=0.05,
        random_state=0,
        n_threads=threads,
        order=order,
    )
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    m.fit(X)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return m, seconds, peak


def fit_overhead(
    args: argparse.Namespace, sets: dict[str, Ratings]
) -> dict[str, tuple[mfkit.SGD, float]]:
    rows, models = [], {}
    for name, X in sets.items():
        # a warm-up fit (imports, first-touch of the kernels) is not a fixed cost of fit
        mfkit.SGD(factors=64, epochs=1, regularization=0.05, n_threads=args.threads).fit(X)
        m, seconds, peak = fit_once(X, args.epochs, args.threads)
        models[name] = (m, seconds)
        epochs = float(np.sum(m.history_["seconds"]))
        csr = X.indptr.nbytes + X.indices.nbytes + X.values.nbytes
        factors = m.user_factors_.nbytes + m.item_factors_.nbytes
        rows.append(
            {
                "set": name,
                "ratings": X.nnz,
                "B": m.blocks_,
                "isa": m.isa_,
                "fit s": seconds,
                "epochs s": epochs,
                "overhead s": seconds - epochs,
                "overhead %": 100 * (seconds - epochs) / seconds,
                "median epoch s": float(np.median(m.history_["seconds"])),
                "peak / (CSR+factors)": (csr + peak) / (csr + factors),
            }
        )
    print_table(
        rows,
        f"SGD.fit, k=64, float32, AdaGrad, {args.epochs} epochs, {args.threads} threads: "
        "overhead = fit time minus the sum of the epoch times; peak = CSR arrays + the fit's "
        "tracemalloc peak",
    )
    for r in rows:
        if r["set"] == "ml-1m" and args.epochs == 20:
            floor("fit overhead <= 15% (1M ratings)", r["overhead %"], 15.0, higher=False)
        elif r["set"] == "ml-1m":
            print("FLOOR n/a: fit overhead <= 15% of a 20-epoch 1M fit (run with 20 epochs)")
        if r["set"] == "netflix":
            floor("Netflix shape: one epoch <= 1.5 s", r["median epoch s"], 1.5, higher=False)
            if args.epochs == 20:
                floor("Netflix shape: 20-epoch fit <= 40 s", r["fit s"], 40.0, higher=False)
            floor(
                "Netflix shape: peak <= 1.3x CSR + factors",
                r["peak / (CSR+factors)"],
                1.3,
                higher=False,
            )
    return models


def write_libmf_text(X: Ratings, path: str) -> None:
    u, i, r = X.to_triplets()
    step = 1 << 22
    with open(path, "w") as fh:
        for s in range(0, X.nnz, step):
            block = np.column_stack([u[s : s + step], i[s : s + step], r[s : s + step]])
            np.savetxt(fh, block, fmt="%d %d %.6g")


def libmf_loop_seconds(binary: str, data: str, iters: int, threads: int, reps: int) -> float:
    """Seconds of `iters` iterations of mf-train's training loop: the wall time of
    ``-t iters+1`` minus that of ``-t 1`` (best of `reps` each)."""

    def run(t: int) -> float:
        best = float("inf")
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [binary, "--quiet", "-k", "64", "-t", str(t), "-s", str(threads)]
            cmd += ["-l2", "0.05", data, os.path.join(tmp, "model")]
            for _ in range(reps):
                start = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                best = min(best, time.perf_counter() - start)
        return best

    return max(run(iters + 1) - run(1), 1e-9)


def libmf_side_by_side(
    args: argparse.Namespace, sets: dict[str, Ratings], models: dict[str, tuple[mfkit.SGD, float]]
) -> None:
    rows = []
    for name, X in sets.items():
        if name == "ml-100k":
            continue
        m, fit_s = models[name]
        epoch = float(np.median(m.history_["seconds"]))
        with tempfile.TemporaryDirectory() as tmp:
            text = os.path.join(tmp, "ratings.txt")
            log(f"writing {name} as text for LibMF ...")
            write_libmf_text(X, text)
            for d in args.libmf:
                binary = os.path.join(d, "mf-train")
                log(f"timing {binary} on {name} ...")
                loop = libmf_loop_seconds(binary, text, args.epochs, args.threads, args.reps)
                per_iter = loop / args.epochs
                rows.append(
                    {
                        "set": name,
                        "LibMF build": os.path.basename(os.path.normpath(d)),
                        "threads": args.threads,
                        "LibMF M upd/s": X.nnz / per_iter / 1e6,
                        "mfkit M upd/s": X.nnz / epoch / 1e6,
                        "mfkit / LibMF": per_iter / epoch,
                        "LibMF loop s": loop,
                        "mfkit fit s": fit_s,
                        "mfkit fit / LibMF loop": fit_s / loop,
                    }
                )
    print_table(
        rows,
        f"mfkit SGD (isa {mfkit.get_isa()}, biases, AdaGrad) vs LibMF mf-train (k=64, "
        f"l2 0.05, {args.epochs} iterations), the same ratings and threads; LibMF's loop = "
        "wall(-t N+1) - wall(-t 1); mfkit's rate from its median epoch, its fit with set-up",
    )
    for r in rows:
        if r["set"] == "ml-10m" and args.threads == 2:
            floor(
                f"10M, 2 threads: >= 2x LibMF ({r['LibMF build']})",
                r["mfkit / LibMF"],
                2.0,
                higher=True,
            )
        if r["set"] == "netflix" and args.epochs == 20:
            floor(
                f"Netflix shape: fit <= 0.6x LibMF's loop ({r['LibMF build']})",
                r["mfkit fit / LibMF loop"],
                0.6,
                higher=False,
            )


def plot(rows: list[dict[str, Any]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in mfkit.available_isas():
        mine = [r for r in rows if r["path"] == p]
        ax.plot([r["k"] for r in mine], [r["M upd/s (cpu)"] for r in mine], "o-", label=p)
        ax.plot(
            [r["k"] for r in mine],
            [r["compute roof"] for r in mine],
            ":",
            label=f"{p} compute roof",
        )
    dram = [r for r in rows if r["path"] == "baseline"]
    ax.plot([r["k"] for r in dram], [r["DRAM roof"] for r in dram], "k--", label="DRAM roof")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("k (factors)")
    ax.set_ylabel("M updates/s, one core")
    ax.set_title(f"mfkit SGD epoch (AdaGrad, float32) on {cpu_name()}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    log(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1M ratings at most, 5 epochs")
    ap.add_argument("--large", action="store_true", help="add the 100M Netflix-shaped set")
    ap.add_argument("--libmf", action="append", default=[], help="a LibMF build directory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the fits (20)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each timing")
    ap.add_argument("--plot", default=None, help="write the kernel table as this PNG")
    ap.add_argument(
        "--orders",
        action="store_true",
        help="only the visiting orders side by side (SGD order='shuffle' vs 'rows')",
    )
    ap.add_argument(
        "--chunks",
        action="store_true",
        help="only the default order's user shuffle: one by one against chunks of 16",
    )
    ap.add_argument(
        "--blocks",
        action="store_true",
        help="only the default order's epoch speed for B in 2, 4, 8, 16 (10M, Netflix)",
    )
    args = ap.parse_args(argv)
    if args.epochs is None:
        args.epochs = 5 if args.quick else 20
    for d in args.libmf:
        if not os.access(os.path.join(d, "mf-train"), os.X_OK):
            ap.error(f"--libmf {d}: no executable mf-train there (build LibMF with make)")
    print_machine()
    print(f"# kernel paths: {', '.join(mfkit.available_isas())} (fits use {mfkit.get_isa()})")
    print(f"# OMP_WAIT_POLICY: {os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"# load average: {os.getloadavg()[0]:.2f}")
    names = ["ml-100k", "ml-1m"] + ([] if args.quick else ["ml-10m"])
    names += ["netflix"] if args.large else []
    sets = {name: load_set(name) for name in names}
    if args.orders:
        order_table(args, sets)
        return
    if args.blocks:
        blocks_table(args, sets)
        return
    if args.chunks:
        chunks_table(args, sets)
        return
    rows = kernel_table(args, sets["ml-1m"])
    serial_floor(args, sets["ml-1m" if args.quick else "ml-10m"])
    models = fit_overhead(args, sets)
    if args.libmf:
        libmf_side_by_side(args, sets, models)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
