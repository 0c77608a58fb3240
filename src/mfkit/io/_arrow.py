"""Parquet and Arrow/Feather tables (through pyarrow, an optional dependency)."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from mfkit._core.validation import resolve_n_threads
from mfkit.data._csr import Duplicates, map_ids_to_indices
from mfkit.data._ratings import Ratings
from mfkit.exceptions import BadLineWarning, RatingFileError
from mfkit.io._common import LoadInfo, OnBadLine, PathLike, Scale, one_path, resolve_scale
from mfkit.io._delimited import ITEM_NAMES, RATING_NAMES, TIME_NAMES, USER_NAMES
from mfkit.io._engine import build_ratings
from mfkit.io._sources import Progress


# --------------------------------------------------------------------------- Parquet / Arrow
def _need_pyarrow(what: str) -> Any:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"reading {what} files needs pyarrow, which is not installed: "
            f"pip install pyarrow (or pip install 'mfkit[arrow]')"
        ) from exc
    return pyarrow


def _pick(names: list[str], given: str | None, choices: set[str], what: str, path: str) -> str:
    if given is not None:
        if given not in names:
            raise ValueError(f"{path}: no column {given!r}; the columns are {names}")
        return given
    hit = [n for n in names if n.lower() in choices]
    if not hit:
        raise ValueError(f"{path}: cannot tell the {what} column from {names}; pass {what}_col=")
    return hit[0]


def _table_to_ratings(
    table: Any,
    path: str,
    user_col: str | None,
    item_col: str | None,
    rating_col: str | None,
    timestamp_col: str | None,
    rating_scale: Scale,
    on_bad_line: OnBadLine,
    duplicates: Duplicates,
    n_threads: int | None,
    info: LoadInfo,
) -> Ratings:
    import pyarrow as pa
    import pyarrow.compute as pc

    if on_bad_line not in ("error", "skip", "warn"):
        raise ValueError(f"on_bad_line must be 'error', 'skip' or 'warn', got {on_bad_line!r}")
    names = list(table.column_names)
    uc = _pick(names, user_col, USER_NAMES, "user", path)
    ic = _pick(names, item_col, ITEM_NAMES, "item", path)
    rc = _pick(names, rating_col, RATING_NAMES, "rating", path)
    tc = timestamp_col
    if tc is None:
        tc = next((n for n in names if n.lower() in TIME_NAMES), None)
    elif tc not in names:
        raise ValueError(f"{path}: no column {tc!r}; the columns are {names}")
    scale = resolve_scale(rating_scale, None)
    n = table.num_rows
    info.lines += n
    r = table.column(rc)
    if not (pa.types.is_integer(r.type) or pa.types.is_floating(r.type)):
        raise TypeError(f"{path}: rating column {rc!r} has type {r.type}, not a number")
    bad = pc.is_null(r)
    for c in (uc, ic) + ((tc,) if tc is not None else ()):
        bad = pc.or_(bad, pc.is_null(table.column(c)))
    rv = r.to_numpy(zero_copy_only=False).astype(np.float64)
    badn = np.asarray(bad.to_numpy(zero_copy_only=False), dtype=bool)
    badn |= ~np.isfinite(rv)
    if scale is not None:
        with np.errstate(invalid="ignore"):
            badn |= (rv < scale[0]) | (rv > scale[1])
    if badn.any():
        k = int(np.flatnonzero(badn)[0])
        row = {c: table.column(c)[k].as_py() for c in (uc, ic, rc)}
        count = int(badn.sum())
        if on_bad_line == "error":
            raise RatingFileError(
                path,
                f"row {k}: a missing id/rating, a non-finite rating or one outside "
                f"rating_scale={scale} ({count} such rows): {row}",
            )
        info.skipped += count
        info.skipped_by_reason["missing or invalid value"] = count
        if on_bad_line == "warn":
            warnings.warn(
                f"{path}: skipped {count} bad row(s); first: row {k} {row}",
                BadLineWarning,
                stacklevel=4,
            )
        table = table.filter(pa.array(~badn))
        rv = rv[~badn]
    if len(rv) == 0:
        raise RatingFileError(path, "no ratings found")
    nt = resolve_n_threads(n_threads)
    maps = []
    for c in (uc, ic):
        col = table.column(c)
        if pa.types.is_integer(col.type):
            a = col.to_numpy(zero_copy_only=False).astype(np.int64)
            maps.append(map_ids_to_indices(a, nt))
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            a = np.asarray(col.to_numpy(zero_copy_only=False)).astype(str)
            uniq, idx = np.unique(a, return_inverse=True)
            maps.append((uniq, idx.astype(np.int32).ravel()))
        else:
            raise TypeError(
                f"{path}: id column {c!r} has type {col.type}; ids must be integers or strings"
            )
    ts = None
    if tc is not None:
        t = table.column(tc)
        if pa.types.is_timestamp(t.type) or pa.types.is_date(t.type):
            t = pc.cast(pc.cast(t, pa.timestamp("s")), pa.int64())
        if not pa.types.is_integer(t.type):
            raise TypeError(f"{path}: timestamp column {tc!r} has type {t.type}")
        ts = np.ascontiguousarray(t.to_numpy(zero_copy_only=False), dtype=np.int64)
    info.ratings = len(rv)
    parts = {
        "uidx": maps[0][1],
        "user_ids": maps[0][0],
        "iidx": maps[1][1],
        "item_ids": maps[1][0],
        "values": rv.astype(np.float32),
        "times": ts,
    }
    del maps, rv, ts
    return build_ratings(parts, duplicates, nt, path)


def _finish_table(
    table: Any,
    p: str,
    t0: float,
    progress: bool | Callable[[int, int, float], None],
    info: LoadInfo,
    *columns_and_options: Any,
) -> Ratings:
    """The part of the Parquet and Arrow loaders after pyarrow has read the table."""
    info.paths.append(p)
    size = os.path.getsize(p)
    info.bytes += size
    Progress(progress, size).update(size, final=True)
    user_col, item_col, rating_col, timestamp_col, scale, on_bad, dups, n_threads = (
        columns_and_options
    )
    out = _table_to_ratings(
        table, p, user_col, item_col, rating_col, timestamp_col, scale, on_bad, dups,
        n_threads, info,
    )  # fmt: skip
    info.seconds += time.perf_counter() - t0
    return out


def load_parquet(
    path: PathLike,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    rating_scale: Scale = None,
    on_bad_line: OnBadLine = "error",
    duplicates: Duplicates = "error",
    n_threads: int | None = None,
    progress: bool | Callable[[int, int, float], None] = False,
    info: LoadInfo | None = None,
) -> Ratings:
    """A Parquet file (needs pyarrow). Columns are found by name like in
    :func:`load_delimited` unless given; ids may be integers or strings; a timestamp column
    may be integers, dates or timestamps (stored as seconds). Rows with a missing value, a
    non-finite rating or one outside ``rating_scale`` are bad rows (``on_bad_line``).
    ``progress`` is accepted as by the text loaders; pyarrow reads the file in one call, so
    a callable ``progress(done, total, seconds)`` is called once, when it is read."""
    _need_pyarrow("Parquet")
    import pyarrow.parquet as pq

    p = one_path(path)
    info = info if info is not None else LoadInfo()
    t0 = time.perf_counter()
    try:
        table = pq.read_table(p)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise RatingFileError(p, f"cannot read as Parquet ({exc})") from exc
    return _finish_table(
        table, p, t0, progress, info, user_col, item_col, rating_col, timestamp_col,
        rating_scale, on_bad_line, duplicates, n_threads,
    )  # fmt: skip


def load_arrow(
    path: PathLike,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    rating_scale: Scale = None,
    on_bad_line: OnBadLine = "error",
    duplicates: Duplicates = "error",
    n_threads: int | None = None,
    progress: bool | Callable[[int, int, float], None] = False,
    info: LoadInfo | None = None,
) -> Ratings:
    """An Arrow IPC file or stream, or a Feather file (needs pyarrow); as
    :func:`load_parquet`."""
    pa = _need_pyarrow("Arrow")
    import pyarrow.feather as feather

    p = one_path(path)
    info = info if info is not None else LoadInfo()
    t0 = time.perf_counter()
    try:
        table = feather.read_table(p)
    except FileNotFoundError:
        raise
    except Exception:
        try:
            with pa.memory_map(p) as src:
                table = pa.ipc.open_stream(src).read_all()
        except Exception as exc:
            raise RatingFileError(p, f"cannot read as an Arrow IPC file or stream ({exc})") from exc
    return _finish_table(
        table, p, t0, progress, info, user_col, item_col, rating_col, timestamp_col,
        rating_scale, on_bad_line, duplicates, n_threads,
    )  # fmt: skip
