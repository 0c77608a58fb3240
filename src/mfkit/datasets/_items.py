"""The item table of a public data set (movie ids, titles, genres) and what a data-set call
returns (:class:`Dataset`)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from mfkit.data import Ratings

__all__ = ["Dataset", "ItemTable", "load_items", "parse_items", "save_items"]


@dataclass(frozen=True, eq=False)
class ItemTable:
    """Movie metadata, one row per movie of the archive's item file, sorted by id.

    ``item``: the original movie ids (int64; the ids ``Ratings.item_ids`` and
    ``model.recommend(..., as_frame=True)`` use, so the table joins on them); ``title``: the
    title as the file gives it (MovieLens appends the year, e.g. ``'Toy Story (1995)'``);
    ``genres``: the genres joined by ``'|'`` (``''`` when the file lists none).
    """

    item: np.ndarray
    title: np.ndarray
    genres: np.ndarray

    def __len__(self) -> int:
        return len(self.item)

    def __repr__(self) -> str:
        return f"ItemTable({len(self)} items)"

    def titles(self, ids: Any) -> np.ndarray:
        """The titles of the movies ``ids`` (original ids); an id not in the table is a
        ``KeyError`` naming it."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.item, ids)
        pos = np.minimum(pos, max(len(self.item) - 1, 0))
        bad = self.item[pos] != ids if len(self.item) else np.ones(ids.shape, bool)
        if np.any(bad):
            raise KeyError(f"item id {ids[bad].ravel()[0]} is not in the item table")
        out: np.ndarray = self.title[pos]
        return out

    def to_frame(self) -> Any:
        """A pandas DataFrame with columns ``item``, ``title``, ``genres`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("ItemTable.to_frame needs pandas: pip install pandas") from None
        return pd.DataFrame(
            {
                "item": self.item,
                "title": self.title.astype(object),
                "genres": self.genres.astype(object),
            }
        )


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded public data set.

    ``name``: e.g. ``'ml-100k'``; ``ratings``: the :class:`mfkit.Ratings` (original user and
    movie ids kept, timestamps in seconds since 1970 UTC); ``items``: the :class:`ItemTable`
    (None when the source has no item file); ``source``: the archive or folder read;
    ``terms``: the data set's terms of use, in short.
    """

    name: str
    ratings: Ratings
    items: ItemTable | None
    source: str
    terms: str

    def __repr__(self) -> str:
        items = f", {len(self.items)} items in the item table" if self.items is not None else ""
        return f"Dataset({self.name!r}: {self.ratings!r}{items})"


def _decode(raw: bytes) -> str:
    # the older GroupLens files are Latin-1, the newer UTF-8
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _table(rows: list[tuple[int, str, str]]) -> ItemTable:
    rows.sort(key=lambda r: r[0])
    item = np.array([r[0] for r in rows], dtype=np.int64)
    if len(item) > 1 and np.any(item[1:] == item[:-1]):
        dup = int(item[1:][item[1:] == item[:-1]][0])
        raise ValueError(f"the item file lists movie {dup} twice")
    title = np.array([r[1] for r in rows], dtype=np.str_)
    genres = np.array([r[2] for r in rows], dtype=np.str_)
    return ItemTable(item, title, genres)


def _parse_100k(text: str, genre_text: str | None, where: str) -> ItemTable:
    names: list[str] = []
    if genre_text is not None:
        for line in genre_text.splitlines():
            if line.strip():
                name = line.rpartition("|")[0]
                names.append(name)
    rows = []
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        f = line.split("|")
        if len(f) < 5:
            raise ValueError(f"{where}, line {k}: expected 'id|title|date|video|url|genres...'")
        flags = f[5:]
        genres = [names[j] if j < len(names) else str(j) for j, v in enumerate(flags) if v == "1"]
        rows.append((int(f[0]), f[1], "|".join(genres)))
    return _table(rows)


def _parse_dat(text: str, where: str) -> ItemTable:
    rows = []
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        f = line.split("::")
        if len(f) != 3:
            raise ValueError(f"{where}, line {k}: expected 'MovieID::Title::Genres'")
        rows.append((int(f[0]), f[1], f[2]))
    return _table(rows)


def _parse_csv(text: str, where: str) -> ItemTable:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    try:
        ci, ct, cg = header.index("movieid"), header.index("title"), header.index("genres")
    except ValueError:
        raise ValueError(f"{where}: the header is not 'movieId,title,genres'") from None
    rows = []
    for k, f in enumerate(reader, 2):
        if not f:
            continue
        if len(f) != len(header):
            raise ValueError(f"{where}, line {k}: expected {len(header)} fields, got {len(f)}")
        genres = "" if f[cg] == "(no genres listed)" else f[cg]
        rows.append((int(f[ci]), f[ct], genres))
    return _table(rows)


def _parse_netflix_titles(text: str, where: str) -> ItemTable:
    rows = []
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        f = line.split(",", 2)  # titles may hold commas; the year may be 'NULL'
        if len(f) != 3:
            raise ValueError(f"{where}, line {k}: expected 'MovieID,YearOfRelease,Title'")
        year = f[1].strip()
        title = f[2] + (f" ({year})" if year.isdigit() else "")
        rows.append((int(f[0]), title, ""))
    return _table(rows)


def parse_items(layout: str, raw: bytes, where: str, genre_raw: bytes | None = None) -> ItemTable:
    """Parse an item file: ``layout`` ``'100k'`` (``u.item``, with ``u.genre``'s names),
    ``'dat'`` (``movies.dat``), ``'csv'`` (``movies.csv``) or ``'netflix'``
    (``movie_titles.txt``; the year is appended to the title as MovieLens does)."""
    text = _decode(raw)
    if layout == "100k":
        return _parse_100k(text, None if genre_raw is None else _decode(genre_raw), where)
    if layout == "dat":
        return _parse_dat(text, where)
    if layout == "csv":
        return _parse_csv(text, where)
    if layout == "netflix":
        return _parse_netflix_titles(text, where)
    raise ValueError(f"unknown item layout {layout!r}")


def save_items(path: str, table: ItemTable) -> None:
    """Write the table as an ``.npz`` of three plain arrays (no pickle)."""
    with open(path, "wb") as fh:
        np.savez(fh, item=table.item, title=table.title, genres=table.genres)


def load_items(path: str) -> ItemTable:
    with np.load(path, allow_pickle=False) as z:
        return ItemTable(z["item"], z["title"], z["genres"])
