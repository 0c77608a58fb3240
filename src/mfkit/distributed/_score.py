"""Scoring on a Dask cluster: predictions for a Dask DataFrame of (user, item) pairs and the
top-n lists of all users, as Dask DataFrames computed partition by partition.

Each partition is scored by the model's own :meth:`~mfkit.FactorModel.predict` or
:meth:`~mfkit.FactorModel.recommend` (the same kernels as on one machine), so the rows equal
the single-machine results bit for bit. Nothing is computed when these functions return;
``.to_parquet(path)`` writes the partitions from the workers without collecting them.

The model goes to the workers once per graph (one task holds it; every partition depends on
it), so it must fit in a worker's memory; :meth:`mfkit.distributed.ClusterModel.recommend_all`
scores factors that stay sharded on the cluster instead.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import numpy as np

from mfkit._core.validation import check_choice, check_number
from mfkit.models import FactorModel

#: users per partition of :func:`recommend_all` by default
DEFAULT_USERS_PER_PARTITION = 50_000

UNKNOWN_CHOICES = ("error", "baseline", "nan")


def _check_model(model: Any) -> FactorModel:
    if not isinstance(model, FactorModel):
        raise TypeError(f"model must be a fitted mfkit model, got {type(model).__name__}")
    model._check_fitted()
    return model


def _with_threads(model: FactorModel, n_threads: int) -> FactorModel:
    """A shallow copy scoring with ``n_threads`` kernel threads (the arrays are shared; the
    scores do not depend on the thread count)."""
    out = copy.copy(model)
    out.n_threads_ = n_threads
    return out


def check_pairs(pairs: Any, cols: tuple[str, str], column: str, unknown: str, clip: Any) -> None:
    """The checks of a Dask DataFrame of pairs and the predict options."""
    check_choice(unknown, "unknown", UNKNOWN_CHOICES)
    if not isinstance(clip, bool | np.bool_):
        raise TypeError(f"clip must be True or False, got {clip!r}")
    if not (hasattr(pairs, "map_partitions") and hasattr(pairs, "columns")):
        raise TypeError(
            f"pairs must be a dask.dataframe.DataFrame, got {type(pairs).__name__}; for a "
            f"pandas DataFrame call model.predict(df)"
        )
    missing = [c for c in cols if c not in pairs.columns]
    if missing:
        raise ValueError(
            f"pairs has no column(s) {missing}; it has {list(pairs.columns)}. Name them with "
            f"user_col=, item_col="
        )
    if column in pairs.columns:
        raise ValueError(f"pairs already has a column {column!r}; choose another column=")


def predict_partition(
    part: Any,
    model: FactorModel,
    cols: tuple[str, str],
    column: str,
    unknown: str,
    clip: bool,
    n_threads: int,
    partition_info: dict[str, Any] | None = None,
) -> Any:
    """One partition of pairs with the predicted rating appended as ``column``."""
    out = part.copy()
    users, items = part[cols[0]].to_numpy(), part[cols[1]].to_numpy()
    try:
        scores = _with_threads(model, n_threads).predict(users, items, unknown=unknown, clip=clip)
    except (TypeError, ValueError) as exc:
        where = "partition ?" if partition_info is None else f"partition {partition_info['number']}"
        raise type(exc)(f"{where}: {exc}") from None
    out[column] = np.asarray(scores, dtype=np.float64)
    return out


def predict(
    model: FactorModel,
    pairs: Any,
    *,
    user_col: str = "user",
    item_col: str = "item",
    column: str = "prediction",
    unknown: str = "error",
    clip: bool = False,
    n_threads: int = 1,
) -> Any:
    """The predicted ratings of a Dask DataFrame of (user, item) pairs, as a Dask DataFrame.

    Parameters
    ----------
    model : fitted mfkit model
        Any fitted model (it is sent to the workers once).
    pairs : dask.dataframe.DataFrame
        Pairs in the model's original ids, in columns ``user_col`` and ``item_col``; other
        columns are kept.
    column : str, default 'prediction'
        Name of the float64 column added to each partition.
    unknown, clip
        As for :meth:`mfkit.FactorModel.predict`; with ``unknown='error'`` an unknown id
        fails the computation with the partition's number.
    n_threads : int, default 1
        Kernel threads per partition task (Dask already runs one task per worker thread).

    Returns
    -------
    dask.dataframe.DataFrame
        ``pairs`` with ``column`` appended, the same partitions and divisions; row ``j`` of a
        partition equals ``model.predict(users, items)[j]`` on one machine bit for bit.
    """
    import dask

    model = _check_model(model)
    check_pairs(pairs, (user_col, item_col), column, unknown, clip)
    n_threads = int(check_number(n_threads, "n_threads", low=1, integer=True))
    meta = pairs._meta.copy()
    meta[column] = np.empty(0, dtype=np.float64)
    held = dask.delayed(model, name=f"mfkit-model-{uuid.uuid4().hex}")
    return pairs.map_partitions(
        predict_partition,
        held,
        (user_col, item_col),
        column,
        unknown,
        bool(clip),
        n_threads,
        meta=meta,
        align_dataframes=False,
    )


def recommend_block(
    model: FactorModel,
    users: np.ndarray,
    n: int,
    exclude_seen: bool,
    items: np.ndarray | None,
    n_threads: int,
) -> Any:
    """The top-n lists of ``users`` as a long DataFrame (``user``, ``rank``, ``item``,
    ``score``), exactly :meth:`~mfkit.FactorModel.recommend` with ``as_frame=True``."""
    return _with_threads(model, n_threads).recommend(users, n, exclude_seen, items, as_frame=True)


def user_blocks(n_users: int, users_per_partition: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) blocks of user indices, at most ``users_per_partition``
    each (one empty block when there are no users)."""
    edges = list(range(0, n_users, users_per_partition)) + [n_users]
    return list(zip(edges[:-1], edges[1:], strict=True)) or [(0, 0)]


def recommend_all(
    model: FactorModel,
    n: int = 10,
    *,
    exclude_seen: bool = True,
    items: Any = None,
    users_per_partition: int = DEFAULT_USERS_PER_PARTITION,
    n_threads: int = 1,
) -> Any:
    """The top-``n`` items of every user of ``model`` as a Dask DataFrame.

    Columns ``user``, ``rank`` (1 = best), ``item``, ``score`` in the model's original ids,
    one row per recommended item, as :meth:`mfkit.FactorModel.recommend` gives them with
    ``as_frame=True``; users in index order, ``users_per_partition`` users per partition.
    Each partition runs the recommend kernel on its block of users, so the rows equal
    ``model.recommend(model.user_ids_, n, as_frame=True)`` on one machine bit for bit, and
    ``.to_parquet(path)`` writes them without gathering them anywhere.

    ``exclude_seen`` and ``items`` (candidate items) are as for ``recommend``; with
    ``exclude_seen=True`` the model needs its record of the training ratings.
    ``n_threads``: kernel threads per partition task.
    """
    import dask
    import dask.dataframe as dd

    model = _check_model(model)
    n = int(check_number(n, "n", low=1, integer=True))
    if not isinstance(exclude_seen, bool | np.bool_):
        raise TypeError(f"exclude_seen must be True or False, got {exclude_seen!r}")
    per = int(check_number(users_per_partition, "users_per_partition", low=1, integer=True))
    n_threads = int(check_number(n_threads, "n_threads", low=1, integer=True))
    if exclude_seen and model._fitted.seen is None:
        raise ValueError(
            "this model has no record of its training ratings (it was saved with "
            "seen=False); pass exclude_seen=False"
        )
    ids = model.user_ids_
    user_ids = np.arange(model.n_users, dtype=np.int64) if ids is None else ids
    cand = None if items is None else np.atleast_1d(np.asarray(items))
    blocks = user_blocks(len(user_ids), per)
    # the lists' dtypes from one user (checks n, items and the model on the client)
    meta = recommend_block(model, user_ids[:1], n, bool(exclude_seen), cand, 1).iloc[:0]
    held = dask.delayed(model, name=f"mfkit-model-{uuid.uuid4().hex}")
    task = dask.delayed(recommend_block, pure=True)
    parts = [task(held, user_ids[a:b], n, bool(exclude_seen), cand, n_threads) for a, b in blocks]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


__all__ = [
    "DEFAULT_USERS_PER_PARTITION",
    "check_pairs",
    "predict",
    "predict_partition",
    "recommend_all",
    "recommend_block",
    "user_blocks",
]
