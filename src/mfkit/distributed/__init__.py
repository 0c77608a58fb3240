"""mfkit on a Dask cluster: ``mfkit.ALS(...).fit(ddf)`` and ``mfkit.BayesianMF(...).fit(ddf)``
with a ``dask.dataframe.DataFrame``.

This layer sits above the models. Importing it imports neither Dask nor ``distributed``
(they are the optional extra ``mfkit[dask]``, imported when a fit on a cluster starts); it
registers :func:`fit` with the models for collections of the ``dask`` package, so that
``FactorModel.fit`` hands such data over without importing this layer.

:func:`predict` and :func:`recommend_all` score a fitted model partition by partition on the
cluster and return Dask DataFrames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mfkit.distributed import _tasks
from mfkit.distributed._fit import fit
from mfkit.distributed._resident import ClusterModel
from mfkit.distributed._score import predict, recommend_all
from mfkit.distributed._shards import DEFAULT_TIMEOUT, ClusterRatings, balanced_bounds
from mfkit.models._registry import register_collection_fitter


def read_ratings(paths: Sequence[Any], **options: Any) -> Any:
    """A Dask DataFrame (columns ``user``, ``item``, ``rating``) with one partition per
    rating file, each read by a worker with :func:`mfkit.load_ratings` (any format it reads;
    ``options`` go to it): no machine ever holds all the ratings. A file's error (a malformed
    line, with the file and line, as :class:`mfkit.exceptions.RatingFileError`) is raised on
    the client by the fit that reads it."""
    import dask
    import dask.dataframe as dd
    import pandas as pd

    if isinstance(paths, str) or not isinstance(paths, Sequence) or not len(paths):
        raise TypeError("paths must be a non-empty list of rating file paths")
    meta = pd.DataFrame(
        {
            "user": pd.Series(dtype=object),
            "item": pd.Series(dtype=object),
            "rating": pd.Series(dtype="float64"),
        }
    )
    parts = [dask.delayed(_tasks.load_frame, pure=True)(str(p), dict(options)) for p in paths]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


register_collection_fitter("dask", fit)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClusterModel",
    "ClusterRatings",
    "balanced_bounds",
    "fit",
    "predict",
    "read_ratings",
    "recommend_all",
]
