"""Byte sources: plain, memory-mapped and compressed files (gzip, bz2, xz, zip), and load
progress."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import mmap
import os
import select
import stat
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

from mfkit.exceptions import RatingFileError
from mfkit.io._common import PathLike

# --------------------------------------------------------------------------- sources
#: what the decompressors raise on damaged or truncated data (zip: encrypted members raise
#: RuntimeError, unknown methods NotImplementedError)
_DAMAGED = (
    EOFError,
    gzip.BadGzipFile,
    lzma.LZMAError,
    zlib.error,
    zipfile.BadZipFile,
    RuntimeError,
    NotImplementedError,
    OSError,
)
_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
}
_KNOWN_MEMBERS = ("ratings.csv", "ratings.dat", "u.data")


def _kind(head: bytes) -> str | None:
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


#: how long opening a FIFO waits for a writer's first bytes before giving up
FIFO_TIMEOUT = 60.0
#: bytes of a pipe kept so that a later open of the same pipe (sniffing the format, then
#: loading) sees them again
PIPE_REPLAY = 64 << 20


class _Pipe:
    """A non-seekable input (FIFO, pipe, character device) opened once per process: the
    first bytes read are kept, so every :class:`Source` on it starts from byte 0."""

    def __init__(self, path: str, key: tuple[int, int]) -> None:
        self.path, self.key = path, key
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                # without a writer, a blocking open (and read) of a FIFO waits forever
                poll = select.poll()
                poll.register(fd, select.POLLIN | select.POLLHUP)
                if not poll.poll(int(FIFO_TIMEOUT * 1000)):
                    raise TimeoutError(
                        f"{path}: no data arrived on this FIFO within {FIFO_TIMEOUT:g} s; "
                        f"start the process that writes to it first"
                    )
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        self.raw: Any = open(fd, "rb", buffering=0)  # noqa: SIM115
        self.head = bytearray()
        self.read_to = 0  # bytes taken from the pipe so far
        self.kept_all = True  # head holds everything read so far
        self.users = 0
        self.eof = False


_PIPES: dict[tuple[int, int], _Pipe] = {}


class _Replay(io.RawIOBase):
    """Reads a :class:`_Pipe` from byte 0: the kept bytes, then the pipe itself."""

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe
        self.off = 0
        self.peek = False  # only the head was read (sniffing): keep the pipe for the loader
        pipe.users += 1

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        p = self.pipe
        view = memoryview(b).cast("B")
        if self.off < len(p.head):
            k = min(len(view), len(p.head) - self.off)
            view[:k] = p.head[self.off : self.off + k]
            self.off += k
            return k
        if self.off != p.read_to:
            raise RatingFileError(
                p.path,
                f"this pipe was already read past the part mfkit keeps "
                f"({PIPE_REPLAY >> 20} MiB) and cannot be read again; save it to a file",
            )
        k = p.raw.readinto(view) or 0
        if k == 0:
            p.eof = True
        elif p.kept_all and len(p.head) + k <= PIPE_REPLAY:
            p.head += view[:k]
        else:
            p.kept_all = False
        p.read_to += k
        self.off += k
        return k

    def rewind(self) -> None:
        if self.off > len(self.pipe.head):
            raise OSError(f"{self.pipe.path}: cannot rewind a pipe")
        self.off = 0

    def tell(self) -> int:
        return self.off

    def close(self) -> None:
        if not self.closed:
            p = self.pipe
            p.users -= 1
            # once read to the end or past what is kept, a pipe is done with: the next
            # open reads it afresh (and finds it empty, as the shell would)
            if p.users == 0 and not self.peek and (p.eof or not p.kept_all):
                _PIPES.pop(p.key, None)
                p.raw.close()
        super().close()


def _open_pipe(path: str, st: os.stat_result) -> _Replay:
    key = (st.st_dev, st.st_ino)
    pipe = _PIPES.get(key)
    if pipe is None or pipe.raw.closed:
        pipe = _Pipe(path, key)
        _PIPES[key] = pipe
    return _Replay(pipe)


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


class Source:
    """A readable byte stream over a plain or compressed file, with progress positions."""

    def __init__(self, path: PathLike, member: str | None = None) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no such rating file: {self.path!r}")
        if os.path.isdir(self.path):
            raise IsADirectoryError(f"{self.path!r} is a folder, not a rating file")
        st = os.stat(self.path)
        self.regular = stat.S_ISREG(st.st_mode)
        self.size = st.st_size if self.regular else 0
        self.stream: Any
        self._zip: zipfile.ZipFile | None = None
        self.name = self.path
        # every input is opened once: the compression is told from the first bytes of the
        # stream that is then read (opening a pipe twice would lose what the first read)
        self.raw: Any
        if self.regular:
            self.raw = open(self.path, "rb", buffering=0)  # noqa: SIM115
        else:
            self.raw = _open_pipe(self.path, st)
        try:
            head = b""
            while len(head) < 8:  # a pipe may deliver fewer bytes than asked
                more = self.raw.read(8 - len(head))
                if not more:
                    break
                head += more
            if self.regular:
                self.raw.seek(0)
            else:
                self.raw.rewind()
            self.kind = _kind(head)
            if self.kind == "zip" and not self.regular:
                raise ValueError(
                    f"{self.path}: a zip archive cannot be read from a pipe (its index is at "
                    f"the end); save it to a file first"
                )
            if self.kind == "gzip":
                self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb")
            elif self.kind == "bz2":
                self.stream = bz2.BZ2File(self.raw, mode="rb")
            elif self.kind == "xz":
                self.stream = lzma.LZMAFile(self.raw, mode="rb")
            elif self.kind == "zip":
                try:
                    self._zip = zipfile.ZipFile(self.raw)
                    name = _zip_member(self._zip, self.path, member)
                    self.name = f"{self.path}[{name}]"
                    self.stream = self._zip.open(name)
                except _DAMAGED as exc:
                    raise self.damaged(exc) from exc
            else:
                self.stream = self.raw
        except BaseException:
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
        if self.kind is not None or self.size == 0 or not self.regular:
            return None
        try:
            mm = mmap.mmap(self.raw.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            mm.madvise(mmap.MADV_SEQUENTIAL)
        return mm

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` as far as the stream allows; 0 only at the end. Damaged compressed
        data raises :class:`~mfkit.RatingFileError` naming the file."""
        got = 0
        n = len(view)
        try:
            while got < n:
                k = self.stream.readinto(view[got:])
                if not k:
                    break
                got += k
        except _DAMAGED as exc:
            raise self.damaged(exc) from exc
        return got

    def damaged(self, exc: BaseException) -> RatingFileError:
        what = f"{self.kind} data" if self.kind else "the file"
        if isinstance(exc, RuntimeError) and "encrypted" in str(exc).lower():
            why = "the zip member is encrypted; extract it with its password first"
        elif isinstance(exc, NotImplementedError):
            why = f"the zip member uses a compression method Python cannot read ({exc})"
        elif isinstance(exc, EOFError):
            why = f"{what} ends early (truncated download or copy?)"
        else:
            why = f"{what} is damaged ({type(exc).__name__}: {exc})"
        return RatingFileError(self.name, f"{why}; check or fetch the file again")

    def head(self, n: int = 65536) -> bytes:
        """The first ``n`` bytes, for sniffing (a pipe stays open for the next reader)."""
        if isinstance(self.raw, _Replay) and self.raw.off == 0:
            self.raw.peek = True
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

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- progress
class Progress:
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
