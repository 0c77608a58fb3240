"""The ``mfkit`` command line.

``mfkit train`` fits a model on the built-in synthetic set (or, with the loaders, on a rating
file), holds out a seeded test split, shows per-epoch progress on stderr and prints the final
test RMSE and MAE on stdout (``--plot FILE`` draws the per-epoch curves); ``--dataset ml-100k``
(or another MovieLens name) trains on the public set instead, downloaded on first use.
``mfkit datasets list`` shows the public sets and what is on disk, ``mfkit datasets fetch NAME``
downloads, verifies and caches one.
``--model implicit-als`` (or ``bpr``) fits ImplicitALS (BPR) on the data as implicit
feedback (the ratings ``>= --implicit-threshold`` as interactions, or the values as
interaction strengths) and reports ranking metrics instead.
``mfkit evaluate MODEL [DATA]`` prints rating and ranking metrics of a saved model,
``mfkit recommend MODEL --user ID -n 10`` a user's top-N list, and ``mfkit cv [FILE]`` a
k-fold cross-validation table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mfkit import plot
from mfkit._core.version import __version__
from mfkit.data import Ratings, to_implicit
from mfkit.data._cache import is_cache
from mfkit.datasets import ARCHIVES, PRESETS, TERMS, data_home, movielens, synthetic
from mfkit.exceptions import DivergenceError
from mfkit.io import FORMATS, LoadInfo, load_ratings
from mfkit.metrics import evaluate, metric_key, parse_metric
from mfkit.model_selection import KFold, cross_validate, train_test_split
from mfkit.models import ALS, BPR, SGD, BayesianMF, FactorModel, ImplicitALS, load

#: what ``mfkit train`` reports for a model that ranks rather than predicts ratings
RANKING_REPORT = ("precision@10", "recall@10", "ndcg@10", "map@10")


def _models() -> dict[str, type[FactorModel]]:
    return {"als": ALS, "bayes": BayesianMF, "sgd": SGD, "implicit-als": ImplicitALS, "bpr": BPR}


def _as_feedback(data: Ratings, args: argparse.Namespace, implicit: bool) -> Ratings:
    """The data as the model reads it: implicit feedback for a model that predicts
    preferences (the ratings >= --implicit-threshold, value 1; without a threshold the
    values themselves are the interaction strengths)."""
    threshold = getattr(args, "implicit_threshold", None)
    if not implicit:
        if threshold is not None:
            raise ValueError(
                "--implicit-threshold applies to the implicit-feedback models only "
                "(--model implicit-als or bpr)"
            )
        return data
    if threshold is None:
        return data
    out = to_implicit(data, threshold)
    _log(f"implicit feedback: {out.nnz} of {data.nnz} ratings are >= {threshold:g}")
    return out


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _read_file(path: str, args: argparse.Namespace) -> Ratings:
    """A rating file (any format mfkit.io reads) with progress on stderr."""

    options: dict[str, Any] = {}
    info = LoadInfo()
    t0 = time.perf_counter()
    fmt = getattr(args, "format", "auto")
    if fmt != "cache":
        if not (fmt == "auto" and is_cache(path)):
            options = {
                "on_bad_line": args.on_bad_line,
                "duplicates": args.duplicates,
                "progress": not getattr(args, "quiet", False),
            }
    data = load_ratings(path, fmt, verbose=True, info=info, **options)
    extra = f", {info.skipped} bad lines skipped" if info.skipped else ""
    _log(f"data: {path} ({info.format}) {data} in {time.perf_counter() - t0:.2f}s{extra}")
    return data


def _load_data(args: argparse.Namespace) -> Ratings:
    dataset = getattr(args, "dataset", None)
    if args.file is not None and dataset is not None:
        raise ValueError("give a rating file or --dataset, not both")
    if args.file is not None:
        return _read_file(args.file, args)
    t0 = time.perf_counter()
    if dataset is not None:
        ds = movielens(dataset, args.data_home, download=not args.no_download)
        _log(f"data: {ds.name} {ds.ratings} from {ds.source} in {time.perf_counter() - t0:.2f}s")
        return ds.ratings
    data = synthetic(args.preset, random_state=args.seed)
    _log(f"data: synthetic '{args.preset}' {data} in {time.perf_counter() - t0:.2f}s")
    return data


def cmd_convert(args: argparse.Namespace) -> int:
    data = _read_file(args.input, args)
    t0 = time.perf_counter()
    data.save(args.output)
    _log(f"saved: {args.output} in {time.perf_counter() - t0:.2f}s")
    print(f"{args.output}: {data}")
    return 0


def cmd_datasets_list(args: argparse.Namespace) -> int:
    home = data_home(args.data_home)
    print(f"data folder: {home}")
    print(f"{'name':<17}{'file':<22}{'MB':>8}  {'on disk':<16}description")
    for key, a in ARCHIVES.items():
        stem = a.filename.removesuffix(".zip")
        here = []
        if os.path.isfile(os.path.join(home, a.filename)):
            here.append("archive")
        if os.path.isdir(os.path.join(home, stem + ".mfkit")):
            here.append("parsed")
        size = f"{a.size / 1e6:.1f}" if a.size else "?"
        print(f"{'ml-' + key:<17}{a.filename:<22}{size:>8}  {'+'.join(here) or '-':<16}"
              f"{a.description}")  # fmt: skip
    print(f"\n{TERMS}")
    return 0


def cmd_datasets_fetch(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    ds = movielens(args.name, args.data_home, timeout=args.timeout)
    print(f"{ds.name}: {ds.ratings}")
    if ds.items is not None:
        print(f"items: {len(ds.items)} movies with titles and genres")
    print(f"archive: {ds.source}")
    _log(f"ready in {time.perf_counter() - t0:.2f}s")
    print(f"\n{TERMS}")
    return 0


def _add_file_options(p: argparse.ArgumentParser) -> None:

    p.add_argument(
        "--format",
        default="auto",
        choices=("auto", *FORMATS),
        help="file format (default: guessed from the name and first lines)",
    )
    p.add_argument(
        "--on-bad-line",
        default="error",
        choices=("error", "skip", "warn"),
        help="what to do with a malformed line (default: error)",
    )
    p.add_argument(
        "--duplicates",
        default="error",
        choices=("error", "mean", "last", "sum"),
        help="repeated (user, item) ratings (default: error)",
    )


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
        if "regularization" not in cls._get_param_names():
            raise ValueError(
                f"--regularization applies to --model sgd and als, not --model {args.model} "
                f"(it learns its priors from the data)"
            )
        params["regularization"] = args.regularization
    for option, name in (("--burn-in", "burn_in"), ("--keep", "keep")):
        value = getattr(args, name)
        if value is not None:
            if args.model != "bayes":
                raise ValueError(
                    f"{option} applies to --model bayes only, not --model {args.model}"
                )
            params[name] = value
    if args.learning_rate is not None:
        if "learning_rate" not in cls._get_param_names():
            raise ValueError(
                f"--learning-rate applies to --model sgd only, not --model {args.model}"
            )
        params["learning_rate"] = args.learning_rate
    if args.solver is not None:
        if args.model not in ("als", "implicit-als"):
            raise ValueError(
                f"--solver applies to --model als and implicit-als only, not --model {args.model}"
            )
        params["solver"] = args.solver
    if args.alpha is not None:
        if args.model != "implicit-als":
            raise ValueError(
                f"--alpha applies to --model implicit-als only, not --model {args.model}"
            )
        params["alpha"] = args.alpha
    if args.model == "sgd":
        params["blocks"] = args.blocks
        if args.schedule is not None:
            params["learning_rate_schedule"] = args.schedule
    elif args.schedule is not None:
        raise ValueError(f"--schedule applies to --model sgd only, not {args.model}")
    elif args.model == "bpr":
        params["blocks"] = args.blocks
    elif args.blocks != "auto":
        raise ValueError(f"--blocks applies to --model sgd and bpr only, not {args.model}")
    model = cls(**params)
    model._check_params()  # bad options fail before a long read, not after
    return model


def _check_output(path: str | None, option: str) -> None:
    """Refuse an output path whose folder does not exist before training, not after."""
    if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ValueError(f"{option} {path}: the folder does not exist; create it first")


def cmd_train(args: argparse.Namespace) -> int:
    if args.plot:
        _require_matplotlib()  # fail before training, not after
    _check_output(args.out, "--out")
    _check_output(args.plot, "--plot")
    model = _build_model(args)
    ratings = model.predicts_ratings
    data = _as_feedback(_load_data(args), args, not ratings)
    train, test = train_test_split(data, args.test_size, random_state=args.seed)
    _log(f"split: {train.nnz} training and {test.nnz} test ratings (seed {args.seed})")
    _log(f"model: {model!r}")

    def progress(m: FactorModel, rec: dict[str, float]) -> None:
        if args.quiet:
            return
        if ratings:
            scores = (
                f"train_rmse {rec['train_rmse']:.4f}  val_rmse {rec['val_rmse']:.4f}  "
                f"val_mae {rec['val_mae']:.4f}"
            )
        else:
            val = ", ".join(f"{k[4:]} {v:.4f}" for k, v in rec.items() if k.startswith("val_"))
            scores = f"train_loss {rec[m._train_key]:.6g}  {val}"
        _log(f"epoch {int(rec['epoch']):3d}/{args.epochs}  {scores}  {rec['seconds']:.2f}s")

    t0 = time.perf_counter()
    try:
        model.fit(train, validation=test, callback=progress)
    except DivergenceError as exc:
        _log(f"mfkit train: {exc}")
        return 1
    fit_seconds = time.perf_counter() - t0
    epochs = len(model.history_["epoch"])
    rate = train.nnz * epochs / max(fit_seconds, 1e-9) / 1e6
    if not ratings:
        res = evaluate(model, test, RANKING_REPORT)
        print(f"model        {type(model).__name__} k={args.factors} epochs={epochs}")
        print(f"fit time     {fit_seconds:.2f} s ({rate:.1f} M interactions x epochs/s)")
        for key in RANKING_REPORT:
            print(f"test {key:<13}{res[key]:.4f}")
        print(f"test users        {int(res['ranking_users'])}")
        return _save_outputs(model, args)
    u, i, r = test.to_triplets(original_ids=True)
    pred = model.predict(u, i, clip=True)
    rmse = float(np.sqrt(np.mean((pred - r) ** 2)))
    mae = float(np.mean(np.abs(pred - r)))
    baseline = float(np.sqrt(np.mean((float(train.values.mean()) - r) ** 2)))
    print(f"model        {type(model).__name__} k={args.factors} epochs={epochs}")
    print(f"fit time     {fit_seconds:.2f} s ({rate:.1f} M rating updates/s)")
    print(f"test RMSE    {rmse:.4f}   (global-mean baseline {baseline:.4f})")
    print(f"test MAE     {mae:.4f}")
    return _save_outputs(model, args)


def _save_outputs(model: FactorModel, args: argparse.Namespace) -> int:
    if args.out:
        model.save(args.out)
        print(f"saved        {args.out}")
    if args.plot:
        _plot_history(model, args.plot)
        print(f"plot         {args.plot}")
    return 0


# ---------------------------------------------------------------------- plots
def _require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(
            "mfkit: --plot needs matplotlib, which is not installed; install it with "
            "'pip install matplotlib' (or mfkit[plot])"
        ) from None
    return matplotlib


def _plot_history(model: FactorModel, path: str) -> None:
    """Per-epoch training and validation RMSE as an image (:func:`mfkit.plot.learning_curves`);
    the format follows the file extension (png, pdf, svg, ...). Written atomically."""
    ax = plot.learning_curves(model)
    ax.set_title(f"{type(model).__name__} k={model.get_params().get('factors')}")
    plot.save(ax, path)


# ---------------------------------------------------------------------- evaluate / recommend / cv
def _load_model(path: str) -> FactorModel:
    try:
        return load(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"model file {path!r} does not exist") from None


def _metric_list(text: str) -> list[str]:

    names = [m.strip() for m in text.split(",") if m.strip()]
    for m in names:
        parse_metric(m)
    return names


def cmd_evaluate(args: argparse.Namespace) -> int:

    model = _load_model(args.model)
    args.file = args.data
    data = _as_feedback(_load_data(args), args, not model.predicts_ratings)
    if args.data is None:
        # the held-out part of the same seeded split `mfkit train` made
        _, data = train_test_split(data, args.test_size, random_state=args.seed)
        _log(f"evaluating on the test split (test size {args.test_size}, seed {args.seed})")
    metrics = _metric_list(args.metrics)
    if not model.predicts_ratings:
        rating = [m for m in metrics if parse_metric(m)[1] is None]
        if rating:
            _log(
                f"{type(model).__name__} scores preferences, not ratings: skipping "
                f"{', '.join(rating)}"
            )
            metrics = [m for m in metrics if m not in rating]
        if not metrics:
            raise ValueError("no ranking metric left to compute: pass --metrics ndcg@10,...")
    t0 = time.perf_counter()
    res = evaluate(
        model, data, metrics, threshold=args.threshold, exclude_seen=not args.include_seen
    )
    _log(f"scored {data.nnz} ratings in {time.perf_counter() - t0:.2f}s")

    for key in dict.fromkeys(metric_key(name) for name in metrics):
        print(f"{key:<14}{res[key]:.4f}")
    if "ranking_users" in res:
        print(f"{'users':<14}{int(res['ranking_users'])}")
    return 0


def _parse_user(model: FactorModel, text: str) -> Any:
    ids = model.user_ids
    if ids is not None and ids.dtype.kind == "U":
        return text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--user must be an integer id for this model, got {text!r}") from None


def cmd_recommend(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    user = _parse_user(model, args.user)
    items, scores = model.recommend(user, n=args.n, exclude_seen=not args.include_seen)
    print(f"{'rank':>4}  {'item':>12}  {'score':>8}")
    for r, (item, score) in enumerate(zip(items, scores, strict=True), start=1):
        if np.isnan(score):
            break
        print(f"{r:>4}  {item!s:>12}  {score:8.4f}")
    return 0


def cmd_cv(args: argparse.Namespace) -> int:

    model = _build_model(args)
    metrics = _metric_list(args.metrics)
    if not model.predicts_ratings and any(parse_metric(m)[1] is None for m in metrics):
        raise ValueError(
            f"--model {args.model} scores preferences, not ratings: pass ranking metrics, "
            f"e.g. --metrics precision@10,ndcg@10"
        )
    if args.folds < 2:
        raise ValueError(f"--folds must be at least 2, got {args.folds}")
    data = _as_feedback(_load_data(args), args, not model.predicts_ratings)
    _log(f"model: {model!r}; {args.folds}-fold cross-validation (seed {args.seed})")
    res = cross_validate(
        model,
        data,
        KFold(args.folds, random_state=args.seed),
        metrics,
        threshold=args.threshold,
        verbose=not args.quiet,
    )
    keys = [k for k in res if k.startswith("test_")]
    header = f"{'fold':>4}" + "".join(f"{k[5:]:>14}" for k in keys) + f"{'fit s':>9}"
    print(header)
    for j in range(args.folds):
        row = f"{j + 1:>4}" + "".join(f"{res[k][j]:>14.4f}" for k in keys)
        print(row + f"{res['fit_time'][j]:>9.2f}")
    print(
        f"{'mean':>4}"
        + "".join(f"{res[k].mean():>14.4f}" for k in keys)
        + f"{res['fit_time'].mean():>9.2f}"
    )
    print(f"{'std':>4}" + "".join(f"{res[k].std():>14.4f}" for k in keys))
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


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="sgd", choices=sorted(_models()))
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--regularization", type=float, default=None)
    p.add_argument(
        "--solver",
        default=None,
        choices=["cholesky", "cg"],
        help="ALS row solver (--model als or implicit-als)",
    )
    p.add_argument(
        "--alpha", type=float, default=None, help="confidence slope (--model implicit-als)"
    )
    _add_implicit_threshold(p)
    p.add_argument(
        "--burn-in", type=int, default=None, help="sweeps discarded (--model bayes; epochs // 4)"
    )
    p.add_argument(
        "--keep", type=int, default=None, help="samples kept for prediction (--model bayes)"
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument(
        "--blocks",
        type=_blocks_arg,
        default="auto",
        help="SGD user/item groups B (B x B blocks; 'auto' or an int; the model does not "
        "depend on --threads)",
    )
    p.add_argument(
        "--schedule",
        default=None,
        choices=["constant", "decay", "adagrad"],
        help="SGD learning-rate schedule (default: the model's)",
    )


def _add_implicit_threshold(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--implicit-threshold",
        type=float,
        default=None,
        help="--model implicit-als: ratings >= this are the interactions (value 1); "
        "default: every rating, its value the interaction strength",
    )


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        default="ml-1m",
        choices=sorted(PRESETS),
        help="synthetic data set shape when no file is given (default: ml-1m)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help="a public MovieLens set instead of a file or synthetic data: "
        + ", ".join(f"ml-{k}" for k in ARCHIVES)
        + " (downloaded on first use; see 'mfkit datasets list')",
    )
    p.add_argument(
        "--data-home",
        default=None,
        metavar="DIR",
        help="folder of downloaded data sets (default: $MFKIT_DATA or the user cache folder)",
    )
    p.add_argument("--no-download", action="store_true", help="never download; use what is on disk")
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfkit",
        description="Fast, reproducible matrix factorization for explicit ratings and "
        "implicit feedback.",
    )
    parser.add_argument("--version", action="version", version=f"mfkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fit a model and report held-out RMSE/MAE")
    t.add_argument("file", nargs="?", default=None, help="rating file (default: synthetic data)")
    _add_data_args(t)
    _add_model_args(t)
    t.add_argument("--test-size", type=float, default=0.1)
    t.add_argument("--out", default=None, help="save the fitted model to this .npz file")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    t.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="write the per-epoch training/validation curves to this image (needs matplotlib)",
    )
    _add_file_options(t)
    t.set_defaults(func=cmd_train)

    metric_help = (
        "comma-separated metrics: rmse, mae, precision@K, recall@K, map@K, ndcg@K, "
        "hit_rate@K, coverage@K"
    )
    e = sub.add_parser("evaluate", help="rating and ranking metrics of a saved model")
    e.add_argument("model", help="model file written by 'mfkit train --out'")
    e.add_argument(
        "data",
        nargs="?",
        default=None,
        help="test ratings file (default: the test split of the synthetic --preset, as "
        "'mfkit train' made it with the same --seed and --test-size)",
    )
    _add_data_args(e)
    _add_file_options(e)
    e.add_argument("--test-size", type=float, default=0.1)
    e.add_argument(
        "--metrics",
        default="rmse,mae,precision@10,recall@10,map@10,ndcg@10,hit_rate@10,coverage@10",
        help=metric_help,
    )
    e.add_argument("--threshold", type=float, default=None, help="relevance threshold (>=)")
    e.add_argument("--include-seen", action="store_true", help="do not exclude training items")
    _add_implicit_threshold(e)
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("recommend", help="top-N items for a user from a saved model")
    r.add_argument("model", help="model file written by 'mfkit train --out'")
    r.add_argument("--user", required=True, help="user id (as in the training data)")
    r.add_argument("-n", type=int, default=10, help="list length (default 10)")
    r.add_argument("--include-seen", action="store_true", help="do not exclude training items")
    r.set_defaults(func=cmd_recommend)

    c = sub.add_parser("cv", help="k-fold cross-validation of a model")
    c.add_argument("file", nargs="?", default=None, help="rating file (default: synthetic data)")
    _add_data_args(c)
    _add_file_options(c)
    _add_model_args(c)
    c.add_argument("--folds", type=int, default=5)
    c.add_argument("--metrics", default="rmse,mae", help=metric_help)
    c.add_argument("--threshold", type=float, default=None, help="relevance threshold (>=)")
    c.add_argument("--quiet", action="store_true", help="no per-fold progress")
    c.set_defaults(func=cmd_cv)

    d = sub.add_parser("datasets", help="list or fetch the public MovieLens data sets")
    dsub = d.add_subparsers(dest="action", required=True)
    dl = dsub.add_parser("list", help="the public sets, their files and what is on disk")
    dl.add_argument("--data-home", default=None, metavar="DIR")
    dl.set_defaults(func=cmd_datasets_list)
    df = dsub.add_parser("fetch", help="download, verify, parse and cache a set")
    df.add_argument("name", help="e.g. ml-100k, ml-1m, ml-25m, ml-latest-small")
    df.add_argument("--data-home", default=None, metavar="DIR")
    df.add_argument("--timeout", type=float, default=None, help="seconds (default 10 / 30)")
    df.set_defaults(func=cmd_datasets_fetch)

    conv = sub.add_parser(
        "convert", help="read a rating file and write it as a binary cache folder"
    )
    conv.add_argument("input", help="rating file (any format mfkit reads)")
    conv.add_argument("output", help="cache folder to write (open it with mfkit.Ratings.load)")
    conv.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _add_file_options(conv)
    conv.set_defaults(func=cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, OSError, ImportError) as exc:
        _log(f"mfkit {args.command}: error: {exc}")
        return 2


__all__ = ["build_parser", "main"]
