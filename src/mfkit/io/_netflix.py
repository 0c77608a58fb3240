"""Netflix Prize files: ``combined_data_N.txt``, the ``training_set/`` folder, and the
probe/qualifying pair lists."""

from __future__ import annotations

import bisect
import os
import re
import time
from collections.abc import Callable, Sequence

import numpy as np

from mfkit._core.validation import resolve_n_threads
from mfkit.data._csr import Duplicates
from mfkit.data._ratings import Ratings
from mfkit.exceptions import RatingFileError
from mfkit.io import _engine, _lines
from mfkit.io._common import (
    NETFLIX_SCALE,
    LoadInfo,
    NetflixPairs,
    OnBadLine,
    PathLike,
    Scale,
    comment_byte,
    one_path,
    resolve_scale,
)
from mfkit.io._engine import Engine, Spec, decode_line, engine_to_ratings, run_engine, text_load
from mfkit.io._sources import Progress, Source

# --------------------------------------------------------------------------- Netflix
MOVIE_HEADER_RE = re.compile(rb"^\s*\d+:\s*$")


def _netflix_files(paths: PathLike | Sequence[PathLike]) -> tuple[list[str], bool]:
    """The files to read and whether they are the per-movie ``mv_*.txt`` layout."""
    if isinstance(paths, str | os.PathLike):
        plist = [os.fspath(paths)]
    else:
        plist = [os.fspath(p) for p in paths]
        if not plist:
            raise ValueError("paths is empty: pass at least one Netflix file or folder")
    files: list[str] = []
    per_movie = False
    for p in plist:
        if os.path.isdir(p):
            combined = sorted(
                f for f in os.listdir(p) if re.fullmatch(r"combined_data_\d+\.txt(\.gz|\.bz2)?", f)
            )
            sub = os.path.join(p, "training_set")
            mv_dir = sub if os.path.isdir(sub) else p
            mv = sorted(f for f in os.listdir(mv_dir) if re.fullmatch(r"mv_\d+\.txt", f))
            if combined:
                files += [os.path.join(p, f) for f in combined]
            elif mv:
                files += [os.path.join(mv_dir, f) for f in mv]
                per_movie = True
            else:
                raise ValueError(
                    f"{p!r} holds neither combined_data_N.txt files nor a training_set of "
                    f"mv_*.txt files"
                )
        else:
            if not os.path.exists(p):
                raise FileNotFoundError(f"no such rating file: {p!r}")
            files.append(p)
            if re.fullmatch(r"mv_\d+\.txt", os.path.basename(p)):
                per_movie = True
    return files, per_movie


def _netflix_spec(rating_scale: Scale, comment: str | None) -> Spec:
    return Spec(
        b",", 3, 0, -1, 1, 2, time_kind=1, netflix=True, comment=comment_byte(comment),
        scale=resolve_scale(rating_scale, NETFLIX_SCALE),
    )  # fmt: skip


def _run_per_movie(engine: Engine, files: list[str], progress: Progress) -> None:
    """The ``mv_*.txt`` layout: many small files, each starting with its ``MovieID:`` line,
    concatenated into blocks so every block is one parallel parse."""
    total_done = 0
    k = 0
    while k < len(files):
        buf = bytearray()
        starts: list[int] = []
        names: list[str] = []
        while k < len(files) and (len(buf) < _engine._BLOCK or not starts):
            with open(files[k], "rb") as fh:
                data = fh.read()
            if not data:
                raise RatingFileError(files[k], "the file is empty")
            first = data.split(b"\n", 1)[0]
            if not MOVIE_HEADER_RE.match(first):
                raise RatingFileError(
                    files[k], "the first line is not a 'MovieID:' line", 1, decode_line(first)
                )
            starts.append(len(buf))
            names.append(files[k])
            buf += data
            if not data.endswith(b"\n"):
                buf += b"\n"
            total_done += len(data)
            engine.info.paths.append(files[k])
            k += 1
        arr = np.frombuffer(buf, np.uint8)

        def locate(
            off: int, starts: list[int] = starts, names: list[str] = names, arr: np.ndarray = arr
        ) -> tuple[str, int]:
            j = bisect.bisect_right(starts, off) - 1
            return names[j], _lines.count_newlines(arr, starts[j], off) + 1

        engine.carry = -1
        engine.parse(buf, 0, len(buf), locate, total_done / max(progress.total, 1))
        engine.info.bytes += len(buf)
        progress.update(total_done)


def load_netflix(
    paths: PathLike | Sequence[PathLike],
    *,
    rating_scale: Scale = "auto",
    comment: str | None = None,
    on_bad_line: OnBadLine = "error",
    duplicates: Duplicates = "error",
    n_threads: int | None = None,
    progress: bool | Callable[[int, int, float], None] = False,
    info: LoadInfo | None = None,
) -> Ratings:
    """Netflix Prize training data.

    ``paths``: one or several ``combined_data_N.txt`` files (plain or compressed), a folder
    holding them (all are read, in name order), a ``training_set`` folder of ``mv_*.txt``
    files, a folder holding ``training_set``, or a list of ``mv_*.txt`` files. Each file is a
    ``MovieID:`` line followed by ``CustomerID,Rating,YYYY-MM-DD`` lines, and so on. Items are
    the movie ids, users the customer ids, timestamps the dates (seconds, midnight UTC).
    The default ``rating_scale`` is 1..5. Other parameters as in :func:`load_movielens_100k`.

    A rating line before a file's first ``MovieID:`` line cannot be given a movie and is
    always an error, whatever ``on_bad_line`` says (the file is not in this format).
    """
    files, per_movie = _netflix_files(paths)
    spec = _netflix_spec(rating_scale, comment)
    if not per_movie:
        engine, _ = text_load(
            files, spec, on_bad_line=on_bad_line, n_threads=n_threads, progress=progress,
            info=info,
        )  # fmt: skip
    else:
        info = info if info is not None else LoadInfo()
        t0 = time.perf_counter()
        prog = Progress(progress, sum(os.path.getsize(f) for f in files))
        engine = run_engine(
            lambda e: _run_per_movie(e, files, prog), spec, on_bad_line,
            resolve_n_threads(n_threads), info,
        )  # fmt: skip
        prog.update(prog.total, final=True)
        engine.finish(f"{len(files)} files")
        info.seconds += time.perf_counter() - t0
        if engine.n == 0:
            raise RatingFileError(files[0], "no ratings found in the mv_*.txt files")
    name = files[0] if len(files) == 1 else f"{len(files)} Netflix files"
    return engine_to_ratings(engine, duplicates, name)


def load_netflix_pairs(
    path: PathLike,
    *,
    on_bad_line: OnBadLine = "error",
    n_threads: int | None = None,
    info: LoadInfo | None = None,
) -> NetflixPairs:
    """Netflix ``probe.txt`` (``MovieID:`` lines, then one ``CustomerID`` per line) or
    ``qualifying.txt`` (``CustomerID,YYYY-MM-DD`` lines): the (user, movie) pairs in file
    order, for evaluation. The layout is recognised from the first data line."""
    p = one_path(path)
    with Source(p) as src:
        head = src.head(1 << 16)
    if not head:
        raise RatingFileError(p, "the file is empty")
    lines = [ln for ln in head.split(b"\n")[:50] if ln.strip()]
    if not lines or not MOVIE_HEADER_RE.match(lines[0]):
        raise RatingFileError(
            p, "the first line is not a 'MovieID:' line", 1, decode_line(lines[0] if lines else b"")
        )
    data = next((ln for ln in lines[1:] if not MOVIE_HEADER_RE.match(ln)), b"")
    with_dates = b"," in data
    spec = Spec(
        b",", 2 if with_dates else 1, 0, -1, -1, 1 if with_dates else -1, time_kind=1, netflix=True
    )
    engine, _ = text_load(
        [p], spec, on_bad_line=on_bad_line, n_threads=n_threads, progress=False, info=info
    )
    users = engine.column("user").astype(np.int64)
    items = engine.column("item").astype(np.int64)
    dates = engine.column("time").copy() if with_dates else None
    return NetflixPairs(users, items, dates)
