"""Real public data sets in one call: MovieLens (downloaded, verified, parsed once and cached)
and a local copy of the Netflix Prize files (parsed once and cached)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from typing import Any

from mfkit.data import Ratings
from mfkit.datasets._fetch import check_options, fetch
from mfkit.datasets._items import Dataset, ItemTable, load_items, parse_items, save_items
from mfkit.datasets._registry import ARCHIVES, TERMS, Archive, resolve_name
from mfkit.datasets._registry import data_home as resolve_home
from mfkit.io import load_movielens_100k, load_movielens_csv, load_movielens_dat, load_netflix
from mfkit.io._netflix import _netflix_files

__all__ = ["movielens", "netflix"]

_CACHE_VERSION = 1
_NETFLIX_TERMS = (
    "Netflix Prize data: released by Netflix for the Netflix Prize under its rules (use for "
    "research, no redistribution); Netflix no longer distributes it. mfkit reads a copy you "
    "already have and never ships the data."
)


# --------------------------------------------------------------------------- parse cache
def _read_cache(folder: str, key: str) -> tuple[Ratings, ItemTable | None] | None:
    """The cached parse in ``folder`` if it was made from the source ``key`` by this cache
    version, else None (a missing, stale or damaged cache is rebuilt, never an error)."""
    try:
        with open(os.path.join(folder, "source.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
        if meta.get("version") != _CACHE_VERSION or meta.get("key") != key:
            return None
        ratings = Ratings.load(os.path.join(folder, "ratings"))
        items_path = os.path.join(folder, "items.npz")
        items = load_items(items_path) if meta.get("items") else None
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return ratings, items


def _write_cache(
    folder: str, key: str, source: str, ratings: Ratings, items: ItemTable | None
) -> None:
    """Write the parse as a folder built under a temporary name, then renamed into place
    (a reader sees the old cache or the complete new one). Best effort: a folder that cannot
    be written (read-only, full) just means the next call parses again."""
    parent = os.path.dirname(folder)
    try:
        tmp = tempfile.mkdtemp(prefix="." + os.path.basename(folder) + "-", dir=parent)
    except OSError:
        return
    old = None
    try:
        ratings.save(os.path.join(tmp, "ratings"))
        if items is not None:
            save_items(os.path.join(tmp, "items.npz"), items)
        meta = {
            "version": _CACHE_VERSION,
            "key": key,
            "source": source,
            "items": items is not None,
        }
        with open(os.path.join(tmp, "source.json"), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=1)
        if os.path.isdir(folder):
            old = tempfile.mkdtemp(prefix="." + os.path.basename(folder) + "-old-", dir=parent)
            os.replace(folder, os.path.join(old, "x"))
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- MovieLens
def _load_archive(
    path: str, archive: Archive, n_threads: int | None, progress: bool
) -> tuple[Ratings, Any]:
    loaders = {"100k": load_movielens_100k, "dat": load_movielens_dat, "csv": load_movielens_csv}
    ratings = loaders[archive.layout](
        path, member=archive.ratings, n_threads=n_threads, progress=progress
    )
    items = None
    if archive.items is not None:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if archive.items in names:
                genre_raw = None
                genre_member = os.path.dirname(archive.items) + "/u.genre"
                if archive.layout == "100k" and genre_member in names:
                    genre_raw = zf.read(genre_member)
                items = parse_items(
                    archive.layout, zf.read(archive.items), f"{path}[{archive.items}]", genre_raw
                )
    return ratings, items


def movielens(
    name: str,
    data_home: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    timeout: float | tuple[float, float] | None = None,
    retries: int = 1,
    progress: bool | None = None,
    n_threads: int | None = None,
) -> Dataset:
    """A MovieLens data set from GroupLens, downloaded on first use and cached.

    The official archive (e.g. ``ml-100k.zip``, under its official name) is downloaded from
    files.grouplens.org into ``data_home``, checked against its pinned size and SHA-256 (and
    GroupLens's MD5) before use, and parsed with mfkit's loaders; the parse is cached next to
    it (``ml-100k.mfkit/``, memory-mapped), so the second call takes milliseconds and needs
    neither the network nor the archive.

    Parameters
    ----------
    name : str
        ``'100k'``, ``'1m'``, ``'10m'``, ``'20m'``, ``'25m'``, ``'32m'`` or
        ``'latest-small'`` (also as ``'ml-100k'`` etc.).
    data_home : path, optional
        The folder for archives and caches (default: ``$MFKIT_DATA``, else the user cache
        folder, ``~/.cache/mfkit`` on Linux).
    download : bool, default True
        Download the archive when it is not in ``data_home``. ``False``: never touch the
        network; a missing archive is a :class:`~mfkit.exceptions.DatasetDownloadError`
        saying where to put it.
    timeout : float or (float, float), optional
        Seconds to connect and seconds without data before a download is abandoned
        (default 10 and 30).
    retries : int, default 1
        Further download attempts after a failed one.
    progress : bool or None, default None
        Progress on stderr: of the download (None: for archives of 10 MB or more) and of the
        first parse (unless False: for parses that take more than a second).
    n_threads : int, optional
        Threads for the parse (None: all usable cores).

    Returns
    -------
    Dataset
        ``.ratings`` (:class:`mfkit.Ratings` with the original user and movie ids and the
        timestamps) and ``.items`` (an :class:`ItemTable` of titles and genres).

    Raises
    ------
    DatasetDownloadError
        The archive is missing and could not be downloaded (``download=False``, no network,
        a timeout, an HTTP error, pooch not installed). Nothing is left at the final path.
    ChecksumError
        The archive on disk, or the downloaded one, is not the official file. A file that was
        on disk is left in place for you to inspect; a downloaded one is discarded.

    Notes
    -----
    Downloading needs the optional package pooch (``pip install 'mfkit[datasets]'``); an
    archive placed by hand in ``data_home`` is read without it. The data are GroupLens's and
    are used under their terms (``mfkit.datasets.TERMS``): research use, no redistribution,
    cite Harper and Konstan (2015). mfkit never ships them.
    """
    key = resolve_name(name)
    check_options(download, timeout, retries, progress)  # also when the cache answers
    archive = ARCHIVES[key]
    home = resolve_home(data_home)
    stem = archive.filename.removesuffix(".zip")
    cache = os.path.join(home, stem + ".mfkit")
    hit = _read_cache(cache, archive.sha256.lower())
    if hit is not None:
        return Dataset(stem, hit[0], hit[1], os.path.join(home, archive.filename), TERMS)
    path = fetch(
        archive, home, download=download, timeout=timeout, retries=retries, progress=progress
    )
    ratings, items = _load_archive(path, archive, n_threads, progress is not False)
    _write_cache(cache, archive.sha256.lower(), path, ratings, items)
    return Dataset(stem, ratings, items, path, TERMS)


# --------------------------------------------------------------------------- Netflix
def _netflix_titles(paths: list[str]) -> str | None:
    for p in paths:
        base = p if os.path.isdir(p) else os.path.dirname(p)
        for folder in (base, os.path.dirname(base)):
            for fname in ("movie_titles.txt", "movie_titles.csv"):
                cand = os.path.join(folder, fname)
                if os.path.isfile(cand):
                    return cand
    return None


def netflix(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    data_home: str | os.PathLike[str] | None = None,
    *,
    n_threads: int | None = None,
    progress: bool = False,
) -> Dataset:
    """The Netflix Prize training data from a local copy, parsed once and cached.

    Netflix no longer distributes these files, so mfkit cannot download them: ``paths`` is
    your copy, in any layout :func:`mfkit.io.load_netflix` reads (``combined_data_N.txt``
    files, a folder holding them, or the ``training_set/`` folder of ``mv_*.txt`` files).
    A ``movie_titles.txt`` (or Kaggle's ``movie_titles.csv``) next to them, or one folder
    up, becomes the item table (title with the year appended, no genres).

    The parse is cached in ``data_home`` (default as for :func:`movielens`) under a name
    derived from the files' paths, sizes and modification times: the second call opens it
    memory-mapped in milliseconds, and changing a file makes the next call parse again.
    """
    files, _ = _netflix_files(paths)
    if isinstance(paths, str | os.PathLike):
        plist = [os.fspath(paths)]
    else:
        plist = [os.fspath(p) for p in paths]
    titles = _netflix_titles(plist)
    h = hashlib.sha256()
    for f in [*files, *([titles] if titles else [])]:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    key = h.hexdigest()
    home = resolve_home(data_home)
    cache = os.path.join(home, f"netflix-{key[:16]}.mfkit")
    source = plist[0] if len(plist) == 1 else ", ".join(plist)
    hit = _read_cache(cache, key)
    if hit is not None:
        return Dataset("netflix", hit[0], hit[1], source, _NETFLIX_TERMS)
    ratings = load_netflix(paths, n_threads=n_threads, progress=progress)
    items = None
    if titles is not None:
        with open(titles, "rb") as fh:
            items = parse_items("netflix", fh.read(), titles)
    if os.path.isdir(home) or _makedirs(home):
        _write_cache(cache, key, source, ratings, items)
    return Dataset("netflix", ratings, items, source, _NETFLIX_TERMS)


def _makedirs(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return True
