"""The parse engine: runs the compiled tokenizer over windows and blocks of text, collects
the columns, reports bad lines, and assembles the CSR container from them."""

from __future__ import annotations

import copy
import dataclasses
import mmap
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mfkit._core.validation import resolve_n_threads
from mfkit.data._csr import Duplicates, map_ids_to_indices
from mfkit.data._ratings import Ratings, assemble_csr
from mfkit.exceptions import BadLineWarning, RatingFileError
from mfkit.io import _lines, _tokenize
from mfkit.io._common import LoadInfo, OnBadLine, logger
from mfkit.io._sources import Progress, Source

# tunables (tests shrink them to exercise every chunking on small files)
_BLOCK = 64 << 20  # bytes parsed per block
_MAP_WINDOW = 512 << 20  # bytes of a memory-mapped file parsed per window
_PARALLEL_MIN = _lines.PARALLEL_MIN  # blocks smaller than this are parsed by one thread
_FAST_PATH = True  # strictly formatted lines take the tokenizer's fast path (tests turn it off)
_CHUNKS_PER_THREAD = 4  # chunks per thread in a block (balances uneven lines)

_Reason = _tokenize.Reason
_STR_ID_HINT: dict[int, str] = {
    _Reason.BAD_USER: " (string user ids? pass id_type='str')",
    _Reason.BAD_ITEM: " (string item ids? pass id_type='str')",
}


# --------------------------------------------------------------------------- text engine
@dataclasses.dataclass
class Spec:
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


def decode_line(line: bytes) -> str:
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


class Engine:
    """Parses blocks of whole lines into growing columns and keeps the counts."""

    def __init__(
        self,
        spec: Spec,
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
        self.counts = np.zeros(_tokenize.N_CODES, dtype=np.int64)
        self.progress: Progress | None = None
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
        cuts = _lines.split_points(view, start, end, n_chunks)
        caps = _lines.count_chunks(view, cuts, self.n_threads)
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
            raise RatingFileError(path, msg, lineno, decode_line(text))
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
                    _lines.move_rows(a, ch["row0"], dst, ch["n_rows"])
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
                if len(info.bad_lines) < _tokenize.MAX_BAD:
                    path, lineno = locate(off)
                    text = _line_at(buf, off, end)
                    info.bad_lines.append(
                        (path, lineno, self._reason(code, text), decode_line(text))
                    )
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
        msg = _tokenize.REASONS.get(code, f"unreadable line (code {code})")
        if code in (_Reason.TOO_FEW, _Reason.TOO_MANY):
            found = _count_fields(text, self.spec.delimiter)
            msg += f": expected {self.spec.n_fields}, found {found}"
        if code == _Reason.OUT_OF_SCALE and self.spec.scale is not None:
            lo, hi = self.spec.scale
            msg = (
                f"the rating is outside the rating scale [{lo:g}, {hi:g}] "
                f"(rating_scale=None accepts any rating)"
            )
        if code in (_Reason.BAD_USER, _Reason.BAD_ITEM):
            col = self.spec.col_user if code == _Reason.BAD_USER else self.spec.col_item
            field = _field(text, self.spec.delimiter, col)
            if field is not None and field.lstrip(b"-+").isdigit():
                which = "user" if code == _Reason.BAD_USER else "item"
                return (
                    f"the {which} id {field.decode()} is outside the int64 range "
                    f"[-2**63, 2**63-1] of integer ids (load_delimited(id_type='str') keeps "
                    f"such ids as strings)"
                )
        if code in _STR_ID_HINT and not self.spec.netflix:
            msg += _STR_ID_HINT[code]
        if code == _Reason.BAD_HEADER and self.on_bad_line != "error":
            msg += (
                f" (an error even with on_bad_line={self.on_bad_line!r}: the ratings below it "
                f"would go to the movie before it; fix the line or remove it and its ratings)"
            )
        return msg

    def finish(self, name: str) -> None:
        """Report skipped lines (warn/skip) and refuse a load with no rating."""
        info = self.info
        by_reason = {}
        for code, count in enumerate(self.counts.tolist()):
            if count:
                by_reason[_tokenize.REASONS.get(code, str(code))] = int(count)
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


def _field(text: bytes, delimiter: bytes, col: int) -> bytes | None:
    """Field ``col`` of a line (stripped), or None."""
    if col < 0:
        return None
    line = text.rstrip(b"\r\n")
    parts = line.split() if delimiter == b"" else line.split(delimiter)
    return parts[col].strip() if col < len(parts) else None


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
    engine: Engine,
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
    try:
        header(lines[skipped].rstrip(b"\r"))
    except RatingFileError as exc:
        if exc.line_number != 1 or skipped == 0:
            raise
        # the header is not on line 1 when blank or comment lines come before it
        raise RatingFileError(exc.path, exc.reason, skipped + 1, exc.line) from None
    engine.respec()
    return start, skipped + 1


_BOM = b"\xef\xbb\xbf"


def _parse_window(
    engine: Engine,
    src: Source,
    buf: Any,
    start: int,
    end: int,
    base_line: int,
    progress: Progress,
    done_before: int,
    pos: int,
) -> int:
    """Parse the whole lines buf[start:end]; return the line number after them."""

    def locate(off: int) -> tuple[str, int]:
        arr = np.frombuffer(buf, np.uint8)
        return src.name, base_line + _lines.count_newlines(arr, start, off) + 1

    frac = (done_before + pos) / progress.total if progress.total else 0.0
    ends_nl = end == 0 or buf[end - 1] == 10
    base_line += engine.parse(buf, start, end, locate, frac, last_has_newline=ends_nl)
    progress.update(done_before + pos)
    return base_line


def _check_unchanged(src: Source, size: int) -> None:
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
    engine: Engine,
    src: Source,
    mm: mmap.mmap,
    progress: Progress,
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
    elif mm[:3] == _BOM:
        start = 3  # a UTF-8 byte order mark, as some editors write
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
    engine: Engine,
    src: Source,
    progress: Progress,
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
    # a plain file smaller than a block is read whole into a buffer of its size (a pipe's
    # size is unknown: a whole block)
    small = src.kind is None and src.regular
    buf = bytearray(min(_BLOCK, src.size + 1) if small else _BLOCK)
    fill = 0
    base_line = 0  # lines before the unparsed part of buf
    first = True
    eof = False
    start = 0  # where the unparsed lines begin in buf (after the header, at first)
    while True:
        if not eof:
            view = memoryview(buf)
            got = src.readinto(view[fill:])
            view.release()
            eof = fill + got < len(buf)
            fill += got
        if first:
            if fill == 0:
                raise RatingFileError(src.name, "the file is empty")
            if header is not None:
                found = _handle_header(engine, src.name, buf, fill, eof, header)
                if found is None:
                    buf.extend(bytearray(len(buf)))
                    continue
                start, base_line = found
            elif buf[:3] == _BOM:
                start = 3  # a UTF-8 byte order mark, as some editors write
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
        start = 0
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
        with Source(path) as src:
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
                    total += _lines.count_newlines(arr, a, b, nt)
                    del arr
                    released = _release(mm, released, b)
                total += mm[size - 1] != 10  # a last line without a newline
            finally:
                mm.close()
    return total


def run_engine(
    run: Callable[[Engine], None],
    spec: Spec,
    on_bad_line: OnBadLine,
    nt: int,
    info: LoadInfo,
    expect_lines: int = 0,
) -> Engine:
    """``run`` a new engine over the input; if an id does not fit the int32 id columns,
    forget what was counted and run again with int64 columns. ``expect_lines``: the input's
    line count if known (the columns are then allocated once, at that size)."""
    saved = copy.deepcopy(info)
    narrow = True
    while True:
        engine = Engine(spec, on_bad_line, nt, info, narrow=narrow)
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


def text_load(
    paths: Sequence[str],
    spec: Spec,
    *,
    on_bad_line: OnBadLine,
    n_threads: int | None,
    progress: bool | Callable[[int, int, float], None],
    info: LoadInfo | None,
    member: str | None = None,
    header: Callable[[bytes], None] | None = None,
) -> tuple[Engine, LoadInfo]:
    info = info if info is not None else LoadInfo()
    nt = resolve_n_threads(n_threads)
    t0 = time.perf_counter()
    sizes = [os.path.getsize(p) if os.path.isfile(p) else 0 for p in paths]
    prog = Progress(progress, sum(sizes))

    def run(engine: Engine) -> None:
        done = 0
        for path, size in zip(paths, sizes, strict=True):
            with Source(path, member) as src:
                info.paths.append(src.name)
                _run_stream(engine, src, prog, done, header)
            done += size
        prog.update(done, final=True)

    engine = run_engine(run, spec, on_bad_line, nt, info, _count_mapped_lines(paths, nt))
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
def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _map_strings(parts: list[np.ndarray], name: str = "") -> tuple[np.ndarray, np.ndarray]:
    allv = parts[0] if len(parts) == 1 else np.concatenate(parts)
    uniq, idx = np.unique(allv, return_inverse=True)
    try:
        names = np.char.decode(uniq, "utf-8")
    except UnicodeDecodeError as exc:
        bad = next(u for u in uniq.tolist() if not _utf8(u))
        raise RatingFileError(
            name or "the input",
            f"ids are not valid UTF-8 text (e.g. {bad!r}); re-encode the file as UTF-8",
        ) from exc
    return names, idx.astype(np.int32).ravel()


def build_ratings(
    parts: dict[str, Any],
    duplicates: Duplicates,
    n_threads: int,
    name: str,
    finite: bool = False,
) -> Ratings:
    """The CSR container from mapped indices and float32 ratings (``finite``: known to be
    finite, as the tokenizer's are).

    ``parts`` holds ``uidx``/``iidx`` (int32 indices), ``user_ids``/``item_ids``, ``values``
    (float32) and ``times`` (int64 or None); entries are popped as they are consumed, and
    the writable arrays are overwritten (their memory holds the sorted columns: peak memory
    at 100M ratings).
    """
    user_ids, item_ids = parts.pop("user_ids"), parts.pop("item_ids")
    return assemble_csr(
        parts.pop("uidx"), parts.pop("iidx"), parts.pop("values"), parts.pop("times"),
        (len(user_ids), len(item_ids)), duplicates=duplicates, user_ids=user_ids,
        item_ids=item_ids, n_threads=n_threads, where=name, finite=finite, consume=True,
    )  # fmt: skip


def engine_to_ratings(engine: Engine, duplicates: Duplicates, name: str) -> Ratings:
    nt = engine.n_threads
    if engine.progress is not None and engine.progress.shown:
        sys.stderr.write(f"mapping ids and building the matrix of {engine.n:,} ratings...\n")
        sys.stderr.flush()
    parts: dict[str, Any] = {}
    if engine.spec.user_str:
        parts["user_ids"], parts["uidx"] = _map_strings(engine.user_strs, name)
        engine.user_strs = []
    else:
        lo, hi = engine.urange
        parts["user_ids"], parts["uidx"] = map_ids_to_indices(
            engine.column("user"), nt, (lo, hi), inplace=True
        )
        engine.cols.pop("user", None)
    if engine.spec.item_str:
        parts["item_ids"], parts["iidx"] = _map_strings(engine.item_strs, name)
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
    return build_ratings(parts, duplicates, nt, name, finite=True)
