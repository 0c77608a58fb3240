"""Top-N recommendation and ranking-metric speed on a Netflix-shaped model.

Scores every user of a 480,189 x 17,770 model (k=64, float32, random factors and biases)
against all items, excludes each user's seen items (a random CSR of Netflix density, or
the synthetic 'netflix' set with --seen synthetic) and keeps the top 10. Then computes the
ranking metrics of the first 100,000 lists against held-out relevant items.

The top-N pass runs once per kernel path of ``--isas`` (default: every path this CPU offers;
:func:`mfkit.available_isas`), in the same run: the baseline path scores every tile
exactly without fused multiply-adds, the avx2 and avx512 paths score with fused
multiply-adds as a filter and rescore the candidates exactly. Each path runs twice: as
``recommend`` does (candidates in decreasing order of their score bound, panels whose bound
is below every row's n-th best skipped) and with the skipping off (every panel scored, in
item order: what mfkit did before). The table gives each path's seconds, CPU seconds, the
ratio to the no-skipping run of the same path, the figure extrapolated to 480,189 users and
the floor (8 s for all 480,189 users, two threads), and checks that every run returns the
same lists. How much is skipped depends on the model: here random factors (std 0.1) and
biases (std 0.3).

On a CPU with AVX-512 VNNI the avx512 path screens the slots with int8 dot products and a
proven error bound (``_screen.h``) before scoring the survivors exactly; the row
``avx512-f32`` is the same path with its float32 fused filter instead, run right after it.

Reference, measured in the same run: a brute-force NumPy pass on a sample of users (one
float32 BLAS matrix product per block of users, seen items masked, ``argpartition`` +
``argsort`` of the top n), extrapolated to all users. Peak memory is what NumPy allocates
during the call (tracemalloc), beyond the model and the seen matrix.

    python benchmarks/bench_recommend.py                   # full size
    python benchmarks/bench_recommend.py --users 50000     # quicker
    python benchmarks/bench_recommend.py --quick           # 60,000 users, each path
    python benchmarks/bench_recommend.py --quick --seen synthetic --fit-epochs 5  # trained
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc

import numpy as np

import mfkit
from mfkit import metrics
from mfkit.models.sgd import SGD
from mfkit.ratings import Ratings
from mfkit.recommend import _recommend, _topn


def random_seen(n_users: int, n_items: int, nnz: int, seed: int) -> Ratings:
    """A CSR with Pareto-tailed row lengths and uniform random items, ~nnz entries."""
    rng = np.random.default_rng(seed)
    w = rng.pareto(1.5, n_users) + 1.0
    counts = np.minimum(np.maximum(1, (w / w.sum() * nnz).astype(np.int64)), n_items // 2)
    parts_u, parts_i = [], []
    start = 0
    ends = np.cumsum(counts)
    while start < n_users:
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] + 10_000_000)))
        stop = min(stop, n_users)
        c = counts[start:stop]
        u = np.repeat(np.arange(start, stop, dtype=np.int64), c)
        keys = np.sort(u * n_items + rng.integers(0, n_items, len(u)))
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
        parts_u.append(keys // n_items)
        parts_i.append((keys % n_items).astype(np.int32))
        start = stop
    u = np.concatenate(parts_u)
    i = np.concatenate(parts_i)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(u, minlength=n_users), out=indptr[1:])
    vals = np.ones(len(i), dtype=np.float32)
    return Ratings(indptr, i, vals, (n_users, n_items), check=False)


def make_model(seen: Ratings, k: int, seed: int) -> SGD:
    """An SGD model with random factors 'fitted' on the seen matrix (zero epochs)."""
    m = SGD(factors=k, epochs=0, random_state=seed, init_std=0.1)
    m.fit(seen)
    rng = np.random.default_rng(seed + 1)
    m.user_biases[:] = rng.normal(0, 0.3, seen.n_users).astype(np.float32)
    m.item_biases[:] = rng.normal(0, 0.3, seen.n_items).astype(np.float32)
    return m


def numpy_topn(model: SGD, seen: Ratings, users: np.ndarray, n: int) -> np.ndarray:
    P, Q = model.user_factors, model.item_factors
    out = np.empty((len(users), n), dtype=np.int64)
    for s in range(0, len(users), 1024):
        u = users[s : s + 1024]
        S = (P[u] @ Q.T).astype(np.float64)
        S += model.global_mean + model.user_biases[u, None] + model.item_biases[None, :]
        for r, uu in enumerate(u):
            S[r, seen.indices[seen.indptr[uu] : seen.indptr[uu + 1]]] = -np.inf
        part = np.argpartition(-S, n, axis=1)[:, :n]
        sc = np.take_along_axis(S, part, 1)
        out[s : s + len(u)] = np.take_along_axis(part, np.argsort(-sc, axis=1), 1)
    return out


def topn_without_skipping(model: SGD, users: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernel call ``recommend`` makes (seen items excluded), with the skipping off."""
    rows = np.asarray(users, dtype=np.int64)
    return _topn._topn(
        model.user_factors,
        rows,
        model.item_factors,
        np.arange(model.n_items, dtype=np.int64),
        n,
        model.global_mean + model.user_biases[rows].astype(np.float64),
        model.item_biases.astype(np.float64),
        model._fitted.seen,
        rows,
        model.n_threads_,
        prune=False,
    )


def topn_screen_off(model: SGD, users: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernel call ``recommend`` makes (skipping on), with the avx512 path's float32
    filter in place of the int8 screen (what mfkit did before the screen)."""
    rows = np.asarray(users, dtype=np.int64)
    return _topn._topn(
        model.user_factors,
        rows,
        model.item_factors,
        np.arange(model.n_items, dtype=np.int64),
        n,
        model.global_mean + model.user_biases[rows].astype(np.float64),
        model.item_biases.astype(np.float64),
        model._fitted.seen,
        rows,
        model.n_threads_,
        screen=False,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=480_189)
    ap.add_argument("--items", type=int, default=17_770)
    ap.add_argument(
        "--nnz", type=int, default=100_480_507, help="seen ratings (scaled with --users)"
    )
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seen", choices=["random", "synthetic"], default="random")
    ap.add_argument(
        "--fit-epochs",
        type=int,
        default=0,
        help="train SGD this many epochs on the seen ratings (use with --seen synthetic) "
        "instead of random factors and biases: the skipping depends on the model",
    )
    ap.add_argument("--metric-users", type=int, default=100_000)
    ap.add_argument("--reference-users", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--isas", default=",".join(mfkit.available_isas()), help="comma list of kernel paths"
    )
    ap.add_argument(
        "--quick", action="store_true", help="60,000 users (timings extrapolated), fewer checks"
    )
    args = ap.parse_args()
    if args.quick:
        args.users, args.metric_users, args.reference_users = 60_000, 20_000, 1024
    isas = [x for x in args.isas.split(",") if x]
    for x in isas:
        if x not in mfkit.available_isas():
            ap.error(f"kernel path {x!r} not available; this CPU offers {mfkit.available_isas()}")

    nnz = int(args.nnz * args.users / 480_189)
    t0 = time.perf_counter()
    if args.seen == "synthetic":
        seen = mfkit.datasets.synthetic(
            None, n_users=args.users, n_items=args.items, n_ratings=nnz, random_state=args.seed
        )
    else:
        seen = random_seen(args.users, args.items, nnz, args.seed)
    t_data = time.perf_counter() - t0
    if args.fit_epochs > 0:
        t0 = time.perf_counter()
        model = SGD(factors=args.factors, epochs=args.fit_epochs, random_state=args.seed)
        model.fit(seen)
        print(f"trained     SGD, {args.fit_epochs} epochs in {time.perf_counter() - t0:.1f}s")
    else:
        model = make_model(seen, args.factors, args.seed)
    if args.threads is not None:
        model.n_threads_ = args.threads
    users = np.arange(args.users)
    print(
        f"machine     {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"openmp={mfkit.openmp_enabled()}, n_threads={model.n_threads_}"
    )
    print(
        f"model       {args.users} users x {args.items} items, k={args.factors} float32; "
        f"seen {seen.nnz} ratings ({args.seen}, built in {t_data:.1f}s)"
    )

    per_path: dict[str, tuple[float, float, float, float]] = {}
    lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for isa in isas:
        with mfkit.use_isa(isa):
            t0 = time.perf_counter()
            c0 = time.process_time()
            old_idx, old_scores = topn_without_skipping(model, users, args.n)
            t_old = time.perf_counter() - t0
            cpu_old = time.process_time() - c0
            tracemalloc.start()
            t0 = time.perf_counter()
            c0 = time.process_time()
            ids, scores = model.recommend(users, n=args.n)
            t_rec = time.perf_counter() - t0
            cpu_rec = time.process_time() - c0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        per_path[isa] = (t_rec, cpu_rec, t_old, cpu_old)
        lists[isa] = (ids, scores)
        lists[isa + " (no skipping)"] = (old_idx, old_scores)
        if isa == "avx512" and _recommend.have_screen():
            # the same path with the float32 filter instead of the int8 screen, timed right
            # after the screened run (the 'no-skip' columns repeat the screened run's)
            with mfkit.use_isa(isa):
                t0 = time.perf_counter()
                c0 = time.process_time()
                f_idx, f_scores = topn_screen_off(model, users, args.n)
                t_f = time.perf_counter() - t0
                cpu_f = time.process_time() - c0
            per_path["avx512-f32"] = (t_f, cpu_f, t_old, cpu_old)
            lists["avx512 (float32 filter)"] = (f_idx, f_scores)

    sample = np.random.default_rng(args.seed).choice(
        args.users, min(args.reference_users, args.users), replace=False
    )
    t0 = time.perf_counter()
    ref = numpy_topn(model, seen, sample, args.n)
    t_ref = (time.perf_counter() - t0) * args.users / len(sample)
    agree = float(np.mean(ref == ids[sample]))

    mu = min(args.metric_users, args.users)
    rng = np.random.default_rng(args.seed + 2)
    rel_items = rng.integers(0, args.items, (mu, 10))
    hit = (rng.random((mu, 10)) < 0.3) & (ids[:mu] >= 0)  # some hits (not on padding)
    rel_items = np.where(hit, ids[:mu], rel_items)
    rel = Ratings.from_triplets(
        np.repeat(np.arange(mu), 10),
        rel_items.ravel(),
        np.ones(mu * 10),
        shape=(mu, args.items),
        map_ids=False,
        duplicates="last",
    )
    t0 = time.perf_counter()
    res = metrics.ranking_metrics(ids[:mu], rel, k=args.n, n_items=args.items)
    t_met = time.perf_counter() - t0

    full = 480_189 / args.users
    print(f"load average before the table: {os.getloadavg()[0]:.2f} (other work on the machine)")
    print()
    print(
        f"{'top-' + str(args.n) + ', seen excluded':<24}{'path':>9}{'seconds':>9}{'cpu s':>8}"
        f"{'no-skip s':>11}{'no-skip cpu':>13}{'speed-up':>10}{'at 480k':>9}{'floor':>7}"
        f"{'met':>5}"
    )
    for isa, (t, cpu, t_old, cpu_old) in per_path.items():
        print(
            f"{'mfkit recommend':<24}{isa:>9}{t:>9.2f}{cpu:>8.2f}{t_old:>11.2f}{cpu_old:>13.2f}"
            f"{cpu_old / cpu:>9.2f}x{t * full:>9.2f}{'8':>7}{'yes' if t * full <= 8 else 'NO':>5}"
        )
    print(
        "(cpu s: CPU seconds of all threads, less disturbed by other load than wall seconds; "
        "no-skip: the same kernel path scoring every panel; speed-up: of CPU seconds; "
        "at 480k: wall seconds scaled to 480,189 users; avx512-f32: the avx512 path without "
        "the int8 screen, its float32 filter instead)"
    )
    print(f"{'  same by NumPy/BLAS brute force (extrap.)':<44}{'':>9}{t_ref:>10.2f}")
    first = next(iter(lists.values()))
    same = all(
        np.array_equal(first[0], i) and np.array_equal(first[1], s, equal_nan=True)
        for i, s in lists.values()
    )
    print(
        f"every path, with and without skipping, returned the same lists (ids and scores): "
        f"{'yes' if same else 'NO'}"
    )
    print(f"{'ranking metrics, ' + str(mu) + ' users':<44}{t_met:>10.3f}{'2':>10}")
    print()
    print(
        f"recommend ({isas[-1]}) used {cpu_rec:.2f} CPU-seconds ({cpu_rec / t_rec:.2f} cores "
        f"busy on average; other load on the machine lowers this)"
    )
    print(
        f"speed-up over brute force: {t_ref / t_rec:.1f}x; lists agree with it on "
        f"{agree * 100:.2f}% of places (ties and 1-ulp score differences aside)"
    )
    print(
        f"peak NumPy memory during recommend: {peak / 2**20:.0f} MiB (floor 2048); "
        f"output {(ids.nbytes + scores.nbytes) / 2**20:.0f} MiB"
    )
    print(
        f"users/s: {args.users / t_rec:,.0f};  metrics: "
        + ", ".join(f"{k} {v:.4f}" for k, v in res.items() if k != "users")
    )


if __name__ == "__main__":
    main()
