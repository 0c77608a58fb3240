"""Generic delimited text: any delimiter, columns by position or header name, comments,
string ids."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from mfkit.data._csr import Duplicates
from mfkit.data._ratings import Ratings
from mfkit.exceptions import RatingFileError
from mfkit.io._common import (
    LoadInfo,
    OnBadLine,
    PathLike,
    Scale,
    comment_byte,
    one_path,
    resolve_scale,
)
from mfkit.io._engine import Spec, engine_to_ratings, text_load
from mfkit.io._sources import Source

# --------------------------------------------------------------------------- generic text
USER_NAMES = {"user", "userid", "user_id", "users", "uid", "customer", "customerid", "customer_id"}
ITEM_NAMES = {
    "item", "itemid", "item_id", "items", "iid", "movie", "movieid", "movie_id", "product",
    "productid", "product_id", "asin", "book", "bookid", "book_id", "isbn",
}  # fmt: skip
RATING_NAMES = {"rating", "ratings", "score", "stars", "value", "book_rating", "book-rating"}
TIME_NAMES = {"timestamp", "time", "ts", "unixtime", "unix_time", "datetime_ts"}


def _looks_int(tok: str) -> bool:
    return re.fullmatch(r"\s*[+-]?\d+\s*", tok) is not None


def _looks_num(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _split(line: str, delimiter: bytes) -> list[str]:
    return line.split() if not delimiter else line.split(delimiter.decode())


def _sniff_delimiter(lines: list[str]) -> bytes:
    for cand in ("::", "\t", ",", ";", "|"):
        counts = {len(ln.split(cand)) for ln in lines}
        if len(counts) == 1 and min(counts) >= 3:
            return cand.encode()
    counts = {len(ln.split()) for ln in lines}
    if len(counts) == 1 and min(counts) >= 3:
        return b""
    raise ValueError(
        "cannot tell the delimiter from the first lines; pass delimiter= (e.g. ',', '\\t', "
        "'::', or None for runs of whitespace)"
    )


def load_delimited(
    path: PathLike,
    *,
    delimiter: str | None = "auto",
    columns: Sequence[int | str] | None = None,
    header: bool | None = None,
    comment: str | None = "#",
    id_type: Literal["auto", "int", "str"] = "auto",
    rating_scale: Scale = None,
    on_bad_line: OnBadLine = "error",
    duplicates: Duplicates = "error",
    n_threads: int | None = None,
    progress: bool | Callable[[int, int, float], None] = False,
    info: LoadInfo | None = None,
    member: str | None = None,
) -> Ratings:
    """Any delimited rating text.

    delimiter : the field separator (any string of 1 to 4 characters), ``None`` for runs of
        spaces/tabs, or ``'auto'`` (default): the first of ``::``, tab, ``,``, ``;``, ``|``
        that splits the first lines into a constant number (>= 3) of fields, else whitespace.
    columns : ``(user, item, rating)`` or ``(user, item, rating, timestamp)``, each a
        0-based position or a header name. Default: from the header names when there is a
        header (user/userId/..., item/movieId/itemId/..., rating/score/..., timestamp/...),
        else positions 0, 1, 2 (and 3 as timestamp when lines have exactly 4 fields and the
        fourth is an integer).
    header : whether the first (non-comment) line names the columns; ``None`` (default)
        guesses: a header when the rating field of the first line is not a number.
    comment : lines starting with this character are skipped (default ``'#'``; ``None``:
        none).
    id_type : ``'int'`` ids (parsed by the fast path, any 64-bit integer), ``'str'`` (any
        text, kept as strings; surrounding double quotes are removed), or ``'auto'``
        (default): ``'int'`` if the ids on the first lines are integers, else ``'str'``.
    rating_scale : ``None`` (default: any finite rating) or ``(low, high)``.

    Fields are not unquoted beyond the id rule above: a delimiter inside quotes is not
    supported. Other parameters as in :func:`load_movielens_100k`.
    """
    p = one_path(path)
    cbyte = comment_byte(comment)
    if id_type not in ("auto", "int", "str"):
        raise ValueError(f"id_type must be 'auto', 'int' or 'str', got {id_type!r}")
    with Source(p, member) as src:
        head = src.head(1 << 16)
    if not head:
        raise RatingFileError(p, "the file is empty")
    text = head.decode("utf-8-sig", errors="replace")
    raw_lines = text.split("\n")
    if len(head) == 1 << 16 and len(raw_lines) > 1:
        raw_lines = raw_lines[:-1]  # the last one may be cut
    lines = [
        ln.rstrip("\r") for ln in raw_lines
        if ln.strip() and not (comment is not None and ln.startswith(comment))
    ][:200]  # fmt: skip
    if not lines:
        raise RatingFileError(p, "no data lines at the start of the file (only comments/blank)")
    if delimiter == "auto":
        try:
            delim = _sniff_delimiter(lines[1:] if len(lines) > 1 else lines)
        except ValueError as exc:
            raise RatingFileError(p, str(exc)) from None
    elif delimiter is None:
        delim = b""
    else:
        if not isinstance(delimiter, str) or not 1 <= len(delimiter.encode()) <= 4:
            raise ValueError(
                f"delimiter must be 1 to 4 characters, None or 'auto', got {delimiter!r}"
            )
        if "\n" in delimiter or "\r" in delimiter:
            raise ValueError("delimiter cannot contain a line break")
        delim = delimiter.encode()
    first = [f.strip().strip('"') for f in _split(lines[0], delim)]
    n_fields = len(first)
    if header is None:
        rating_pos = 2
        if columns is not None and len(columns) >= 3 and isinstance(columns[2], int):
            rating_pos = columns[2]
        header = any(isinstance(c, str) for c in (columns or ())) or not (
            rating_pos < n_fields and _looks_num(first[rating_pos])
        )
    names = [f.lower() for f in first] if header else []
    data_lines = lines[1:] if header else lines
    if columns is None:
        if header:
            pos = []
            for want in (USER_NAMES, ITEM_NAMES, RATING_NAMES):
                hit = [k for k, nm in enumerate(names) if nm in want]
                if not hit:
                    raise ValueError(
                        f"{p}: cannot tell the user, item and rating columns from the header "
                        f"{first}; pass columns=(user, item, rating[, timestamp])"
                    )
                pos.append(hit[0])
            tcol = [k for k, nm in enumerate(names) if nm in TIME_NAMES]
            if tcol:
                pos.append(tcol[0])
        else:
            pos = [0, 1, 2]
            if (
                n_fields == 4
                and data_lines
                and all(
                    len(_split(ln, delim)) == 4 and _looks_int(_split(ln, delim)[3])
                    for ln in data_lines[:50]
                )
            ):
                pos.append(3)
    else:
        if len(columns) not in (3, 4):
            raise ValueError(
                f"columns must be (user, item, rating) or (user, item, rating, timestamp), got "
                f"{columns!r}"
            )
        pos = []
        for c in columns:
            if isinstance(c, str):
                if not header:
                    raise ValueError(f"column name {c!r} needs a header line (header=True)")
                if c.lower() not in names:
                    raise ValueError(f"{p}: the header {first} has no column {c!r}")
                pos.append(names.index(c.lower()))
            elif isinstance(c, int | np.integer) and not isinstance(c, bool):
                if not 0 <= int(c) < n_fields:
                    raise ValueError(
                        f"column {c} is out of range: the first line has {n_fields} fields"
                    )
                pos.append(int(c))
            else:
                raise TypeError(f"columns entries must be ints or names, got {c!r}")
        if len(set(pos)) != len(pos):
            raise ValueError(f"columns must name distinct fields, got {columns!r}")
    user_str = item_str = id_type == "str"
    if id_type == "auto":
        sample = [_split(ln, delim) for ln in data_lines[:200]]
        sample = [s for s in sample if len(s) == n_fields]

        def _strip(tok: str) -> str:
            return tok.strip().strip('"')

        user_str = any(not _looks_int(_strip(s[pos[0]])) for s in sample)
        item_str = any(not _looks_int(_strip(s[pos[1]])) for s in sample)
    spec = Spec(
        delim, n_fields, pos[0], pos[1], pos[2], pos[3] if len(pos) == 4 else -1,
        user_str=user_str, item_str=item_str, comment=cbyte,
        scale=resolve_scale(rating_scale, None),
    )  # fmt: skip

    def skip(raw: bytes) -> None:
        return None

    engine, _ = text_load(
        [p], spec, on_bad_line=on_bad_line, n_threads=n_threads, progress=progress, info=info,
        member=member, header=skip if header else None,
    )  # fmt: skip
    return engine_to_ratings(engine, duplicates, p)
