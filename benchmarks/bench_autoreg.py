"""How well ``regularization='auto'`` picks the L2 weight, on data sets it was not tuned on.

For each synthetic data set (``mfkit.datasets.synthetic`` at several shapes, ranks and noise
levels) and for SGD and ALS at their defaults otherwise: hold out 10% of the ratings as a
test set; fit on the rest once per value of the grid (``mfkit.models._autoreg.AUTO_GRID``,
each from scratch) to find the best value in hindsight (the oracle); fit with the old fixed
default 0.05; and fit with ``'auto'`` (which only sees the training part). Prints, per data
set and model, the value each chose, its test RMSE, the RMSE ``'auto'`` loses to the
oracle (regret) and gains on 0.05, and the seconds of the ``'auto'`` fit against a fit with
a fixed value (the cost of the selection).

With ``--data PATH`` (a rating file, read as by ``bench_svdpp.py``) it instead prints a
5-fold table on that data: ``SGD()`` and ``ALS()`` at their defaults (``'auto'``), the same
with the old fixed 0.05, and scikit-surprise's ``SVD()`` at its defaults when installed,
on the same folds (RMSE, MAE, fit seconds). That is the held-out check of the rule: it was
not tuned on that data.

    python benchmarks/bench_autoreg.py            # all synthetic data sets
    python benchmarks/bench_autoreg.py --quick    # two small ones
    python benchmarks/bench_autoreg.py --data u.data
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from bench_svdpp import read_data
from benchutil import print_machine, print_table

import mfkit
from mfkit.models._autoreg import AUTO_GRID

DATASETS: dict[str, dict[str, Any]] = {
    "ml-100k shape, rank 10, noise 0.1": {"name": "ml-100k", "noise": 0.1},
    "ml-100k shape, rank 10, noise 0.5": {"name": "ml-100k"},
    "ml-100k shape, rank 10, noise 1.0": {"name": "ml-100k", "noise": 1.0},
    "ml-100k shape, rank 3, noise 0.8": {"name": "ml-100k", "rank": 3, "noise": 0.8},
    "ml-100k shape, rank 10, noise 2.0": {"name": "ml-100k", "noise": 2.0},
    "5000 x 2000, 100k ratings (1%), rank 20": {
        "name": None,
        "n_users": 5000,
        "n_items": 2000,
        "n_ratings": 100_000,
        "rank": 20,
    },
    "ml-1m shape, rank 10, noise 0.8": {"name": "ml-1m", "noise": 0.8},
}
QUICK = ("ml-100k shape, rank 10, noise 1.0", "5000 x 2000, 100k ratings (1%), rank 20")


def test_rmse(model: mfkit.models.FactorModel, test: mfkit.Ratings) -> float:
    u, i, r = test.to_triplets()
    err = model.predict(u, i, unknown="baseline") - r
    return float(np.sqrt(np.mean(err**2)))


def run(label: str, spec: dict[str, Any], out: list[dict[str, Any]]) -> None:
    X = mfkit.datasets.synthetic(**spec, random_state=1)
    held = np.random.default_rng(2).random(X.nnz) < 0.1
    train, test = X.subset(~held), X.subset(held)
    for cls in (mfkit.SGD, mfkit.ALS):
        curve = {
            lam: test_rmse(cls(regularization=lam, random_state=0).fit(train), test)
            for lam in AUTO_GRID
        }
        oracle = min(curve, key=lambda lam: curve[lam])
        t0 = time.perf_counter()
        fixed = cls(regularization=0.05, random_state=0).fit(train)
        fixed_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        auto = cls(random_state=0).fit(train)
        auto_s = time.perf_counter() - t0
        rmse_auto, rmse_fixed = test_rmse(auto, test), test_rmse(fixed, test)
        out.append(
            {
                "data": label,
                "model": cls.__name__,
                "oracle_reg": oracle,
                "oracle_rmse": curve[oracle],
                "auto_reg": auto.regularization_,
                "auto_rmse": rmse_auto,
                "reg0.05_rmse": rmse_fixed,
                "regret": rmse_auto - curve[oracle],
                "gain_vs_0.05": rmse_fixed - rmse_auto,
                "auto_s/fixed_s": auto_s / fixed_s,
            }
        )
        print(f"# {label} {cls.__name__} done", flush=True)


def defaults_table(path: str, folds: int) -> None:
    u, i, r, name = read_data(path)
    fold = np.random.default_rng(0).permutation(len(r)) % folds
    candidates: dict[str, Any] = {
        "mfkit SGD()": lambda: mfkit.SGD(random_state=0),
        "mfkit ALS()": lambda: mfkit.ALS(random_state=0),
        "mfkit SGD(regularization=0.05)": lambda: mfkit.SGD(regularization=0.05, random_state=0),
        "mfkit ALS(regularization=0.05)": lambda: mfkit.ALS(regularization=0.05, random_state=0),
    }
    try:
        import pandas as pd
        import surprise
    except ImportError:
        surprise = None
        print("# scikit-surprise is not installed: mfkit rows only")
    res: dict[str, list[tuple[float, float, float]]] = {key: [] for key in candidates}
    if surprise is not None:
        res["surprise SVD()"] = []
    for f in range(folds):
        tr, te = fold != f, fold == f
        X = mfkit.Ratings.from_triplets(u[tr], i[tr], r[tr].astype(np.float32))
        for label, make in candidates.items():
            model = make()
            t0 = time.perf_counter()
            model.fit(X)
            seconds = time.perf_counter() - t0
            err = model.predict(u[te], i[te], unknown="baseline", clip=True) - r[te]
            res[label].append(
                (float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err))), seconds)
            )
        if surprise is not None:
            df = pd.DataFrame({"u": u[tr], "i": i[tr], "r": r[tr]})
            reader = surprise.Reader(rating_scale=(float(r.min()), float(r.max())))
            trainset = surprise.Dataset.load_from_df(df, reader).build_full_trainset()
            algo = surprise.SVD(random_state=0)
            t0 = time.perf_counter()
            algo.fit(trainset)
            seconds = time.perf_counter() - t0
            pred = np.array([algo.predict(a, b).est for a, b in zip(u[te], i[te], strict=True)])
            err = pred - r[te]
            res["surprise SVD()"].append(
                (float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err))), seconds)
            )
        print(f"# fold {f} done", flush=True)
    ref = float(np.mean([x[0] for x in res["surprise SVD()"]])) if surprise else float("nan")
    rows = []
    for label, vals in res.items():
        a = np.array(vals)
        rows.append(
            {
                "model": label,
                "rmse": float(a[:, 0].mean()),
                "mae": float(a[:, 1].mean()),
                "fit_s": float(a[:, 2].mean()),
                "rmse_vs_surprise_svd": float(a[:, 0].mean()) - ref,
            }
        )
    print_table(rows, f"{folds}-fold on {name} ({len(r):,} ratings), each library's defaults")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two small data sets only")
    ap.add_argument("--data", default=None, help="a rating file: the 5-fold defaults table")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    print_machine()
    if args.data is not None:
        defaults_table(args.data, args.folds)
        return
    out: list[dict[str, Any]] = []
    for label, spec in DATASETS.items():
        if args.quick and label not in QUICK:
            continue
        run(label, spec, out)
    print_table(out, f"regularization='auto' against the best grid value in hindsight {AUTO_GRID}")


if __name__ == "__main__":
    main()
