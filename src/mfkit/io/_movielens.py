"""MovieLens files: ``u.data`` (100K), ``ratings.dat`` (1M, 10M) and ``ratings.csv`` (20M and
later)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mfkit.data._csr import Duplicates
from mfkit.data._ratings import Ratings
from mfkit.exceptions import RatingFileError
from mfkit.io._common import (
    MOVIELENS_SCALE,
    LoadInfo,
    OnBadLine,
    PathLike,
    Scale,
    comment_byte,
    one_path,
    resolve_scale,
)
from mfkit.io._engine import Spec, decode_line, engine_to_ratings, text_load


# --------------------------------------------------------------------------- MovieLens
def _fixed_text(
    path: PathLike,
    spec: Spec,
    *,
    on_bad_line: OnBadLine,
    duplicates: Duplicates,
    n_threads: int | None,
    progress: bool | Callable[[int, int, float], None],
    info: LoadInfo | None,
    header: Callable[[bytes], None] | None = None,
    member: str | None = None,
) -> Ratings:
    p = one_path(path)
    engine, _ = text_load(
        [p],
        spec,
        on_bad_line=on_bad_line,
        n_threads=n_threads,
        progress=progress,
        info=info,
        member=member,
        header=header,
    )
    return engine_to_ratings(engine, duplicates, p)


def _four_columns(
    path: PathLike,
    delimiter: bytes,
    rating_scale: Scale,
    comment: str | None,
    **options: Any,
) -> Ratings:
    """A headerless file of ``user item rating timestamp`` lines split by ``delimiter``."""
    spec = Spec(
        delimiter, 4, 0, 1, 2, 3, comment=comment_byte(comment),
        scale=resolve_scale(rating_scale, MOVIELENS_SCALE),
    )  # fmt: skip
    return _fixed_text(path, spec, **options)


def load_movielens_100k(
    path: PathLike,
    *,
    rating_scale: Scale = "auto",
    comment: str | None = None,
    on_bad_line: OnBadLine = "error",
    duplicates: Duplicates = "error",
    n_threads: int | None = None,
    progress: bool | Callable[[int, int, float], None] = False,
    info: LoadInfo | None = None,
    member: str | None = None,
) -> Ratings:
    """MovieLens 100K ``u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp`` per line.

    Parameters shared by the text loaders:

    rating_scale : ``'auto'`` (default: the format's scale, 0.5..5 for MovieLens), ``None``
        (any finite rating) or ``(low, high)``; a rating outside it is a bad line.
    comment : a character that starts comment lines (default ``None``: no comments).
    on_bad_line : ``'error'`` (default), ``'skip'`` or ``'warn'``, see the module docs.
    duplicates : repeated (user, item) pairs: ``'error'`` (default), ``'mean'``, ``'last'``
        (in file order) or ``'sum'``.
    n_threads : threads for parsing (``None``: all usable cores).
    progress : ``True`` shows bytes read, rate and ETA on stderr for files that take more than
        a second; a callable ``f(bytes_done, bytes_total, seconds)`` is called per block.
    info : a :class:`LoadInfo` to fill in with line counts and skipped lines.
    member : the file to read inside a ``.zip`` archive (e.g. ``'ml-100k/u.data'`` in the
        official ``ml-100k.zip``; default: the archive's only or only known rating file).
    """
    return _four_columns(
        path, b"\t", rating_scale, comment, on_bad_line=on_bad_line, duplicates=duplicates,
        n_threads=n_threads, progress=progress, info=info, member=member,
    )  # fmt: skip


def load_movielens_dat(
    path: PathLike,
    *,
    rating_scale: Scale = "auto",
    comment: str | None = None,
    on_bad_line: OnBadLine = "error",
    duplicates: Duplicates = "error",
    n_threads: int | None = None,
    progress: bool | Callable[[int, int, float], None] = False,
    info: LoadInfo | None = None,
    member: str | None = None,
) -> Ratings:
    """MovieLens 1M / 10M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp`` per line.

    Parameters (``member`` included) as in :func:`load_movielens_100k`; the default scale
    is 0.5..5.
    """
    return _four_columns(
        path, b"::", rating_scale, comment, on_bad_line=on_bad_line, duplicates=duplicates,
        n_threads=n_threads, progress=progress, info=info, member=member,
    )  # fmt: skip


_CSV_NAMES = {"user": "userid", "item": "movieid", "rating": "rating", "time": "timestamp"}


def _header_fields(raw: bytes, delimiter: bytes) -> list[str]:
    text = raw.decode("utf-8-sig", errors="replace").strip("\r\n")
    parts = text.split() if not delimiter else text.split(delimiter.decode())
    return [p.strip().strip('"').strip() for p in parts]


def load_movielens_csv(
    path: PathLike,
    *,
    rating_scale: Scale = "auto",
    comment: str | None = None,
    on_bad_line: OnBadLine = "error",
    duplicates: Duplicates = "error",
    n_threads: int | None = None,
    progress: bool | Callable[[int, int, float], None] = False,
    info: LoadInfo | None = None,
    member: str | None = None,
) -> Ratings:
    """MovieLens 20M / 25M / 32M / latest ``ratings.csv``: a header naming ``userId``,
    ``movieId``, ``rating`` and (optionally) ``timestamp``, in any order, then one rating per
    line. ``member``: the file inside a ``.zip`` (default: the ``ratings.csv`` in it).

    Other parameters as in :func:`load_movielens_100k`; the default scale is 0.5..5.
    """
    spec = Spec(
        b",", 4, 0, 1, 2, 3, comment=comment_byte(comment),
        scale=resolve_scale(rating_scale, MOVIELENS_SCALE),
    )  # fmt: skip
    p = one_path(path)

    def header(raw: bytes) -> None:
        names = [f.lower() for f in _header_fields(raw, b",")]
        pos = {}
        for key, want in _CSV_NAMES.items():
            if want in names:
                pos[key] = names.index(want)
            elif key != "time":
                raise RatingFileError(
                    p,
                    f"the header has no {want!r} column (expected userId,movieId,rating"
                    f"[,timestamp]); use load_delimited for other layouts",
                    1,
                    decode_line(raw),
                )
        spec.n_fields = len(names)
        spec.col_user, spec.col_item, spec.col_rating = pos["user"], pos["item"], pos["rating"]
        spec.col_time = pos.get("time", -1)

    return _fixed_text(
        p, spec, on_bad_line=on_bad_line, duplicates=duplicates, n_threads=n_threads,
        progress=progress, info=info, header=header, member=member,
    )  # fmt: skip
