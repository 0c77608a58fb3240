"""Learning curves, parity/residual plots and benchmark bar charts (matplotlib, optional)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mfkit._core.files import atomic_write
from mfkit._core.frames import is_frame
from mfkit.data import as_ratings
from mfkit.models import FactorModel

__all__ = ["bar_chart", "learning_curves", "parity", "save"]


def _figure(figsize: tuple[float, float], ncols: int = 1) -> tuple[Any, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("mfkit.plot needs matplotlib: pip install 'mfkit[plot]'") from None
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def _named_models(
    models: FactorModel | Sequence[FactorModel] | Mapping[str, FactorModel],
    labels: Sequence[str] | None,
) -> list[tuple[str, FactorModel]]:
    if isinstance(models, FactorModel):
        models = [models]
    if isinstance(models, Mapping):
        pairs = [(str(k), m) for k, m in models.items()]
    else:
        models = list(models)
        if labels is None:
            names = [f"{type(m).__name__} k={m.get_params().get('factors')}" for m in models]
        else:
            names = [str(x) for x in labels]
            if len(names) != len(models):
                raise ValueError(f"labels has {len(names)} names for {len(models)} models")
        pairs = list(zip(names, models, strict=True))
    if not pairs:
        raise ValueError("models is empty: pass at least one fitted model")
    for name, m in pairs:
        if not isinstance(m, FactorModel):
            raise TypeError(f"{name!r} is a {type(m).__name__}, not a fitted mfkit model")
        m._check_fitted()
    return pairs


def learning_curves(
    models: FactorModel | Sequence[FactorModel] | Mapping[str, FactorModel],
    labels: Sequence[str] | None = None,
    *,
    ax: Any = None,
    x: str = "epoch",
    title: str | None = None,
) -> Any:
    """Per-epoch RMSE of one or several fitted models, from their ``history_`` (for a model
    that ranks rather than predicts ratings, such as ImplicitALS: its validation ranking
    metrics).

    Validation RMSE (solid, when the model was fitted with ``validation=``) and training RMSE
    (dashed, the residuals seen during each epoch) share a colour per model; the best epoch
    of a model that stopped early is marked. ``models``: a model, a sequence (named by
    ``labels``, default class and factor count) or a mapping name -> model. ``x``:
    ``'epoch'`` or ``'seconds'`` (cumulative training time). Returns the axes.
    """
    if x not in ("epoch", "seconds"):
        raise ValueError(f"x must be 'epoch' or 'seconds', got {x!r}")
    pairs = _named_models(models, labels)
    if ax is None:
        _, ax = _figure((6.4, 4.0))
    colors = [f"C{j % 10}" for j in range(len(pairs))]
    ranking = False
    for (name, m), color in zip(pairs, colors, strict=True):
        h = m.history_
        xs = np.asarray(h["epoch"] if x == "epoch" else np.cumsum(h["seconds"]), dtype=float)
        if getattr(m, "predicts_ratings", True):
            val = np.asarray(h["val_rmse"], dtype=float)
            if np.isfinite(val).any():
                ax.plot(xs, val, color=color, marker="o", ms=3, label=f"{name} (validation)")
            ax.plot(xs, h["train_rmse"], color=color, ls="--", lw=1, label=f"{name} (train)")
        else:  # a model that ranks (ImplicitALS, BPR): its validation ranking metrics
            ranking = True
            for key, style in zip(
                (k for k in h if k.startswith("val_")), ("-", "--", ":", "-."), strict=False
            ):
                val = np.asarray(h[key], dtype=float)
                if np.isfinite(val).any():
                    ax.plot(
                        xs, val, color=color, ls=style, marker="o", ms=3, label=f"{name} {key[4:]}"
                    )
        best = getattr(m, "best_epoch_", None)
        if best is not None and 1 <= best <= len(xs):
            ax.axvline(xs[best - 1], color=color, lw=0.8, ls=":")
    if x == "epoch":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch" if x == "epoch" else "training time (s)")
    ax.set_ylabel("RMSE" if not ranking else "RMSE / validation ranking metric")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax


def parity(model: FactorModel, test: Any, *, axes: Any = None, title: str | None = None) -> Any:
    """Predictions against held-out ratings: left, the predicted rating of each test rating
    grouped by its true value (box plots, for a scale of at most 20 distinct values; a
    2-d histogram otherwise) with the diagonal; right, the histogram of residuals
    (prediction minus rating) with RMSE and MAE. Unknown ids get the baseline prediction,
    as in :func:`mfkit.metrics.evaluate`. ``axes``: two axes to draw on. Returns them.
    """
    if not isinstance(model, FactorModel):
        raise TypeError(f"model must be a fitted mfkit model, got {type(model).__name__}")
    T = as_ratings(test)
    users, items, truth = T.to_triplets(original_ids=True)
    pred = model.predict(users, items, unknown="baseline")
    truth = np.asarray(truth, dtype=np.float64)
    if axes is None:
        _, axes = _figure((9.0, 3.8), ncols=2)
    left, right = axes
    levels = np.unique(truth)
    lo, hi = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
    if len(levels) <= 20:
        groups = [pred[truth == v] for v in levels]
        width = 0.6 * (float(np.min(np.diff(levels))) if len(levels) > 1 else 1.0)
        left.boxplot(groups, positions=levels, widths=width, showfliers=False)
        left.set_xticks(levels, [f"{v:g}" for v in levels])
    else:
        left.hist2d(truth, pred, bins=40, cmin=1)
    left.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="prediction = rating")
    left.set_xlabel("held-out rating")
    left.set_ylabel("prediction")
    left.legend(fontsize="small", loc="upper left")
    left.grid(alpha=0.3)
    res = pred - truth
    rmse = float(np.sqrt(np.mean(res * res)))
    mae = float(np.mean(np.abs(res)))
    right.hist(res, bins=50, color="C0")
    right.axvline(0.0, color="grey", lw=0.8, ls="--")
    right.set_xlabel("residual (prediction - rating)")
    right.set_ylabel("ratings")
    right.set_title(f"RMSE {rmse:.4f}, MAE {mae:.4f} on {len(res):,} ratings", fontsize="small")
    right.grid(alpha=0.3)
    if title is not None:
        left.figure.suptitle(title)
    return axes


def _columns(rows: Any) -> dict[str, list[Any]]:
    if is_frame(rows):
        return {str(c): rows[c].tolist() for c in rows.columns}
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: pass the benchmark table's rows")
    cols: dict[str, list[Any]] = {}
    for r in rows:
        for k in r:
            cols.setdefault(str(k), [])
    for r in rows:
        for k in cols:
            cols[k].append(r.get(k))
    return cols


def _short(v: float) -> str:
    """3.47M, 35.8k, 0.6034: three or four significant digits, SI suffix from 10,000 up."""
    for scale, suffix, start in ((1e9, "G", 1e9), (1e6, "M", 1e6), (1e3, "k", 1e4)):
        if abs(v) >= start:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.4g}"


def bar_chart(
    rows: Any,
    label: str,
    value: str,
    *,
    group: str | None = None,
    ax: Any = None,
    title: str | None = None,
    xlabel: str | None = None,
    log: bool = False,
    annotate: bool = True,
) -> Any:
    """A horizontal bar chart of a benchmark table: one bar per ``label`` (e.g. the library)
    with length ``value`` (e.g. ``'updates/s'`` or ``'rmse'``), side by side per ``group``
    (e.g. the thread count) when given. ``rows``: a list of dict rows (what the benchmark
    scripts collect) or a DataFrame. ``annotate`` writes each value at the end of its bar.
    Returns the axes.
    """
    cols = _columns(rows)
    for name in (label, value) + ((group,) if group else ()):
        if name not in cols:
            raise ValueError(f"the table has no column {name!r}; it has {list(cols)}")
    labels = [str(v) for v in cols[label]]
    values = np.asarray(cols[value], dtype=np.float64)
    groups = [str(v) for v in cols[group]] if group else [""] * len(labels)
    names = list(dict.fromkeys(labels))
    gnames = list(dict.fromkeys(groups))
    if ax is None:
        _, ax = _figure((6.4, 0.9 + 0.45 * len(names) * max(len(gnames), 1)))
    height = 0.8 / len(gnames)
    for g, gname in enumerate(gnames):
        pos, vals = [], []
        for lab, v, gg in zip(labels, values, groups, strict=True):
            if gg == gname:
                pos.append(names.index(lab) - 0.4 + height * (g + 0.5))
                vals.append(v)
        bars = ax.barh(pos, vals, height=height * 0.95, color=f"C{g % 10}",
                       label=f"{group} = {gname}" if group else None)  # fmt: skip
        if annotate:
            ax.bar_label(bars, labels=[_short(v) for v in vals], padding=3, fontsize="small")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel or value)
    if log:
        ax.set_xscale("log")
    ax.margins(x=0.15)
    ax.grid(axis="x", alpha=0.3)
    if group:
        ax.legend(fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax


def save(figure: Any, path: str | os.PathLike[str], *, dpi: float = 110) -> None:
    """Write ``figure`` (a Figure, or axes / a sequence of axes of one) to ``path`` in the
    format its extension names (png, svg, pdf, ...), atomically: ``path`` holds the old file
    or the complete new one, never a partial image."""
    fig = figure
    if isinstance(fig, Sequence | np.ndarray):
        fig = np.ravel(fig)[0]
    fig = getattr(fig, "figure", fig)
    if not hasattr(fig, "savefig"):
        raise TypeError(f"save needs a matplotlib Figure or Axes, got {type(figure).__name__}")
    p = os.fspath(path)
    fmt = os.path.splitext(p)[1].lstrip(".").lower() or "png"
    atomic_write(p, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi))
