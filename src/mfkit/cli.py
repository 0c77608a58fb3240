"""The ``mfkit`` command line.

``mfkit train`` fits a model on the built-in synthetic set (or, with the loaders, on a rating
file), holds out a seeded test split, shows per-epoch progress on stderr and prints the final
test RMSE and MAE on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import mfkit
from mfkit._base import FactorModel
from mfkit.datasets import PRESETS, synthetic
from mfkit.model_selection import train_test_split
from mfkit.ratings import Ratings


def _models() -> dict[str, type[FactorModel]]:
    return {"sgd": mfkit.SGD}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load_data(args: argparse.Namespace) -> Ratings:
    if args.file is not None:
        raise SystemExit(
            f"mfkit train: reading rating files is not available in this build of mfkit; "
            f"train on a built-in synthetic set with --preset instead of {args.file!r}"
        )
    t0 = time.perf_counter()
    data = synthetic(args.preset, random_state=args.seed)
    _log(f"data: synthetic '{args.preset}' {data} in {time.perf_counter() - t0:.2f}s")
    return data


def _build_model(args: argparse.Namespace) -> FactorModel:
    cls = _models()[args.model]
    params: dict[str, Any] = {
        "factors": args.factors,
        "epochs": args.epochs,
        "random_state": args.seed,
        "n_threads": args.threads,
        "dtype": args.dtype,
    }
    if args.regularization is not None:
        params["regularization"] = args.regularization
    if args.learning_rate is not None:
        params["learning_rate"] = args.learning_rate
    if args.model == "sgd":
        params["blocks"] = args.blocks
        if args.schedule is not None:
            params["learning_rate_schedule"] = args.schedule
    return cls(**params)


def cmd_train(args: argparse.Namespace) -> int:
    data = _load_data(args)
    train, test = train_test_split(data, args.test_size, random_state=args.seed)
    _log(f"split: {train.nnz} training and {test.nnz} test ratings (seed {args.seed})")
    model = _build_model(args)
    _log(f"model: {model!r}")

    def progress(m: FactorModel, rec: dict[str, float]) -> None:
        if not args.quiet:
            _log(
                f"epoch {int(rec['epoch']):3d}/{args.epochs}  train_rmse {rec['train_rmse']:.4f}"
                f"  val_rmse {rec['val_rmse']:.4f}  val_mae {rec['val_mae']:.4f}"
                f"  {rec['seconds']:.2f}s"
            )

    t0 = time.perf_counter()
    try:
        model.fit(train, validation=test, callback=progress)
    except mfkit.DivergenceError as exc:
        _log(f"mfkit train: {exc}")
        return 1
    fit_seconds = time.perf_counter() - t0
    u, i, r = test.to_triplets()
    pred = model.predict(u, i, clip=True)
    rmse = float(np.sqrt(np.mean((pred - r) ** 2)))
    mae = float(np.mean(np.abs(pred - r)))
    baseline = float(np.sqrt(np.mean((float(train.values.mean()) - r) ** 2)))
    print(f"model        {type(model).__name__} k={args.factors} epochs={len(model.history_['epoch'])}")
    print(f"fit time     {fit_seconds:.2f} s ({train.nnz * len(model.history_['epoch']) / max(fit_seconds, 1e-9) / 1e6:.1f} M rating updates/s)")
    print(f"test RMSE    {rmse:.4f}   (global-mean baseline {baseline:.4f})")
    print(f"test MAE     {mae:.4f}")
    if args.out:
        model.save(args.out)
        print(f"saved        {args.out}")
    return 0


def _blocks_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--blocks must be 'auto' or an integer, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfkit", description="Fast, reproducible matrix factorization for explicit ratings."
    )
    parser.add_argument("--version", action="version", version=f"mfkit {mfkit.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fit a model and report held-out RMSE/MAE")
    t.add_argument("file", nargs="?", default=None, help="rating file (default: synthetic data)")
    t.add_argument(
        "--preset",
        default="ml-1m",
        choices=sorted(PRESETS),
        help="synthetic data set shape when no file is given (default: ml-1m)",
    )
    t.add_argument("--model", default="sgd", choices=sorted(_models()))
    t.add_argument("--factors", type=int, default=64)
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--learning-rate", type=float, default=None)
    t.add_argument("--regularization", type=float, default=None)
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    t.add_argument("--test-size", type=float, default=0.1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    t.add_argument(
        "--blocks",
        type=_blocks_arg,
        default="auto",
        help="SGD user/item groups B (B x B blocks; 'auto' or an int; the model does not "
        "depend on --threads)",
    )
    t.add_argument(
        "--schedule",
        default=None,
        choices=["constant", "decay", "adagrad"],
        help="SGD learning-rate schedule (default: the model's)",
    )
    t.add_argument("--out", default=None, help="save the fitted model to this .npz file")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    t.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError) as exc:
        _log(f"mfkit {args.command}: error: {exc}")
        return 2
