"""The cost of the structural checks every ``Ratings.load`` runs, on a large cache.

Builds a synthetic CSR (``--ratings`` ratings, 100 per user, sorted distinct items, float32
ratings, int64 user and item ids) directly as arrays, writes it with ``Ratings.save`` and,
with the files in the page cache, times (best of ``--repeat``):

* ``open only``: ``np.load(mmap_mode='r')`` of every array (what opening cost before the
  checks; the reference the other rows are compared against is the ``read once`` row);
* ``read once``: one sequential pass over the index and value bytes (``indices.max()`` and
  ``values.max()``), the memory-bandwidth floor of any check that reads every rating;
* ``load (checks)``: ``Ratings.load(path)`` as users call it (mmap, structural checks);
* ``load verify=True``: the same plus the CRC-32 of every array;
* ``check kernel, N threads``: the parallel structure check alone.

    python benchmarks/bench_cache_check.py                    # 20M ratings, quick
    python benchmarks/bench_cache_check.py --ratings 100M     # the figure in the README
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import numpy as np
from benchutil import print_machine, print_table

import mfkit
from mfkit.data import _assemble


def parse_count(text: str) -> int:
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}
    t = text.strip().upper()
    return int(float(t[:-1]) * mult[t[-1]]) if t[-1] in mult else int(float(t))


def synthetic_csr(nnz: int, per_user: int = 100) -> mfkit.Ratings:
    n_users = nnz // per_user
    n_items = 20 * per_user
    rng = np.random.default_rng(0)
    offsets = rng.integers(0, 20, n_users, dtype=np.int32)
    indices = (np.arange(per_user, dtype=np.int32) * 20)[None, :] + offsets[:, None]
    values = rng.integers(1, 6, nnz, dtype=np.int8).astype(np.float32)
    indptr = np.arange(0, nnz + 1, per_user, dtype=np.int64)
    return mfkit.Ratings(
        indptr,
        indices.reshape(-1),
        values,
        (n_users, n_items),
        user_ids=np.arange(n_users, dtype=np.int64) * 3,
        item_ids=np.arange(n_items, dtype=np.int64) + 10,
        check=False,
    )


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", default="20M", help="number of ratings (e.g. 20M, 100M)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write the cache (default: temp)")
    args = ap.parse_args()
    nnz = parse_count(args.ratings)
    print_machine()
    base = tempfile.mkdtemp(dir=args.dir)
    path = os.path.join(base, "cache")
    try:
        R = synthetic_csr(nnz)
        R.save(path)
        meta_dir = os.path.join(path, next(n for n in os.listdir(path) if n.startswith("v-")))
        del R

        def open_only() -> None:
            for name in os.listdir(meta_dir):
                np.load(os.path.join(meta_dir, name), mmap_mode="r")

        def read_once() -> None:
            a = np.load(os.path.join(meta_dir, "indices.npy"), mmap_mode="r")
            v = np.load(os.path.join(meta_dir, "values.npy"), mmap_mode="r")
            a.max()
            v.max()

        X = mfkit.Ratings.load(path)
        indptr, indices, values = X.indptr, X.indices, X.values
        n_items = X.n_items
        rows: list[tuple[str, float]] = [
            ("open only", best(open_only, args.repeat)),
            ("read once", best(read_once, args.repeat)),
            ("load (checks)", best(lambda: mfkit.Ratings.load(path), args.repeat)),
            ("load verify=True", best(lambda: mfkit.Ratings.load(path, verify=True), 1)),
        ]
        for nt in sorted({1, mfkit._core.validation.usable_cores()}):
            rows.append(
                (
                    f"check kernel, {nt} thread{'s' if nt > 1 else ''}",
                    best(
                        lambda nt=nt: _assemble.check_csr(indptr, indices, values, n_items, nt),
                        args.repeat,
                    ),
                )
            )
        ref = dict(rows)["read once"]
        table = [
            {
                "step": name,
                "seconds": secs,
                "ns/rating": 1e9 * secs / nnz,
                "vs read once": secs / ref,
            }
            for name, secs in rows
        ]
        print_table(table, f"{nnz:,} ratings, {X.n_users:,} users, {n_items:,} items (warm cache)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
