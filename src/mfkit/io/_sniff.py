"""Format sniffing and :func:`load_ratings`, which reads any format mfkit knows."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from mfkit.data._cache import is_cache
from mfkit.data._ratings import Ratings
from mfkit.exceptions import RatingFileError
from mfkit.io._arrow import load_arrow, load_parquet
from mfkit.io._cache import load_cache
from mfkit.io._common import FORMATS, LoadInfo, PathLike, logger, one_path
from mfkit.io._delimited import load_delimited
from mfkit.io._engine import decode_line
from mfkit.io._movielens import load_movielens_100k, load_movielens_csv, load_movielens_dat
from mfkit.io._netflix import MOVIE_HEADER_RE, load_netflix
from mfkit.io._sources import Source


# --------------------------------------------------------------------------- sniffing
def sniff_format(path: PathLike | Sequence[PathLike]) -> tuple[str, str]:
    """``(format, reason)``: what :func:`load_ratings` would read ``path`` as, and why.

    Formats: see :data:`FORMATS`; also ``'netflix-pairs'`` for ``probe.txt`` /
    ``qualifying.txt`` (read those with :func:`load_netflix_pairs`)."""
    if not isinstance(path, str | os.PathLike):
        return "netflix", "several files (only the Netflix loader takes a list)"
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such rating file or folder: {p!r}")
    if os.path.isdir(p):
        if is_cache(p):
            return "cache", "folder with meta.json (an mfkit ratings cache)"
        names = os.listdir(p)
        if any(re.fullmatch(r"combined_data_\d+\.txt(\.gz|\.bz2)?", f) for f in names):
            return "netflix", "folder with combined_data_N.txt files"
        if "training_set" in names or any(re.fullmatch(r"mv_\d+\.txt", f) for f in names):
            return "netflix", "folder with the Netflix training_set (mv_*.txt files)"
        raise ValueError(
            f"{p!r} is a folder but neither an mfkit cache nor a Netflix data folder; pass a file"
        )
    base = os.path.basename(p).lower()
    if base.endswith((".parquet", ".pq")):
        return "parquet", "Parquet file (name)"
    if base.endswith((".arrow", ".feather", ".ipc", ".arrows")):
        return "arrow", "Arrow/Feather file (name)"
    # one open for the magic and the first lines (a pipe opened twice would lose data)
    with Source(p) as src:
        head = src.head(1 << 16)
        inner = src.inner_name
    if src.kind is None and head.startswith(b"PAR1"):
        return "parquet", "Parquet file (PAR1 magic)"
    if src.kind is None and head.startswith(b"ARROW1"):
        return "arrow", "Arrow/Feather file (ARROW1 magic)"
    lines = [ln.rstrip(b"\r") for ln in head.split(b"\n")]
    lines = [ln for ln in lines if ln.strip()][:20]
    if not lines:
        raise RatingFileError(p, "the file is empty (or has only blank lines)")
    first = lines[0]
    inner_l = inner.lower()
    if re.fullmatch(r"(combined_data_\d+|mv_\d+)\.txt", inner_l):
        return "netflix", f"{inner!r}: a Netflix Prize training file name"
    if inner_l in ("probe.txt", "qualifying.txt"):
        return "netflix-pairs", f"{inner!r}: a Netflix Prize pair list name"
    if MOVIE_HEADER_RE.match(first):
        data = next((ln for ln in lines[1:] if not MOVIE_HEADER_RE.match(ln)), b"")
        commas = data.count(b",")
        if commas == 2:
            return (
                "netflix",
                f"first line {decode_line(first)!r} is a MovieID: line, then user,rating,date",
            )
        return "netflix-pairs", (
            f"first line {decode_line(first)!r} is a MovieID: line, then "
            f"{'user,date' if commas == 1 else 'user ids'} (a probe/qualifying pair list)"
        )
    if b"::" in first:
        return "movielens-dat", f"{inner!r}: fields separated by '::'"
    if first.lower().replace(b" ", b"").startswith(b"userid,movieid,rating"):
        return "movielens-csv", f"{inner!r}: header {decode_line(first)!r}"
    if inner_l == "u.data" or (inner_l.endswith(".data") and first.count(b"\t") == 3):
        return "movielens-100k", f"{inner!r}: MovieLens 100K name and tab-separated lines"
    return "delimited", f"{inner!r}: generic delimited text"


_LOADERS: dict[str, Callable[..., Ratings]] = {
    "movielens-100k": load_movielens_100k,
    "movielens-dat": load_movielens_dat,
    "movielens-csv": load_movielens_csv,
    "netflix": load_netflix,
    "delimited": load_delimited,
    "parquet": load_parquet,
    "arrow": load_arrow,
}


def load_ratings(
    path: PathLike | Sequence[PathLike],
    format: str = "auto",
    *,
    verbose: bool = False,
    info: LoadInfo | None = None,
    **options: Any,
) -> Ratings:
    """Read ratings from ``path`` in any format mfkit knows.

    ``format='auto'`` (default) decides from the name and the first lines
    (:func:`sniff_format`) and reports its choice: in ``info.format`` / ``info.reason``, on
    the ``mfkit.io`` logger, and on stderr with ``verbose=True``. ``options`` go to the
    format's loader (``on_bad_line``, ``duplicates``, ``rating_scale``, ``n_threads``,
    ``progress``, and the format's own, such as ``delimiter`` or ``columns``); for
    ``'cache'``: ``mmap`` and ``verify``. A list of paths is read as Netflix files.
    """
    info = info if info is not None else LoadInfo()
    if format == "auto":
        fmt, reason = sniff_format(path)
    else:
        if format not in FORMATS:
            raise ValueError(
                f"format must be 'auto' or one of {', '.join(FORMATS)}; got {format!r}"
            )
        fmt, reason = format, "given"
    name = os.fspath(path) if isinstance(path, str | os.PathLike) else f"{len(path)} files"
    info.format, info.reason = fmt, reason
    logger.info("load_ratings: reading %s as %s (%s)", name, fmt, reason)
    if verbose:
        print(f"mfkit: reading {name} as {fmt} ({reason})", file=sys.stderr, flush=True)
    if fmt == "netflix-pairs":
        raise ValueError(
            f"{name} is a Netflix probe/qualifying pair list, not ratings: read it with "
            f"mfkit.io.load_netflix_pairs"
        )
    if fmt == "cache":
        t0 = time.perf_counter()
        out = load_cache(one_path(path), **options)
        info.paths.append(os.fspath(one_path(path)))
        info.ratings = out.nnz
        info.seconds = time.perf_counter() - t0
        return out
    return _LOADERS[fmt](path, info=info, **options)
