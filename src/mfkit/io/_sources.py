"""Byte sources: plain, memory-mapped and compressed files (gzip, bz2, xz, zip), and load
progress."""

from __future__ import annotations

import bz2
import gzip
import lzma
import mmap
import os
import sys
import time
import zipfile
from collections.abc import Callable
from typing import IO, Any

from mfkit.io._common import PathLike

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


class Source:
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
