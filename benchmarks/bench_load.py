"""Loading rating files: mfkit's loaders against pandas.read_csv, into the CSR container.

Writes synthetic files in each text format (MovieLens CSV, MovieLens ``::`` .dat, MovieLens
100K tab-separated, Netflix ``combined_data``) with 1M and 10M ratings (and 100M with
``--large``), then times, each in a fresh subprocess (so peak memory is per run):

* ``mfkit``: ``mfkit.io.load_*`` -> ``mfkit.Ratings`` (ids mapped, CSR built);
* ``pandas-c``: ``pandas.read_csv(engine='c')`` -> ``Ratings.from_triplets`` (the same final
  container, ids mapped); ``::`` files are read with ``sep=':'`` and every other column, the
  fastest C-engine recipe; Netflix with the usual recipe (movie lines parsed as rows, then
  forward-filled);
* ``pandas-arrow``: the same with ``engine='pyarrow'`` when pyarrow is installed (not for
  ``::`` files, which that engine cannot split);
* ``read-only`` columns give the parse time alone (before building the container).

Also times re-opening a cache written by ``Ratings.save``, memory-mapped. Throughput is MB
of text per second of wall time; the peak is the child process's maximum resident set
(``VmHWM``, Linux only; it includes the interpreter and imports, shown as ``base MB``).
Ratios are against mfkit in the same run. Files are cached in ``--dir`` (default: a
temporary folder) and kept with ``--keep``.

    python benchmarks/bench_load.py                 # 1M and 10M
    python benchmarks/bench_load.py --sizes 1M      # quick
    python benchmarks/bench_load.py --large --formats netflix   # the 100M Netflix floor
    python benchmarks/bench_load.py --order --repeat 5   # sorted vs random line order

``--order`` times, instead, a MovieLens CSV of ``--sizes`` (default 10M) lines in user order
and the same lines shuffled: mfkit's load (``after``), the same load with the CSR assembly of
earlier releases (a stable LSD radix permutation and a gather of each column: ``before``,
kept callable for this comparison), and ``pandas.read_csv`` alone. Each cell is the median
of ``--repeat`` fresh processes, the tools interleaved so a busy machine slows them alike;
the ratios are of medians of the same run, checked against the floors: the random-order load
at least 2.5x faster than ``pandas.read_csv`` alone, and the sorted load no slower than
``before`` (within 5%, the noise of one run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ORDER_FLOOR = 2.5  # random-order load: pandas.read_csv alone over mfkit, at least
SORTED_SLACK = 1.05  # sorted load: after over before, at most (timing noise)
FORMATS = ("ml-csv", "ml-dat", "ml-100k", "netflix")
SHAPES = {"ml": (330_000, 86_000), "netflix": (480_189, 17_770)}


# --------------------------------------------------------------------------- file writing
def _digits(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, w) ASCII digit matrix of non-negative ints, and the mask of the used bytes."""
    a = np.asarray(a, dtype=np.int64)
    w = max(1, len(str(int(a.max())))) if len(a) else 1
    pw = 10 ** np.arange(w - 1, -1, -1, dtype=np.int64)
    mat = ((a[:, None] // pw[None, :]) % 10 + 48).astype(np.uint8)
    nd = np.ones(len(a), dtype=np.int64)
    for k in range(1, w):
        nd += a >= 10**k
    mask = np.arange(w)[None, :] >= (w - nd)[:, None]
    return mat, mask


def _const(text: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    mat = np.broadcast_to(np.frombuffer(text, np.uint8), (n, len(text)))
    return mat, np.ones((n, len(text)), dtype=bool)


def _table(strings: list[bytes], codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = max(len(s) for s in strings)
    lut = np.zeros((len(strings), w), dtype=np.uint8)
    lm = np.zeros((len(strings), w), dtype=bool)
    for k, s in enumerate(strings):
        lut[k, : len(s)] = np.frombuffer(s, np.uint8)
        lm[k, : len(s)] = True
    return lut[codes], lm[codes]


def _lines(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    mat = np.concatenate([p[0] for p in parts], axis=1)
    mask = np.concatenate([p[1] for p in parts], axis=1)
    return mat, mask


def _rating_strings(half: bool, csv_style: bool) -> list[bytes]:
    if half:
        return [f"{k / 2:.1f}".encode() if csv_style or k % 2 else str(k // 2).encode()
                for k in range(0, 11)]  # fmt: skip
    return [str(k).encode() for k in range(0, 6)]


def _draw(n: int, n_users: int, n_items: int, seed: int, by_item: bool) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    if n > n_users * n_items // 2:
        raise ValueError(f"{n} ratings do not fit a {n_users} x {n_items} matrix this way")
    keys = np.zeros(0, dtype=np.int64)
    new_rate = 1.0  # distinct new pairs per draw, as last seen
    while len(keys) < n:  # skewed draws repeat pairs: draw until n distinct pairs
        m = int((n - len(keys)) / max(new_rate, 0.02) * 1.2) + 1000
        u = (n_users * rng.random(m) ** 2).astype(np.int64)
        i = (n_items * rng.random(m) ** 3).astype(np.int64)
        had = len(keys)
        keys = np.union1d(keys, i * n_users + u if by_item else u * n_items + i)
        new_rate = (len(keys) - had) / m
    if len(keys) > n:
        keys = keys[np.sort(rng.choice(len(keys), n, replace=False))]
    if by_item:
        i, u = np.divmod(keys, n_users)
    else:
        u, i = np.divmod(keys, n_items)
    return u, i, rng


def write_file(fmt: str, n: int, path: str, seed: int = 0) -> int:
    """Write a synthetic file of about n ratings; returns the number of ratings."""
    if fmt == "netflix":
        n_users, n_items = SHAPES["netflix"]
        u, i, rng = _draw(n, n_users, n_items, seed, by_item=True)
        user_ids = np.sort(rng.choice(2_649_429, n_users, replace=False) + 1)
        days = rng.integers(0, 2200, len(u))
        dates = (np.datetime64("1999-11-11") + np.arange(2200)).astype(str)
        date_strings = [d.encode() for d in dates]
        r = rng.integers(1, 6, len(u))
        with open(path, "wb") as fh:
            step = 2_000_000
            prev = -1
            for a in range(0, len(u), step):
                b = min(len(u), a + step)
                uu, ii = u[a:b], i[a:b]
                mat, mask = _lines([
                    _digits(user_ids[uu]), _const(b",", b - a),
                    _table(_rating_strings(False, False), r[a:b]), _const(b",", b - a),
                    _table(date_strings, days[a:b]), _const(b"\n", b - a),
                ])  # fmt: skip
                new = np.flatnonzero(np.diff(np.concatenate(([prev], ii))) != 0)
                out = []
                last = 0
                for s in new:
                    out.append(mat[last:s][mask[last:s]].tobytes())
                    out.append(f"{ii[s] + 1}:\n".encode())
                    last = s
                out.append(mat[last:][mask[last:]].tobytes())
                fh.write(b"".join(out))
                prev = int(ii[-1])
        return len(u)
    n_users, n_items = SHAPES["ml"]
    u, i, rng = _draw(n, n_users, n_items, seed, by_item=False)
    movie_ids = np.sort(rng.choice(200_000, n_items, replace=False) + 1)
    half = fmt != "ml-100k"
    r = rng.integers(1 if not half else 1, 11 if half else 6, len(u))
    ts = 789_652_009 + rng.integers(0, 900_000_000, len(u))
    sep = {"ml-csv": b",", "ml-dat": b"::", "ml-100k": b"\t"}[fmt]
    with open(path, "wb") as fh:
        if fmt == "ml-csv":
            fh.write(b"userId,movieId,rating,timestamp\n")
        step = 2_000_000
        for a in range(0, len(u), step):
            b = min(len(u), a + step)
            mat, mask = _lines([
                _digits(u[a:b] + 1), _const(sep, b - a), _digits(movie_ids[i[a:b]]),
                _const(sep, b - a), _table(_rating_strings(half, fmt == "ml-csv"), r[a:b]),
                _const(sep, b - a), _digits(ts[a:b]), _const(b"\n", b - a),
            ])  # fmt: skip
            fh.write(mat[mask].tobytes())
    return len(u)


# --------------------------------------------------------------------------- timed runs
CHILD = r"""
import json, sys, time
import numpy as np


def hwm_mb():
    # VmHWM is reset by exec (unlike ru_maxrss, which a forked child inherits)
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


fmt, tool, path = sys.argv[1], sys.argv[2], sys.argv[3]
import mfkit, mfkit.io
if tool.startswith("pandas"):
    import pandas as pd
if tool == "mfkit-before":  # the CSR assembly of earlier releases (permutation + gathers)
    import mfkit.data._csr
    mfkit.data._csr._PLACEMENT = "permutation"
    tool = "mfkit"
base = hwm_mb()
t0 = time.perf_counter()
t_read = None
if tool == "pandas-read":  # the parse alone, no container
    df = pd.read_csv(path, engine="c")
    secs = time.perf_counter() - t0
    print(json.dumps({"seconds": secs, "read": secs, "peak_mb": hwm_mb(), "base_mb": base,
                      "nnz": len(df)}))
    sys.exit(0)
if tool == "mfkit":
    load = {"ml-csv": mfkit.io.load_movielens_csv, "ml-dat": mfkit.io.load_movielens_dat,
            "ml-100k": mfkit.io.load_movielens_100k, "netflix": mfkit.io.load_netflix}[fmt]
    R = load(path)
elif tool == "cache":
    R = mfkit.Ratings.load(path, mmap=True)
    _ = (R.indptr[-1], R.values[-1])
else:
    engine = "pyarrow" if tool == "pandas-arrow" else "c"
    if fmt == "ml-csv":
        df = pd.read_csv(path, engine=engine)
        u, i, r, t = df.userId, df.movieId, df.rating, df.timestamp
    elif fmt == "ml-100k":
        df = pd.read_csv(path, sep="\t", header=None, names=["u", "i", "r", "t"], engine=engine)
        u, i, r, t = df.u, df.i, df.r, df.t
    elif fmt == "ml-dat":
        df = pd.read_csv(path, sep=":", header=None, usecols=[0, 2, 4, 6],
                         names=["u", "i", "r", "t"], engine=engine)
        u, i, r, t = df.u, df.i, df.r, df.t
    else:
        df = pd.read_csv(path, header=None, names=["u", "r", "d"], engine=engine)
        movie = df.r.isna()
        item = df.u.where(movie).str.rstrip(":").ffill().astype("int64")
        df = df[~movie]
        u = df.u.astype("int64")
        i = item[~movie]
        r = df.r
        t = pd.to_datetime(df.d).astype("int64") // 10**9
    t_read = time.perf_counter() - t0
    R = mfkit.Ratings.from_triplets(u.to_numpy(), i.to_numpy(), r.to_numpy(),
                                    timestamps=t.to_numpy())
secs = time.perf_counter() - t0
print(json.dumps({"seconds": secs, "read": t_read, "peak_mb": hwm_mb(),
                  "base_mb": base, "nnz": R.nnz}))
"""


def run_child(fmt: str, tool: str, path: str, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, fmt, tool, path],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}
    if s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def _have(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1M,10M", help="rating counts (default 1M,10M)")
    ap.add_argument("--large", action="store_true", help="add 100M ratings")
    ap.add_argument("--formats", default=",".join(FORMATS), help=f"subset of {FORMATS}")
    ap.add_argument("--tools", default="mfkit,pandas-c,pandas-arrow,cache")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell (best is shown)")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for mfkit")
    ap.add_argument("--dir", default=None, help="where to write the files (reused if present)")
    ap.add_argument("--keep", action="store_true", help="keep the files")
    ap.add_argument("--csv", default=None, help="also write the table as CSV here")
    ap.add_argument("--order", action="store_true", help="sorted vs random line order (see above)")
    args = ap.parse_args(argv)
    if args.order:
        return order_main(args)

    sizes = [_size(s) for s in args.sizes.split(",") if s]
    if args.large:
        sizes.append(100_000_000)
    formats = [f for f in args.formats.split(",") if f]
    for f in formats:
        if f not in FORMATS:
            ap.error(f"unknown format {f!r}; choose from {FORMATS}")
    tools = [t for t in args.tools.split(",") if t]
    if not _have("pandas"):
        tools = [t for t in tools if not t.startswith("pandas")]
        print("pandas is not installed: timing mfkit only")
    if not _have("pyarrow"):
        tools = [t for t in tools if t != "pandas-arrow"]
        print("pyarrow is not installed: no pandas pyarrow-engine column")
    workdir = args.dir or tempfile.mkdtemp(prefix="mfkit-bench-load-")
    os.makedirs(workdir, exist_ok=True)

    import mfkit

    print(
        f"mfkit {mfkit.__version__}, OpenMP {mfkit.openmp_enabled()}, threads "
        f"{args.threads or os.environ.get('OMP_NUM_THREADS') or os.cpu_count()}, "
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus"
    )
    if _have("pandas"):
        import pandas as pd

        print(f"pandas {pd.__version__}", end="")
        if _have("pyarrow"):
            import pyarrow as pa

            print(f", pyarrow {pa.__version__}", end="")
        print()
    rows = []
    header = (
        f"{'format':8s} {'ratings':>11s} {'MB':>7s} {'tool':13s} {'seconds':>8s} {'read s':>7s} "
        f"{'MB/s':>7s} {'peak MB':>8s} {'base MB':>7s} {'mfkit x':>7s}"
    )
    print(header)
    print("-" * len(header))
    try:
        for fmt in formats:
            for n in sizes:
                path = os.path.join(workdir, f"{fmt}-{n}.txt")
                if not os.path.exists(path):
                    t0 = time.perf_counter()
                    write_file(fmt, n, path + ".part")
                    os.replace(path + ".part", path)
                    print(f"  (wrote {path}: {time.perf_counter() - t0:.1f}s)", file=sys.stderr)
                with open(path, "rb") as fh:  # warm the page cache for every tool alike
                    while fh.read(1 << 24):
                        pass
                mb = os.path.getsize(path) / 1e6
                ref = None
                for tool in tools:
                    if tool == "pandas-arrow" and fmt in ("ml-dat", "netflix"):
                        continue  # that engine cannot split '::' nor read ragged lines
                    target = path
                    if tool == "cache":
                        target = path + ".cache"
                        if not os.path.exists(target):
                            _save_cache(fmt, path, target)
                    best: dict | None = None
                    for _ in range(max(1, args.repeat)):
                        res = run_child(fmt, tool, target, args.threads)
                        if "error" in res:
                            best = res
                            break
                        if best is None or res["seconds"] < best["seconds"]:
                            best = res
                    assert best is not None
                    if "error" in best:
                        print(f"{fmt:8s} {n:>11,d} {mb:7.0f} {tool:13s} failed: {best['error']}")
                        continue
                    if tool == "mfkit":
                        ref = best["seconds"]
                    ratio = best["seconds"] / ref if ref and tool != "mfkit" else 1.0
                    rate = mb / best["seconds"] if tool != "cache" else float("nan")
                    read = best.get("read")
                    print(
                        f"{fmt:8s} {best['nnz']:>11,d} {mb:7.0f} {tool:13s} "
                        f"{best['seconds']:8.3f} {read if read is not None else float('nan'):7.2f} "
                        f"{rate:7.0f} {best['peak_mb']:8.0f} {best['base_mb']:7.0f} "
                        f"{ratio:7.2f}",
                        flush=True,
                    )
                    rows.append((fmt, best["nnz"], mb, tool, best["seconds"], read, rate,
                                 best["peak_mb"], best["base_mb"], ratio))  # fmt: skip
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("mfkit x: the tool's wall time over mfkit's (higher = mfkit faster); 'read s': the")
    print("pandas parse alone, before building the container; cache: Ratings.load(mmap=True).")
    if args.csv:
        with open(args.csv, "w") as fh:
            fh.write("format,ratings,mb,tool,seconds,read_seconds,mb_per_s,peak_mb,base_mb,ratio\n")
            for r in rows:
                fh.write(",".join(str(x) for x in r) + "\n")
    return 0


def write_shuffled(src: str, dst: str, seed: int = 1) -> None:
    """The lines of src after its header line, in a random order (the header first)."""
    buf = np.fromfile(src, dtype=np.uint8)
    nl = np.flatnonzero(buf == 10)
    head = int(nl[0]) + 1
    starts = np.concatenate(([head], nl[:-1] + 1))
    ends = nl + 1
    perm = np.random.default_rng(seed).permutation(len(starts))
    with open(dst, "wb") as fh:
        fh.write(buf[:head].tobytes())
        step = 1_000_000
        for a in range(0, len(perm), step):
            p = perm[a : a + step]
            lengths = ends[p] - starts[p]
            offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            idx = np.repeat(starts[p] - offsets, lengths) + np.arange(int(lengths.sum()))
            fh.write(buf[idx].tobytes())


def order_main(args: argparse.Namespace) -> int:
    """Sorted vs random line order: medians of interleaved fresh processes, the floors."""
    n = _size(args.sizes.split(",")[0]) if args.sizes != "1M,10M" else 10_000_000
    tools = ["mfkit", "mfkit-before"] + (["pandas-read"] if _have("pandas") else [])
    if "pandas-read" not in tools:
        print("pandas is not installed: no pandas.read_csv column and no floor check")
    workdir = args.dir or tempfile.mkdtemp(prefix="mfkit-bench-load-")
    os.makedirs(workdir, exist_ok=True)
    import mfkit

    print(
        f"mfkit {mfkit.__version__}, OpenMP {mfkit.openmp_enabled()}, threads "
        f"{args.threads or os.environ.get('OMP_NUM_THREADS') or os.cpu_count()}, "
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus, "
        f"median of {max(1, args.repeat)} runs"
    )
    if _have("pandas"):
        import pandas as pd

        print(f"pandas {pd.__version__} (read_csv, engine='c')")
    header = (
        f"{'order':7s} {'ratings':>11s} {'tool':13s} {'median s':>9s} {'min s':>7s} "
        f"{'max s':>7s} {'peak MB':>8s} {'B/rating':>8s} {'pandas/x':>8s}"
    )
    verdicts = []
    try:
        paths = {}
        for order in ("sorted", "random"):
            paths[order] = os.path.join(workdir, f"ml-csv-{n}-{order}.txt")
        if not os.path.exists(paths["sorted"]):
            write_file("ml-csv", n, paths["sorted"] + ".part")
            os.replace(paths["sorted"] + ".part", paths["sorted"])
        if not os.path.exists(paths["random"]):
            write_shuffled(paths["sorted"], paths["random"] + ".part")
            os.replace(paths["random"] + ".part", paths["random"])
        print(header)
        print("-" * len(header))
        med: dict[tuple[str, str], float] = {}
        best: dict[tuple[str, str], float] = {}
        for order, path in paths.items():
            with open(path, "rb") as fh:  # warm the page cache for every tool alike
                while fh.read(1 << 24):
                    pass
            runs: dict[str, list[dict]] = {t: [] for t in tools}
            for _ in range(max(1, args.repeat)):
                for tool in tools:
                    res = run_child("ml-csv", tool, path, args.threads)
                    if "error" in res:
                        print(f"{order:7s} {tool}: failed: {res['error']}")
                        return 1
                    runs[tool].append(res)
            for tool in tools:
                secs = sorted(r["seconds"] for r in runs[tool])
                med[order, tool] = float(np.median(secs))
                best[order, tool] = secs[0]
            for tool in tools:
                rs = runs[tool]
                peak = float(np.median([r["peak_mb"] for r in rs]))
                base = float(np.median([r["base_mb"] for r in rs]))
                per = (peak - base) * 2**20 / max(1, rs[0]["nnz"])
                ratio = med.get((order, "pandas-read"), float("nan")) / med[order, tool]
                print(
                    f"{order:7s} {rs[0]['nnz']:>11,d} {tool:13s} {med[order, tool]:9.3f} "
                    f"{min(r['seconds'] for r in rs):7.3f} {max(r['seconds'] for r in rs):7.3f} "
                    f"{peak:8.0f} {per:8.1f} {ratio:8.2f}",
                    flush=True,
                )
        print("pandas/x: pandas.read_csv's median over the tool's (higher = the tool faster);")
        print("B/rating: (peak - base resident memory) per rating; mfkit-before: the CSR assembly")
        print("of earlier releases (permutation + gathers) in this build.")
        print()
        speedup = med["random", "mfkit-before"] / med["random", "mfkit"]
        print(
            f"random order, after vs before: {speedup:.2f}x faster (fastest runs: "
            f"{best['random', 'mfkit-before'] / best['random', 'mfkit']:.2f}x)"
        )
        if "pandas-read" in tools:
            print(
                "fastest runs: random order "
                f"{best['random', 'pandas-read'] / best['random', 'mfkit']:.2f}x faster than "
                f"pandas.read_csv, sorted after/before "
                f"{best['sorted', 'mfkit'] / best['sorted', 'mfkit-before']:.3f} (noise only "
                f"slows a run: on a busy machine these are the steadier ratios)"
            )
        if "pandas-read" in tools:
            r = med["random", "pandas-read"] / med["random", "mfkit"]
            ok = r >= ORDER_FLOOR
            verdicts.append(ok)
            print(
                f"floor: random-order load >= {ORDER_FLOOR}x faster than pandas.read_csv alone: "
                f"{r:.2f}x  {'PASS' if ok else 'FAIL'}"
            )
        s = med["sorted", "mfkit"] / med["sorted", "mfkit-before"]
        ok = s <= SORTED_SLACK
        verdicts.append(ok)
        print(
            f"floor: sorted load no slower than before (after/before <= {SORTED_SLACK}): "
            f"{s:.3f}  {'PASS' if ok else 'FAIL'}"
        )
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(verdicts) else 1


def _save_cache(fmt: str, path: str, target: str) -> None:
    code = (
        "import sys, mfkit.io as m; f={'ml-csv': m.load_movielens_csv, 'ml-dat': "
        "m.load_movielens_dat, 'ml-100k': m.load_movielens_100k, 'netflix': m.load_netflix}"
        "[sys.argv[1]]; f(sys.argv[2]).save(sys.argv[3])"
    )
    subprocess.run([sys.executable, "-c", code, fmt, path, target], check=True)


if __name__ == "__main__":
    raise SystemExit(main())
