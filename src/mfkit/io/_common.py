"""What every loader shares: the format list, argument types, LoadInfo, small argument
checks."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np

logger = logging.getLogger("mfkit.io")

#: the names ``load_ratings(format=...)`` accepts (besides ``'auto'``)
FORMATS = (
    "movielens-100k",
    "movielens-dat",
    "movielens-csv",
    "netflix",
    "delimited",
    "parquet",
    "arrow",
    "cache",
)

OnBadLine = Literal["error", "skip", "warn"]
Scale = tuple[float, float] | None | Literal["auto"]
PathLike = str | os.PathLike

MOVIELENS_SCALE = (0.5, 5.0)
NETFLIX_SCALE = (1.0, 5.0)


@dataclasses.dataclass
class LoadInfo:
    """What a load did. Pass an instance as ``info=`` to any loader; it is filled in.

    ``format`` / ``reason``: the format used and why (``load_ratings``); ``paths``: the files
    read; ``bytes``: bytes read (compressed size for compressed files); ``lines``: text
    lines seen; ``ratings``: ratings kept; ``comments``, ``blank``, ``headers``: lines that
    carry no rating (comment lines, blank lines, header and Netflix ``MovieID:`` lines);
    ``skipped``: bad lines skipped, by reason in ``skipped_by_reason``, the first few in
    ``bad_lines`` as (file, line number, reason, text); ``seconds``: wall time.
    """

    format: str = ""
    reason: str = ""
    paths: list[str] = dataclasses.field(default_factory=list)
    bytes: int = 0
    lines: int = 0
    ratings: int = 0
    comments: int = 0
    blank: int = 0
    headers: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    bad_lines: list[tuple[str, int, str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class NetflixPairs:
    """(user, movie) pairs of a Netflix ``probe.txt`` or ``qualifying.txt``, in file order.

    ``users`` and ``items`` are original ids (int64), ready for ``model.predict(users,
    items)``; ``dates`` (int64 seconds, midnight UTC) for ``qualifying.txt``, else ``None``.
    """

    users: np.ndarray
    items: np.ndarray
    dates: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)


def resolve_scale(scale: Scale, default: tuple[float, float] | None) -> tuple[float, float] | None:
    if isinstance(scale, str):
        if scale != "auto":
            raise ValueError(f"rating_scale must be 'auto', None or (low, high), got {scale!r}")
        return default
    if scale is None:
        return None
    try:
        lo, hi = (float(scale[0]), float(scale[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise TypeError(f"rating_scale must be (low, high) numbers, got {scale!r}") from exc
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi) or len(scale) != 2:
        raise ValueError(f"rating_scale must be (low, high) with low <= high, got {scale!r}")
    return (lo, hi)


def comment_byte(comment: str | None) -> int:
    if comment is None:
        return -1
    if not isinstance(comment, str) or len(comment.encode()) != 1:
        raise ValueError(f"comment must be one ASCII character or None, got {comment!r}")
    return comment.encode()[0]


def one_path(path: PathLike | Sequence[PathLike]) -> str:
    if isinstance(path, str | os.PathLike):
        return os.fspath(path)
    raise TypeError(f"path must be a file name, got {type(path).__name__}")
