"""The binary ratings cache as loader functions (the format itself: :mod:`mfkit.data._cache`)."""

from __future__ import annotations

from typing import Any

from mfkit.data._ratings import Ratings


def save_cache(ratings: Ratings, path: Any) -> None:
    """Write ``ratings`` as a binary cache folder (see :meth:`mfkit.Ratings.save`)."""
    if not isinstance(ratings, Ratings):
        raise TypeError(f"ratings must be mfkit.Ratings, got {type(ratings).__name__}")
    ratings.save(path)


def load_cache(path: Any, mmap: bool = True, verify: bool | None = None) -> Ratings:
    """Open a cache folder written by :func:`save_cache` (see :meth:`mfkit.Ratings.load`)."""
    return Ratings.load(path, mmap=mmap, verify=verify)
