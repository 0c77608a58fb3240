"""pandas DataFrames in and out, with pandas an optional dependency: it is imported only by
the function that builds a frame, and a frame passed in is recognised without importing it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "is_frame",
    "pairs_from_frame",
    "recommendations_frame",
    "require_pandas",
    "table_frame",
]


def require_pandas(what: str) -> Any:
    """The pandas module, or an ``ImportError`` saying ``what`` needs it."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(f"{what} needs pandas: pip install 'mfkit[pandas]'") from None
    return pd


def is_frame(obj: Any) -> bool:
    """Whether ``obj`` is a pandas DataFrame (checked without importing pandas)."""
    return any(
        c.__name__ == "DataFrame" and c.__module__.startswith("pandas") for c in type(obj).__mro__
    )


def pairs_from_frame(
    df: Any, user: str = "user", item: str = "item"
) -> tuple[np.ndarray, np.ndarray]:
    """The ``user`` and ``item`` columns of a DataFrame of pairs, as arrays."""
    missing = [c for c in (user, item) if c not in df.columns]
    if missing:
        raise ValueError(
            f"the DataFrame of pairs has no {missing} column(s); it has {list(df.columns)}. "
            f"Name the columns 'user' and 'item' (df.rename(columns={{...}}))"
        )
    return df[user].to_numpy(), df[item].to_numpy()


def recommendations_frame(users: Any, items: np.ndarray, scores: np.ndarray) -> Any:
    """Top-n lists as a long DataFrame (``user``, ``rank`` from 1, ``item``, ``score``),
    one row per filled place (places left empty, score NaN, are dropped)."""
    pd = require_pandas("as_frame=True")
    items = np.atleast_2d(items)
    scores = np.atleast_2d(scores)
    users = np.atleast_1d(np.asarray(users))
    n_users, n = scores.shape
    if len(users) != n_users:  # pragma: no cover - callers pass matching shapes
        raise ValueError("one user per row of items/scores is needed")
    keep = ~np.isnan(scores)
    rank = np.broadcast_to(np.arange(1, n + 1, dtype=np.int64), scores.shape)
    user_col = np.broadcast_to(users[:, None], scores.shape)
    return pd.DataFrame(
        {
            "user": user_col[keep],
            "rank": rank[keep],
            "item": items[keep],
            "score": scores[keep],
        }
    )


def table_frame(rows: Sequence[Mapping[str, Any]]) -> Any:
    """A DataFrame with one row per mapping (columns in first-seen order)."""
    pd = require_pandas("as_frame=True")
    return pd.DataFrame(list(rows))
