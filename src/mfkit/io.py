"""Reading rating files: MovieLens, Netflix Prize, delimited text, Parquet/Arrow, binary cache.

Every loader returns a :class:`mfkit.Ratings` with the original user and item ids kept
(``user_ids`` / ``item_ids``, sorted, mapped to contiguous indices) and, when the file has
them, the timestamps (``timestamps``, int64 seconds since 1970-01-01 UTC; Netflix dates are
taken at midnight UTC).

================================  =====================================================
format                            loader
================================  =====================================================
``movielens-100k`` (``u.data``)   :func:`load_movielens_100k` (tab: user item rating time)
``movielens-dat`` (1M, 10M)       :func:`load_movielens_dat` (``user::item::rating::time``)
``movielens-csv`` (20M..32M)      :func:`load_movielens_csv` (``userId,movieId,rating,...``)
``netflix``                       :func:`load_netflix` (``combined_data_N.txt``, several
                                  files, a folder, or the ``training_set/mv_*.txt`` layout)
``netflix-pairs``                 :func:`load_netflix_pairs` (``probe.txt``,
                                  ``qualifying.txt``: (user, movie) pairs, not ratings)
``delimited``                     :func:`load_delimited` (any delimiter, columns by
                                  position or header name, comments, string ids)
``parquet`` / ``arrow``           :func:`load_parquet` / :func:`load_arrow` (needs pyarrow)
``cache``                         :meth:`mfkit.Ratings.load` (folder written by
                                  :meth:`mfkit.Ratings.save`)
================================  =====================================================

:func:`load_ratings` picks the format from the file name and its first lines and says what it
chose. Text may be compressed (``.gz``, ``.bz2``, ``.xz``, ``.zip``; recognised by content).

Text is parsed by a compiled tokenizer (``mfkit._tokenize``), with no Python object per line.
Plain files are memory-mapped and parsed in windows of up to 512 MiB (compressed input is
decompressed in blocks of 64 MiB); each window is split across threads at line boundaries.
Strictly formatted lines take a fast path; any other line is parsed by the general parser,
which decides every value and every error. Integer ids are kept in int32 columns (a file with
an id beyond int32 is read again with int64 ones) and mapped through a lookup table when
their range allows (``mfkit._assemble``); other ids (strings, wide integer ranges) by a sort.
The CSR container is built by a stable counting sort. A file must not change while it is
read: one that shrinks between windows is refused, one cut short inside a window can crash
the process (as with any memory map).

**Bad lines.** A line with the wrong number of fields, a non-numeric id, rating or timestamp,
a rating outside ``rating_scale`` or beyond float32, or (Netflix) a malformed ``MovieID:``
line is a bad line.
``on_bad_line='error'`` (default) raises :class:`RatingFileError` naming the file, the line
number and the line; ``'skip'`` drops such lines and counts them (pass ``info=LoadInfo()`` to
read the counts); ``'warn'`` does the same and emits one :class:`BadLineWarning` listing the
count and the first bad lines. Blank lines (only whitespace) and comment lines (when a
``comment`` character is given) carry no data and are counted in :class:`LoadInfo`, never
reported. An empty file, or one with no rating in it, is an error.
"""

from __future__ import annotations

import bisect
import bz2
import copy
import dataclasses
import gzip
import json
import logging
import lzma
import mmap
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from typing import IO, Any, Literal

import numpy as np

from mfkit import _tokenize
from mfkit._validation import resolve_n_threads
from mfkit.ratings import Duplicates, Ratings, assemble_csr, map_ids_to_indices

__all__ = [
    "FORMATS",
    "BadLineWarning",
    "LoadInfo",
    "NetflixPairs",
    "RatingFileError",
    "load_arrow",
    "load_cache",
    "load_delimited",
    "load_movielens_100k",
    "load_movielens_csv",
    "load_movielens_dat",
    "load_netflix",
    "load_netflix_pairs",
    "load_parquet",
    "load_ratings",
    "save_cache",
    "sniff_format",
]

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

_BLOCK = 64 << 20  # bytes parsed per block
_MAP_WINDOW = 512 << 20  # bytes of a memory-mapped file parsed per window
_PARALLEL_MIN = 1 << 20  # blocks smaller than this are parsed by one thread
_FAST_PATH = True  # strictly formatted lines take the tokenizer's fast path (tests turn it off)
_CHUNKS_PER_THREAD = 4  # chunks per thread in a block (balances uneven lines)
_MOVIELENS_SCALE = (0.5, 5.0)
_NETFLIX_SCALE = (1.0, 5.0)

_REASONS = {
    1: "too few fields",
    2: "too many fields",
    3: "the user id is not an integer",
    4: "the item id is not an integer",
    5: "the rating is not a number",
    6: "the rating is outside the rating scale",
    7: "the timestamp/date is not valid",
    8: "a malformed 'MovieID:' line",
    9: "an empty id",
    11: "the rating overflows float32 (rescale the ratings)",
}
_STR_ID_HINT = {
    3: " (string user ids? pass id_type='str')",
    4: " (string item ids? pass id_type='str')",
}


class RatingFileError(ValueError):
    """A rating file could not be read; names the file and, for a bad line, its number and
    its text."""

    def __init__(
        self, path: str, message: str, line_number: int | None = None, line: str | None = None
    ) -> None:
        self.path = path
        self.line_number = line_number
        self.line = line
        self.reason = message
        where = f"{path}, line {line_number}" if line_number is not None else path
        text = f"{where}: {message}"
        if line is not None:
            text += f"\n    {line!r}"
        super().__init__(text)


class BadLineWarning(UserWarning):
    """Emitted once per load with ``on_bad_line='warn'`` when lines were skipped."""


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


# --------------------------------------------------------------------------- sources
_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
}
_KNOWN_MEMBERS = ("ratings.csv", "ratings.dat", "u.data")


def _compression(path: str) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(8)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def _zip_member(zf: zipfile.ZipFile, path: str, member: str | None) -> str:
    names = [n for n in zf.namelist() if not n.endswith("/")]
    if member is not None:
        if member not in names:
            raise ValueError(f"{path}: the zip archive has no member {member!r}; it has {names}")
        return member
    if len(names) == 1:
        return names[0]
    known = [n for n in names if os.path.basename(n) in _KNOWN_MEMBERS]
    if len(known) == 1:
        return known[0]
    raise ValueError(
        f"{path}: the zip archive holds {len(names)} files ({', '.join(names[:8])}"
        f"{', ...' if len(names) > 8 else ''}); name the one to read with member="
    )


class _Source:
    """A readable byte stream over a plain or compressed file, with progress positions."""

    def __init__(self, path: PathLike, member: str | None = None) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no such rating file: {self.path!r}")
        if os.path.isdir(self.path):
            raise IsADirectoryError(f"{self.path!r} is a folder, not a rating file")
        self.size = os.path.getsize(self.path)
        self.kind = _compression(self.path)
        self.raw: IO[bytes] = open(self.path, "rb", buffering=0)  # noqa: SIM115
        self.stream: Any
        self._zip: zipfile.ZipFile | None = None
        self.name = self.path
        try:
            if self.kind == "gzip":
                self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb")
            elif self.kind == "bz2":
                self.stream = bz2.BZ2File(self.raw, mode="rb")
            elif self.kind == "xz":
                self.stream = lzma.LZMAFile(self.raw, mode="rb")
            elif self.kind == "zip":
                self._zip = zipfile.ZipFile(self.raw)
                name = _zip_member(self._zip, self.path, member)
                self.name = f"{self.path}[{name}]"
                self.stream = self._zip.open(name)
            else:
                self.stream = self.raw
        except Exception:
            self.close()
            raise

    @property
    def inner_name(self) -> str:
        """The file name that says what the content is (the zip member, or the name without
        a compression suffix)."""
        if self._zip is not None:
            return os.path.basename(self.name[len(self.path) + 1 : -1])
        base = os.path.basename(self.path)
        for ext in (".gz", ".bz2", ".xz"):
            if self.kind is not None and base.lower().endswith(ext):
                return base[: -len(ext)]
        return base

    def position(self) -> int:
        try:
            return int(self.raw.tell())
        except (OSError, ValueError):
            return 0

    def mapped(self) -> mmap.mmap | None:
        """A read-only memory map of a plain, non-empty regular file (None otherwise: the
        file is then read block by block)."""
        if self.kind is not None or self.size == 0 or not os.path.isfile(self.path):
            return None
        try:
            mm = mmap.mmap(self.raw.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            mm.madvise(mmap.MADV_SEQUENTIAL)
        return mm

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` as far as the stream allows; 0 only at the end."""
        got = 0
        n = len(view)
        while got < n:
            k = self.stream.readinto(view[got:])
            if not k:
                break
            got += k
        return got

    def head(self, n: int = 65536) -> bytes:
        data = bytearray(n)
        k = self.readinto(memoryview(data))
        return bytes(data[:k])

    def close(self) -> None:
        for obj in (self.stream if hasattr(self, "stream") else None, self._zip, self.raw):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # closing a half-opened archive must not hide the cause
                    pass

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- progress
class _Progress:
    """Bytes read, rate and ETA on stderr, at most twice a second."""

    def __init__(self, enabled: bool | Callable[[int, int, float], None], total: int) -> None:
        self.cb = enabled if callable(enabled) else None
        self.enabled = bool(enabled)
        self.total = total
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def update(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - self.t0
        if self.cb is not None:
            self.cb(done, self.total, elapsed)
            return
        if final and not self.shown:
            return
        if not final and now - self.last < 0.5:
            return
        if not final and not self.shown and elapsed < 1.0:
            return  # small files: stay quiet
        self.last = now
        self.shown = True
        rate = done / max(elapsed, 1e-9)
        msg = f"\rreading: {done / 1e6:,.0f}/{self.total / 1e6:,.0f} MB  {rate / 1e6:,.0f} MB/s"
        if not final and rate > 0 and self.total > done:
            msg += f"  ETA {(self.total - done) / rate:,.0f}s "
        else:
            msg += f"  {elapsed:,.1f}s      "
        sys.stderr.write(msg + ("\n" if final else ""))
        sys.stderr.flush()


# --------------------------------------------------------------------------- text engine
@dataclasses.dataclass
class _Spec:
    delimiter: bytes
    n_fields: int
    col_user: int
    col_item: int
    col_rating: int
    col_time: int = -1
    user_str: bool = False
    item_str: bool = False
    time_kind: int = 0  # 0: integer, 1: YYYY-MM-DD
    comment: int = -1
    netflix: bool = False
    scale: tuple[float, float] | None = None

    def as_dict(self, skip_bad: bool) -> dict[str, Any]:
        lo, hi = self.scale if self.scale is not None else (0.0, 0.0)
        return {
            "delimiter": self.delimiter,
            "n_fields": self.n_fields,
            "col_user": self.col_user,
            "col_item": self.col_item,
            "col_rating": self.col_rating,
            "col_time": self.col_time,
            "user_str": self.user_str,
            "item_str": self.item_str,
            "time_kind": self.time_kind,
            "comment": self.comment,
            "netflix": self.netflix,
            "check_scale": self.scale is not None,
            "lo": float(lo),
            "hi": float(hi),
            "skip_bad": skip_bad,
            "fast": _FAST_PATH,
        }


def _decode(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", errors="replace")


def _line_at(buf: bytearray | bytes, off: int, end: int) -> bytes:
    stop = buf.find(b"\n", off, end)
    return bytes(buf[off : end if stop < 0 else stop])


def _gather_strings(raw: Any, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The byte strings raw[start[k] : start[k] + length[k]] as a fixed-width 'S' array."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    n = len(start)
    width = int(length.max()) if n else 1
    out = np.empty(n, dtype=f"S{width}")
    step = max(1, (1 << 24) // max(width, 1))
    cols = np.arange(width, dtype=np.int64)
    for a in range(0, n, step):
        b = min(n, a + step)
        idx = start[a:b, None] + cols[None, :]
        mask = cols[None, :] < length[a:b, None]
        mat = np.where(mask, buf[np.minimum(idx, len(buf) - 1)], 0).astype(np.uint8)
        out[a:b] = mat.view(f"S{width}").ravel()
    return out


class _WideIds(Exception):
    """An integer id does not fit the int32 id columns: the load starts over with int64."""


class _Engine:
    """Parses blocks of whole lines into growing columns and keeps the counts."""

    def __init__(
        self,
        spec: _Spec,
        on_bad_line: OnBadLine,
        n_threads: int,
        info: LoadInfo,
        narrow: bool = True,
    ) -> None:
        if on_bad_line not in ("error", "skip", "warn"):
            raise ValueError(f"on_bad_line must be 'error', 'skip' or 'warn', got {on_bad_line!r}")
        self.spec = spec
        self.spec_dict = spec.as_dict(on_bad_line != "error")
        self.on_bad_line = on_bad_line
        self.n_threads = n_threads
        self.info = info
        self.n = 0
        self.cols: dict[str, np.ndarray] = {}
        self.user_strs: list[np.ndarray] = []
        self.item_strs: list[np.ndarray] = []
        self.urange = [0, -1]
        self.irange = [0, -1]
        self.carry = -1
        self.counts = np.zeros(16, dtype=np.int64)
        self.progress: _Progress | None = None
        # integer ids go to int32 columns unless one does not fit (then: _WideIds)
        self.narrow = narrow
        self._alloc(1024)

    def respec(self) -> None:
        """The spec changed (a header named the columns): rebuild what depends on it."""
        if self.n:
            raise RuntimeError("respec after rows were parsed")
        self.spec_dict = self.spec.as_dict(self.on_bad_line != "error")
        self.cols = {}
        self._alloc(self.cap)

    def _names(self) -> dict[str, Any]:
        s = self.spec
        names: dict[str, Any] = {}
        idt = np.int32 if self.narrow else np.int64
        if s.col_user >= 0:
            names.update({"ustart": np.int64, "ulen": np.int32} if s.user_str else {"user": idt})
        if s.col_item >= 0 or s.netflix:
            names.update({"istart": np.int64, "ilen": np.int32} if s.item_str else {"item": idt})
        if s.col_rating >= 0:
            names["rating"] = np.float32
        if s.col_time >= 0:
            names["time"] = np.int64
        return names

    def _alloc(self, cap: int) -> None:
        new = {}
        for name, dt in self._names().items():
            a = np.empty(cap, dtype=dt)
            old = self.cols.get(name)
            if old is not None and self.n:
                a[: self.n] = old[: self.n]
            new[name] = a
        self.cols = new
        self.cap = cap

    def reserve(self, rows: int, done_frac: float) -> None:
        need = self.n + rows
        if need <= self.cap:
            return
        if done_frac >= 1:
            guess = need
        elif done_frac > 0:
            guess = int(need / done_frac * 1.02) + 1024
        else:
            guess = int(need * 1.5) + 1024
        self._alloc(max(need, guess))

    def parse(
        self,
        buf: bytearray | bytes,
        start: int,
        end: int,
        locate: Callable[[int], tuple[str, int]],
        done_frac: float,
        last_has_newline: bool = True,
    ) -> int:
        """Parse buf[start:end] (whole lines); return the number of lines seen."""
        if end <= start:
            return 0
        view = np.frombuffer(buf, dtype=np.uint8)
        n_chunks = _CHUNKS_PER_THREAD * self.n_threads if end - start >= _PARALLEL_MIN else 1
        cuts = _tokenize.split_points(view, start, end, n_chunks)
        caps = _tokenize.count_chunks(view, cuts, self.n_threads)
        self.reserve(sum(caps), done_frac)
        res = _tokenize.parse_block(
            view, cuts, caps, self.spec_dict, self.cols, self.n, self.n_threads
        )
        # no view of buf may outlive this call: an error's traceback would keep a memory
        # map (and its file) open
        del view
        if any(ch["wide"] for ch in res):
            raise _WideIds
        # the first error in file order: a bad line (error mode), or Netflix rating lines
        # before the file's first 'MovieID:' line (always)
        errors = [(ch["err_off"], ch["err_code"]) for ch in res if ch["err_off"] >= 0]
        # Netflix: the movie of each chunk's rows before its first header (-1: none yet)
        lead_items = []
        for ch in res if self.spec.netflix else ():
            if ch["lead_rows"] and self.carry < 0:
                errors.append((ch["lead_off"], -1))
            lead_items.append(self.carry)
            if ch["last_item"] >= 0:
                self.carry = ch["last_item"]
        if errors:
            off, code = min(errors)
            path, lineno = locate(off)
            text = _line_at(buf, off, end)
            if code < 0:
                msg = (
                    "a rating line before the first 'MovieID:' line (not a Netflix training file?)"
                )
            else:
                msg = self._reason(code, text)
                if not last_has_newline and buf.find(b"\n", off, end) < 0:
                    msg += " (the last line has no newline: is the file truncated?)"
            raise RatingFileError(path, msg, lineno, _decode(text))
        # Netflix: rows before a chunk's first header belong to the previous movie
        for ch, item in zip(res, lead_items, strict=False):
            if ch["lead_rows"]:
                if self.narrow and not -(2**31) <= item < 2**31:
                    raise _WideIds
                self.cols["item"][ch["row0"] : ch["row0"] + ch["lead_rows"]] = item
        # glue the chunks' rows together
        dst = self.n
        for ch in res:
            if ch["row0"] != dst:
                for a in self.cols.values():
                    _tokenize.move_rows(a, ch["row0"], dst, ch["n_rows"])
            dst += ch["n_rows"]
        first, self.n = self.n, dst
        # counts
        info = self.info
        n_lines = 0
        for ch in res:
            n_lines += ch["n_lines"]
            info.comments += ch["n_comment"]
            info.blank += ch["n_blank"]
            info.headers += ch["n_header"]
            self.counts[: len(ch["counts"])] += ch["counts"]
            for off, code in ch["bad"]:
                if len(info.bad_lines) < 20:
                    path, lineno = locate(off)
                    text = _line_at(buf, off, end)
                    info.bad_lines.append((path, lineno, self._reason(code, text), _decode(text)))
            if ch["n_rows"]:
                if not self.spec.user_str:
                    self._widen(self.urange, ch["umin"], ch["umax"])
                if not self.spec.item_str and (ch["imax"] >= ch["imin"]):
                    self._widen(self.irange, ch["imin"], ch["imax"])
            elif self.spec.netflix and ch["imax"] >= ch["imin"]:
                self._widen(self.irange, ch["imin"], ch["imax"])
        if self.spec.user_str and self.n > first:
            self.user_strs.append(
                _gather_strings(
                    buf, self.cols["ustart"][first : self.n], self.cols["ulen"][first : self.n]
                )
            )
        if self.spec.item_str and self.n > first:
            self.item_strs.append(
                _gather_strings(
                    buf, self.cols["istart"][first : self.n], self.cols["ilen"][first : self.n]
                )
            )
        info.lines += n_lines
        return int(n_lines)

    @staticmethod
    def _widen(rng: list[int], lo: int, hi: int) -> None:
        if rng[1] < rng[0]:
            rng[0], rng[1] = lo, hi
        else:
            rng[0] = min(rng[0], lo)
            rng[1] = max(rng[1], hi)

    def _reason(self, code: int, text: bytes) -> str:
        msg = _REASONS.get(code, f"unreadable line (code {code})")
        if code in (1, 2):
            found = _count_fields(text, self.spec.delimiter)
            msg += f": expected {self.spec.n_fields}, found {found}"
        if code == 6 and self.spec.scale is not None:
            lo, hi = self.spec.scale
            msg = (
                f"the rating is outside the rating scale [{lo:g}, {hi:g}] "
                f"(rating_scale=None accepts any rating)"
            )
        if code in _STR_ID_HINT and not self.spec.netflix:
            msg += _STR_ID_HINT[code]
        return msg

    def finish(self, name: str) -> None:
        """Report skipped lines (warn/skip) and refuse a load with no rating."""
        info = self.info
        by_reason = {}
        for code, count in enumerate(self.counts.tolist()):
            if count:
                by_reason[_REASONS.get(code, str(code))] = int(count)
        skipped = int(self.counts.sum())
        info.skipped += skipped
        for k, v in by_reason.items():
            info.skipped_by_reason[k] = info.skipped_by_reason.get(k, 0) + v
        info.ratings = self.n
        if skipped:
            first = "; ".join(
                f"{p}, line {ln}: {why}: {t!r}" for p, ln, why, t in info.bad_lines[:3]
            )
            msg = f"{name}: skipped {skipped} bad line(s) ({by_reason}); first: {first}"
            if self.on_bad_line == "warn":
                warnings.warn(msg, BadLineWarning, stacklevel=4)
            else:
                logger.info(msg)

    def column(self, name: str) -> np.ndarray:
        a = self.cols[name]
        if len(a) > self.n * 1.05 + 1024:
            return a[: self.n].copy()
        return a[: self.n]


def _count_fields(text: bytes, delimiter: bytes) -> int:
    text = text.rstrip(b"\r\n")
    if not delimiter:
        return len(text.split())
    return len(text.split(delimiter))


def _find_header(buf: bytearray, fill: int, eof: bool, comment: int) -> tuple[int, int] | None:
    """(offset just after the header line, lines before it) for the first line that is
    neither blank nor a comment; None if the buffer does not hold it yet."""
    pos = 0
    skipped = 0
    while pos < fill:
        nl = buf.find(b"\n", pos, fill)
        if nl < 0 and not eof:
            return None
        stop = fill if nl < 0 else nl
        line = bytes(buf[pos:stop])
        if line.strip() and not (comment >= 0 and line[:1] == bytes([comment])):
            return (fill if nl < 0 else nl + 1), skipped
        skipped += 1
        pos = stop + 1
    return fill, skipped


def _handle_header(
    engine: _Engine,
    name: str,
    buf: Any,
    fill: int,
    eof: bool,
    header: Callable[[bytes], None],
) -> tuple[int, int] | None:
    """Read the header line at the top of buf[:fill]; (the offset after it, the lines up to
    and including it), or None if the buffer does not hold it yet."""
    found = _find_header(buf, fill, eof, engine.spec.comment)
    if found is None:
        return None
    start, skipped = found
    lines = bytes(buf[:start]).split(b"\n")
    if skipped >= len(lines) or not lines[skipped].strip():
        raise RatingFileError(
            name,
            f"no header line and no ratings: the file's {skipped} line(s) are blank or comments",
        )
    # lines before the header are blank or comments
    for ln in lines[:skipped]:
        if ln.strip():
            engine.info.comments += 1
        else:
            engine.info.blank += 1
    engine.info.lines += skipped + 1
    engine.info.headers += 1
    header(lines[skipped].rstrip(b"\r"))
    engine.respec()
    return start, skipped + 1


def _parse_window(
    engine: _Engine,
    src: _Source,
    buf: Any,
    start: int,
    end: int,
    base_line: int,
    progress: _Progress,
    done_before: int,
    pos: int,
) -> int:
    """Parse the whole lines buf[start:end]; return the line number after them."""

    def locate(off: int) -> tuple[str, int]:
        arr = np.frombuffer(buf, np.uint8)
        return src.name, base_line + _tokenize.count_newlines(arr, start, off) + 1

    frac = (done_before + pos) / progress.total if progress.total else 0.0
    ends_nl = end == 0 or buf[end - 1] == 10
    base_line += engine.parse(buf, start, end, locate, frac, last_has_newline=ends_nl)
    progress.update(done_before + pos)
    return base_line


def _check_unchanged(src: _Source, size: int) -> None:
    """A mapped file must not shrink while it is read (reading past its new end would kill
    the process with SIGBUS): checked before each window, which narrows the risk to a file
    cut short during one window's parse."""
    if os.fstat(src.raw.fileno()).st_size < size:
        raise RatingFileError(src.name, "the file shrank while it was being read")


def _release(mm: mmap.mmap, released: int, end: int) -> int:
    """Drop the pages of mm[released:end] from this process (they stay in the page cache),
    so that the mapping adds only the window being read to the process's memory. Returns the
    new start of the unreleased part (``released`` is page-aligned)."""
    hi = (end // mmap.PAGESIZE) * mmap.PAGESIZE
    if hi > released and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED, released, hi - released)
        return hi
    return released


def _run_mapped(
    engine: _Engine,
    src: _Source,
    mm: mmap.mmap,
    progress: _Progress,
    done_before: int,
    header: Callable[[bytes], None] | None,
) -> None:
    """A plain file, memory-mapped: parsed in windows of whole lines, no copy. Pages of
    parsed windows are released, so the mapping adds at most about a window to memory."""
    size = len(mm)
    start = base_line = 0
    if header is not None:
        found = _handle_header(engine, src.name, mm, size, True, header)
        if found is not None:  # always found: the whole file is at hand
            start, base_line = found
    released = 0
    while start < size:
        _check_unchanged(src, size)
        end = size
        if size - start > _MAP_WINDOW:
            end = mm.rfind(b"\n", start, start + _MAP_WINDOW) + 1
            if end <= start:  # a line longer than the window
                nl = mm.find(b"\n", start + _MAP_WINDOW)
                end = size if nl < 0 else nl + 1
        base_line = _parse_window(
            engine, src, mm, start, end, base_line, progress, done_before, end
        )
        released = _release(mm, released, end)
        start = end
    engine.info.bytes += size


def _run_stream(
    engine: _Engine,
    src: _Source,
    progress: _Progress,
    done_before: int,
    header: Callable[[bytes], None] | None = None,
) -> None:
    """Feed one source through the engine block by block (lines are never split)."""
    engine.carry = -1
    mm = src.mapped()
    if mm is not None:
        try:
            _run_mapped(engine, src, mm, progress, done_before, header)
        finally:
            try:
                mm.close()
            except BufferError:  # an error's traceback still holds a view: closed with it
                pass
        return
    # a plain file smaller than a block is read whole into a buffer of its size
    buf = bytearray(_BLOCK if src.kind else min(_BLOCK, src.size + 1))
    fill = 0
    base_line = 0  # lines before the unparsed part of buf
    first = True
    eof = False
    while True:
        if not eof:
            view = memoryview(buf)
            got = src.readinto(view[fill:])
            view.release()
            eof = fill + got < len(buf)
            fill += got
        start = 0
        if first:
            if fill == 0:
                raise RatingFileError(src.name, "the file is empty")
            if header is not None:
                found = _handle_header(engine, src.name, buf, fill, eof, header)
                if found is None:
                    buf.extend(bytearray(len(buf)))
                    continue
                start, base_line = found
            first = False
        if eof:
            end = fill
        else:
            end = buf.rfind(b"\n", start, fill) + 1
            if end <= start:  # a line longer than the buffer: grow it
                buf.extend(bytearray(len(buf)))
                continue
        base_line = _parse_window(
            engine, src, buf, start, end, base_line, progress, done_before, src.position()
        )
        if eof:
            break
        tail = fill - end
        buf[:tail] = buf[end:fill]
        fill = tail
    engine.info.bytes += src.position()


def _count_mapped_lines(paths: Sequence[str], nt: int) -> int:
    """Lines in input that spans several windows (or files), when all of it is plain files
    (0 otherwise). Columns sized from it are allocated once: growing them on the way would
    copy them, briefly holding two copies of every column."""
    sizes = [os.path.getsize(p) if os.path.isfile(p) else -1 for p in paths]
    if min(sizes) < 0 or (len(paths) == 1 and sizes[0] <= _MAP_WINDOW):
        return 0
    total = 0
    for path in paths:
        with _Source(path) as src:
            mm = src.mapped()
            if mm is None:
                return 0
            try:
                size = len(mm)
                released = 0
                for a in range(0, size, _MAP_WINDOW):
                    _check_unchanged(src, size)
                    b = min(size, a + _MAP_WINDOW)
                    arr = np.frombuffer(mm, np.uint8)
                    total += _tokenize.count_newlines(arr, a, b, nt)
                    del arr
                    released = _release(mm, released, b)
                total += mm[size - 1] != 10  # a last line without a newline
            finally:
                mm.close()
    return total


def _run_engine(
    run: Callable[[_Engine], None],
    spec: _Spec,
    on_bad_line: OnBadLine,
    nt: int,
    info: LoadInfo,
    expect_lines: int = 0,
) -> _Engine:
    """``run`` a new engine over the input; if an id does not fit the int32 id columns,
    forget what was counted and run again with int64 columns. ``expect_lines``: the input's
    line count if known (the columns are then allocated once, at that size)."""
    saved = copy.deepcopy(info)
    narrow = True
    while True:
        engine = _Engine(spec, on_bad_line, nt, info, narrow=narrow)
        if expect_lines:
            engine.reserve(expect_lines, 1.0)
        try:
            run(engine)
            return engine
        except _WideIds:
            if not narrow:
                raise
            del engine
            for f in dataclasses.fields(info):
                setattr(info, f.name, copy.deepcopy(getattr(saved, f.name)))
            narrow = False


def _text_load(
    paths: Sequence[str],
    spec: _Spec,
    *,
    on_bad_line: OnBadLine,
    n_threads: int | None,
    progress: bool | Callable[[int, int, float], None],
    info: LoadInfo | None,
    member: str | None = None,
    header: Callable[[bytes], None] | None = None,
) -> tuple[_Engine, LoadInfo]:
    info = info if info is not None else LoadInfo()
    nt = resolve_n_threads(n_threads)
    t0 = time.perf_counter()
    sizes = [os.path.getsize(p) if os.path.isfile(p) else 0 for p in paths]
    prog = _Progress(progress, sum(sizes))

    def run(engine: _Engine) -> None:
        done = 0
        for path, size in zip(paths, sizes, strict=True):
            with _Source(path, member) as src:
                info.paths.append(src.name)
                _run_stream(engine, src, prog, done, header)
            done += size
        prog.update(done, final=True)

    engine = _run_engine(run, spec, on_bad_line, nt, info, _count_mapped_lines(paths, nt))
    engine.progress = prog
    engine.finish(", ".join(paths) if len(paths) < 4 else f"{len(paths)} files")
    info.seconds += time.perf_counter() - t0
    if engine.n == 0:
        raise RatingFileError(
            paths[0] if len(paths) == 1 else ", ".join(paths),
            f"no ratings found ({info.lines} lines: {info.comments} comment, {info.blank} blank, "
            f"{info.headers} header, {info.skipped} skipped)",
        )
    return engine, info


# --------------------------------------------------------------------------- assembly
def _map_strings(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    allv = parts[0] if len(parts) == 1 else np.concatenate(parts)
    uniq, idx = np.unique(allv, return_inverse=True)
    try:
        names = np.char.decode(uniq, "utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"ids are not valid UTF-8 text ({exc})") from exc
    return names, idx.astype(np.int32).ravel()


def _build(
    parts: dict[str, Any],
    duplicates: Duplicates,
    n_threads: int,
    name: str,
    finite: bool = False,
) -> Ratings:
    """The CSR container from mapped indices and float32 ratings (``finite``: known to be
    finite, as the tokenizer's are).

    ``parts`` holds ``uidx``/``iidx`` (int32 indices), ``user_ids``/``item_ids``, ``values``
    (float32) and ``times`` (int64 or None); entries are popped as they are consumed, so each
    input array is freed as soon as its sorted copy exists (peak memory at 100M ratings).
    """
    user_ids, item_ids = parts.pop("user_ids"), parts.pop("item_ids")
    return assemble_csr(
        parts.pop("uidx"), parts.pop("iidx"), parts.pop("values"), parts.pop("times"),
        (len(user_ids), len(item_ids)), duplicates=duplicates, user_ids=user_ids,
        item_ids=item_ids, n_threads=n_threads, where=name, finite=finite,
    )  # fmt: skip


def _engine_to_ratings(engine: _Engine, duplicates: Duplicates, name: str) -> Ratings:
    nt = engine.n_threads
    if engine.progress is not None and engine.progress.shown:
        sys.stderr.write(f"mapping ids and building the matrix of {engine.n:,} ratings...\n")
        sys.stderr.flush()
    parts: dict[str, Any] = {}
    if engine.spec.user_str:
        parts["user_ids"], parts["uidx"] = _map_strings(engine.user_strs)
        engine.user_strs = []
    else:
        lo, hi = engine.urange
        parts["user_ids"], parts["uidx"] = map_ids_to_indices(
            engine.column("user"), nt, (lo, hi), inplace=True
        )
        engine.cols.pop("user", None)
    if engine.spec.item_str:
        parts["item_ids"], parts["iidx"] = _map_strings(engine.item_strs)
        engine.item_strs = []
    else:
        lo, hi = engine.irange
        parts["item_ids"], parts["iidx"] = map_ids_to_indices(
            engine.column("item"), nt, (lo, hi), inplace=True
        )
        engine.cols.pop("item", None)
    parts["values"] = engine.column("rating")
    parts["times"] = engine.column("time") if "time" in engine.cols else None
    engine.cols.clear()
    return _build(parts, duplicates, nt, name, finite=True)


def _resolve_scale(scale: Scale, default: tuple[float, float] | None) -> tuple[float, float] | None:
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


def _comment_byte(comment: str | None) -> int:
    if comment is None:
        return -1
    if not isinstance(comment, str) or len(comment.encode()) != 1:
        raise ValueError(f"comment must be one ASCII character or None, got {comment!r}")
    return comment.encode()[0]


def _one_path(path: PathLike | Sequence[PathLike]) -> str:
    if isinstance(path, str | os.PathLike):
        return os.fspath(path)
    raise TypeError(f"path must be a file name, got {type(path).__name__}")


# --------------------------------------------------------------------------- MovieLens
def _fixed_text(
    path: PathLike,
    spec: _Spec,
    *,
    on_bad_line: OnBadLine,
    duplicates: Duplicates,
    n_threads: int | None,
    progress: bool | Callable[[int, int, float], None],
    info: LoadInfo | None,
    header: Callable[[bytes], None] | None = None,
    member: str | None = None,
) -> Ratings:
    p = _one_path(path)
    engine, _ = _text_load(
        [p],
        spec,
        on_bad_line=on_bad_line,
        n_threads=n_threads,
        progress=progress,
        info=info,
        member=member,
        header=header,
    )
    return _engine_to_ratings(engine, duplicates, p)


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
    """
    spec = _Spec(
        b"\t", 4, 0, 1, 2, 3, comment=_comment_byte(comment),
        scale=_resolve_scale(rating_scale, _MOVIELENS_SCALE),
    )  # fmt: skip
    return _fixed_text(
        path, spec, on_bad_line=on_bad_line, duplicates=duplicates, n_threads=n_threads,
        progress=progress, info=info,
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
) -> Ratings:
    """MovieLens 1M / 10M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp`` per line.

    Parameters as in :func:`load_movielens_100k`; the default scale is 0.5..5.
    """
    spec = _Spec(
        b"::", 4, 0, 1, 2, 3, comment=_comment_byte(comment),
        scale=_resolve_scale(rating_scale, _MOVIELENS_SCALE),
    )  # fmt: skip
    return _fixed_text(
        path, spec, on_bad_line=on_bad_line, duplicates=duplicates, n_threads=n_threads,
        progress=progress, info=info,
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
    spec = _Spec(
        b",", 4, 0, 1, 2, 3, comment=_comment_byte(comment),
        scale=_resolve_scale(rating_scale, _MOVIELENS_SCALE),
    )  # fmt: skip
    p = _one_path(path)

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
                    _decode(raw),
                )
        spec.n_fields = len(names)
        spec.col_user, spec.col_item, spec.col_rating = pos["user"], pos["item"], pos["rating"]
        spec.col_time = pos.get("time", -1)

    return _fixed_text(
        p, spec, on_bad_line=on_bad_line, duplicates=duplicates, n_threads=n_threads,
        progress=progress, info=info, header=header, member=member,
    )  # fmt: skip


# --------------------------------------------------------------------------- Netflix
_HEADER_RE = re.compile(rb"^\s*\d+:\s*$")


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


def _netflix_spec(rating_scale: Scale, comment: str | None) -> _Spec:
    return _Spec(
        b",", 3, 0, -1, 1, 2, time_kind=1, netflix=True, comment=_comment_byte(comment),
        scale=_resolve_scale(rating_scale, _NETFLIX_SCALE),
    )  # fmt: skip


def _run_per_movie(engine: _Engine, files: list[str], progress: _Progress) -> None:
    """The ``mv_*.txt`` layout: many small files, each starting with its ``MovieID:`` line,
    concatenated into blocks so every block is one parallel parse."""
    total_done = 0
    k = 0
    while k < len(files):
        buf = bytearray()
        starts: list[int] = []
        names: list[str] = []
        while k < len(files) and (len(buf) < _BLOCK or not starts):
            with open(files[k], "rb") as fh:
                data = fh.read()
            if not data:
                raise RatingFileError(files[k], "the file is empty")
            first = data.split(b"\n", 1)[0]
            if not _HEADER_RE.match(first):
                raise RatingFileError(
                    files[k], "the first line is not a 'MovieID:' line", 1, _decode(first)
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
            return names[j], _tokenize.count_newlines(arr, starts[j], off) + 1

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
        engine, _ = _text_load(
            files, spec, on_bad_line=on_bad_line, n_threads=n_threads, progress=progress,
            info=info,
        )  # fmt: skip
    else:
        info = info if info is not None else LoadInfo()
        t0 = time.perf_counter()
        prog = _Progress(progress, sum(os.path.getsize(f) for f in files))
        engine = _run_engine(
            lambda e: _run_per_movie(e, files, prog), spec, on_bad_line,
            resolve_n_threads(n_threads), info,
        )  # fmt: skip
        prog.update(prog.total, final=True)
        engine.finish(f"{len(files)} files")
        info.seconds += time.perf_counter() - t0
        if engine.n == 0:
            raise RatingFileError(files[0], "no ratings found in the mv_*.txt files")
    name = files[0] if len(files) == 1 else f"{len(files)} Netflix files"
    return _engine_to_ratings(engine, duplicates, name)


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
    p = _one_path(path)
    with _Source(p) as src:
        head = src.head(1 << 16)
    if not head:
        raise RatingFileError(p, "the file is empty")
    lines = [ln for ln in head.split(b"\n")[:50] if ln.strip()]
    if not lines or not _HEADER_RE.match(lines[0]):
        raise RatingFileError(
            p, "the first line is not a 'MovieID:' line", 1, _decode(lines[0] if lines else b"")
        )
    data = next((ln for ln in lines[1:] if not _HEADER_RE.match(ln)), b"")
    with_dates = b"," in data
    spec = _Spec(
        b",", 2 if with_dates else 1, 0, -1, -1, 1 if with_dates else -1, time_kind=1, netflix=True
    )
    engine, _ = _text_load(
        [p], spec, on_bad_line=on_bad_line, n_threads=n_threads, progress=False, info=info
    )
    users = engine.column("user").astype(np.int64)
    items = engine.column("item").astype(np.int64)
    dates = engine.column("time").copy() if with_dates else None
    return NetflixPairs(users, items, dates)


# --------------------------------------------------------------------------- generic text
_USER_NAMES = {"user", "userid", "user_id", "users", "uid", "customer", "customerid", "customer_id"}
_ITEM_NAMES = {
    "item", "itemid", "item_id", "items", "iid", "movie", "movieid", "movie_id", "product",
    "productid", "product_id", "asin", "book", "bookid", "book_id", "isbn",
}  # fmt: skip
_RATING_NAMES = {"rating", "ratings", "score", "stars", "value", "book_rating", "book-rating"}
_TIME_NAMES = {"timestamp", "time", "ts", "unixtime", "unix_time", "datetime_ts"}


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
    p = _one_path(path)
    cbyte = _comment_byte(comment)
    if id_type not in ("auto", "int", "str"):
        raise ValueError(f"id_type must be 'auto', 'int' or 'str', got {id_type!r}")
    with _Source(p, member) as src:
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
        delim = _sniff_delimiter(lines[1:] if len(lines) > 1 else lines)
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
            for want in (_USER_NAMES, _ITEM_NAMES, _RATING_NAMES):
                hit = [k for k, nm in enumerate(names) if nm in want]
                if not hit:
                    raise ValueError(
                        f"{p}: cannot tell the user, item and rating columns from the header "
                        f"{first}; pass columns=(user, item, rating[, timestamp])"
                    )
                pos.append(hit[0])
            tcol = [k for k, nm in enumerate(names) if nm in _TIME_NAMES]
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
    spec = _Spec(
        delim, n_fields, pos[0], pos[1], pos[2], pos[3] if len(pos) == 4 else -1,
        user_str=user_str, item_str=item_str, comment=cbyte,
        scale=_resolve_scale(rating_scale, None),
    )  # fmt: skip

    def skip(raw: bytes) -> None:
        return None

    engine, _ = _text_load(
        [p], spec, on_bad_line=on_bad_line, n_threads=n_threads, progress=progress, info=info,
        member=member, header=skip if header else None,
    )  # fmt: skip
    return _engine_to_ratings(engine, duplicates, p)


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
    uc = _pick(names, user_col, _USER_NAMES, "user", path)
    ic = _pick(names, item_col, _ITEM_NAMES, "item", path)
    rc = _pick(names, rating_col, _RATING_NAMES, "rating", path)
    tc = timestamp_col
    if tc is None:
        tc = next((n for n in names if n.lower() in _TIME_NAMES), None)
    elif tc not in names:
        raise ValueError(f"{path}: no column {tc!r}; the columns are {names}")
    scale = _resolve_scale(rating_scale, None)
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
    return _build(parts, duplicates, nt, path)


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
    _Progress(progress, size).update(size, final=True)
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

    p = _one_path(path)
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

    p = _one_path(path)
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


# --------------------------------------------------------------------------- binary cache
CACHE_FORMAT = "mfkit-ratings-cache"
CACHE_VERSION = 1
_META = "meta.json"
_CACHE_ARRAYS = ("indptr", "indices", "values", "user_ids", "item_ids", "timestamps")


def _crc(a: np.ndarray) -> int:
    crc = 0
    flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    step = 64 << 20
    for s in range(0, len(flat), step):
        crc = zlib.crc32(flat[s : s + step].data, crc)
    return crc


def _is_cache(path: str) -> bool:
    meta = os.path.join(path, _META)
    if not os.path.isfile(meta):
        return False
    try:
        with open(meta, encoding="utf-8") as fh:
            return json.load(fh).get("format") == CACHE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_cache(ratings: Ratings, path: PathLike) -> None:
    """Write ``ratings`` as a binary cache folder (see :meth:`mfkit.Ratings.save`)."""
    from mfkit import __version__

    if not isinstance(ratings, Ratings):
        raise TypeError(f"ratings must be mfkit.Ratings, got {type(ratings).__name__}")
    dest = os.path.abspath(os.fspath(path))
    if os.path.exists(dest) and not _is_cache(dest):
        raise FileExistsError(
            f"{dest!r} exists and is not an mfkit ratings cache; refusing to replace it "
            f"(remove it or pick another path)"
        )
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"the folder {parent!r} for the cache does not exist")
    arrays = {
        "indptr": ratings.indptr,
        "indices": ratings.indices,
        "values": ratings.values,
        "user_ids": ratings.user_ids,
        "item_ids": ratings.item_ids,
        "timestamps": ratings.timestamps,
    }
    tmp = tempfile.mkdtemp(prefix=".mfkit-cache-", dir=parent)
    try:
        # mkdtemp makes the folder private (0700); give it the mode a plain mkdir would
        from mfkit.persistence import _current_umask

        os.chmod(tmp, 0o777 & ~_current_umask())
        entries = {}
        for name, a in arrays.items():
            if a is None:
                continue
            fn = os.path.join(tmp, name + ".npy")
            with open(fn, "wb") as fh:
                np.save(fh, np.ascontiguousarray(a), allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            entries[name] = {
                "file": name + ".npy",
                "dtype": np.dtype(a.dtype).str,
                "shape": list(a.shape),
                "crc32": _crc(a),
            }
        meta = {
            "format": CACHE_FORMAT,
            "format_version": CACHE_VERSION,
            "mfkit_version": __version__,
            "shape": list(ratings.shape),
            "nnz": ratings.nnz,
            "arrays": entries,
        }
        with open(os.path.join(tmp, _META), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        if os.path.exists(dest):
            old = tempfile.mkdtemp(prefix=".mfkit-old-", dir=parent)
            os.rename(dest, os.path.join(old, "x"))
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _refuse(path: str, why: str) -> ValueError:
    return ValueError(f"{path!r} is not a valid mfkit ratings cache: {why}")


def load_cache(path: PathLike, mmap: bool = True, verify: bool | None = None) -> Ratings:
    """Open a cache folder written by :func:`save_cache` (see :meth:`mfkit.Ratings.load`)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such ratings cache: {p!r}")
    if not os.path.isdir(p):
        raise _refuse(p, "it is a file; a cache is a folder written by Ratings.save")
    meta_path = os.path.join(p, _META)
    try:
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise _refuse(p, f"no {_META} (not written by Ratings.save?)") from None
    except (OSError, ValueError) as exc:
        raise _refuse(p, f"{_META} is damaged ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise _refuse(p, f"{_META} does not describe an mfkit ratings cache")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1 or version > CACHE_VERSION:
        raise _refuse(p, f"format version {version!r}; this mfkit reads version {CACHE_VERSION}")
    verify = (not mmap) if verify is None else bool(verify)
    try:
        shape = (int(meta["shape"][0]), int(meta["shape"][1]))
        nnz = int(meta["nnz"])
        entries = dict(meta["arrays"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise _refuse(p, f"{_META} is incomplete ({exc})") from exc
    for need in ("indptr", "indices", "values"):
        if need not in entries:
            raise _refuse(p, f"array {need!r} is missing from {_META}")
    arrays: dict[str, np.ndarray] = {}
    for name, ent in entries.items():
        if name not in _CACHE_ARRAYS:
            raise _refuse(p, f"unknown array {name!r}")
        fn = os.path.join(p, f"{name}.npy")
        try:
            a = np.load(fn, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise _refuse(p, f"{name}.npy is missing") from None
        except (OSError, ValueError, EOFError) as exc:
            raise _refuse(p, f"{name}.npy is damaged or truncated ({exc})") from exc
        if a.dtype.str != ent.get("dtype") or list(a.shape) != ent.get("shape"):
            raise _refuse(p, f"{name}.npy does not match {_META} (dtype/shape)")
        if verify and _crc(a) != ent.get("crc32"):
            raise _refuse(p, f"{name}.npy was altered or damaged (checksum mismatch)")
        arrays[name] = a
    indptr, indices, values = arrays["indptr"], arrays["indices"], arrays["values"]
    if (
        indptr.dtype != np.int64
        or indices.dtype != np.int32
        or values.dtype != np.float32
        or indptr.shape != (shape[0] + 1,)
        or indices.shape != (nnz,)
        or values.shape != (nnz,)
    ):
        raise _refuse(p, "the CSR arrays have the wrong dtype or length")
    if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0):
        raise _refuse(p, "indptr is not a valid row pointer")
    if verify and nnz and (int(indices.min()) < 0 or int(indices.max()) >= shape[1]):
        raise _refuse(p, "item indices out of range")
    ts = arrays.get("timestamps")
    if ts is not None and (ts.dtype != np.int64 or ts.shape != (nnz,)):
        raise _refuse(p, "timestamps have the wrong dtype or length")
    for name, n in (("user_ids", shape[0]), ("item_ids", shape[1])):
        ids = arrays.get(name)
        if ids is not None and ids.shape != (n,):
            raise _refuse(p, f"{name} has the wrong length")
    return Ratings(
        indptr,
        indices,
        values,
        shape,
        user_ids=arrays.get("user_ids"),
        item_ids=arrays.get("item_ids"),
        timestamps=ts,
        check=False,
    )


# --------------------------------------------------------------------------- sniffing
def _first_lines(path: str, n: int = 20) -> tuple[str, list[bytes]]:
    with _Source(path) as src:
        head = src.head(1 << 16)
        inner = src.inner_name
    lines = [ln.rstrip(b"\r") for ln in head.split(b"\n")]
    return inner, [ln for ln in lines if ln.strip()][:n]


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
        if os.path.isfile(os.path.join(p, _META)):
            return "cache", f"folder with {_META} (an mfkit ratings cache)"
        names = os.listdir(p)
        if any(re.fullmatch(r"combined_data_\d+\.txt(\.gz|\.bz2)?", f) for f in names):
            return "netflix", "folder with combined_data_N.txt files"
        if "training_set" in names or any(re.fullmatch(r"mv_\d+\.txt", f) for f in names):
            return "netflix", "folder with the Netflix training_set (mv_*.txt files)"
        raise ValueError(
            f"{p!r} is a folder but neither an mfkit cache nor a Netflix data folder; pass a file"
        )
    base = os.path.basename(p).lower()
    with open(p, "rb") as fh:
        magic = fh.read(8)
    if base.endswith((".parquet", ".pq")) or magic.startswith(b"PAR1"):
        return "parquet", "Parquet file (name or PAR1 magic)"
    if base.endswith((".arrow", ".feather", ".ipc", ".arrows")) or magic.startswith(b"ARROW1"):
        return "arrow", "Arrow/Feather file (name or ARROW1 magic)"
    inner, lines = _first_lines(p)
    if not lines:
        raise RatingFileError(p, "the file is empty (or has only blank lines)")
    first = lines[0]
    inner_l = inner.lower()
    if re.fullmatch(r"(combined_data_\d+|mv_\d+)\.txt", inner_l):
        return "netflix", f"{inner!r}: a Netflix Prize training file name"
    if inner_l in ("probe.txt", "qualifying.txt"):
        return "netflix-pairs", f"{inner!r}: a Netflix Prize pair list name"
    if _HEADER_RE.match(first):
        data = next((ln for ln in lines[1:] if not _HEADER_RE.match(ln)), b"")
        commas = data.count(b",")
        if commas == 2:
            return (
                "netflix",
                f"first line {_decode(first)!r} is a MovieID: line, then user,rating,date",
            )
        return "netflix-pairs", (
            f"first line {_decode(first)!r} is a MovieID: line, then "
            f"{'user,date' if commas == 1 else 'user ids'} (a probe/qualifying pair list)"
        )
    if b"::" in first:
        return "movielens-dat", f"{inner!r}: fields separated by '::'"
    if first.lower().replace(b" ", b"").startswith(b"userid,movieid,rating"):
        return "movielens-csv", f"{inner!r}: header {_decode(first)!r}"
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
        out = load_cache(_one_path(path), **options)
        info.paths.append(os.fspath(_one_path(path)))
        info.ratings = out.nnz
        info.seconds = time.perf_counter() - t0
        return out
    return _LOADERS[fmt](path, info=info, **options)
