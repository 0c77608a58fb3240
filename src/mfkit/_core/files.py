"""Writing files so that a reader sees the old file or the whole new one, never a part.

A writer holds an exclusive ``flock`` on its temporary file while it writes, so a later
writer can tell the leftovers of one that was killed (nobody holds their lock) from the
files of one still at work, and removes only the former.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

#: the prefix of every temporary file and folder mfkit writes next to its target
TMP_PREFIX = ".mfkit-"
#: errno values that mean the disk, the quota or the file size limit is full
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def digest(a: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    h = hashlib.sha256()
    h.update(str(a.dtype.str).encode())
    h.update(str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def lock(fd: int, blocking: bool = True) -> bool:
    """Take an exclusive advisory lock on ``fd``; False if ``blocking=False`` and another
    process holds it (always True where ``flock`` does not exist)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks: behave as if it were ours
        return True
    return True


def is_abandoned(path: str) -> bool:
    """Whether the temporary file ``path`` is a leftover: nobody holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return lock(fd, blocking=False)
    finally:
        os.close(fd)


def remove_leftovers(directory: str, stem: str) -> None:
    """Remove ``.mfkit-<stem>*.tmp`` files in ``directory`` left by writers that were killed
    (SIGKILL, power loss) before they could clean up; files still being written are kept."""
    prefix = f"{TMP_PREFIX}{stem}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            full = os.path.join(directory, name)
            if os.path.isfile(full) and is_abandoned(full):
                try:
                    os.unlink(full)
                except OSError:
                    pass


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk, a quota or the file size limit is full."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def write_error(path: str, exc: OSError) -> OSError:
    """An ``OSError`` that names the file being written, and says what to do when the disk,
    a quota or the file size limit (``ulimit -f``) is full."""
    if exc.errno in _FULL:
        return OSError(
            exc.errno,
            f"cannot write {path!r}: {exc.strerror} (the disk, a quota or the file size limit "
            f"is full); free space or raise the limit and try again (the previous file, if "
            f"any, is unchanged)",
        )
    return OSError(exc.errno, f"cannot write {path!r}: {exc.strerror or exc}")


def atomic_write(path: Any, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it into place, so
    ``path`` is either the old file or the complete new one, never a partial write.

    A failed write (a full disk, an exception, Ctrl-C) removes the temporary file; one left
    by a killed process is removed by the next write to the same path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"cannot write {path!r}: the folder {directory!r} does not exist; create it first"
        )
    stem = os.path.basename(path)
    remove_leftovers(directory, stem)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{stem}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        lock(fd)
        # mkstemp creates the file private (0600); give it the mode a plain open() would
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb", closefd=False) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and disk_full(exc):
            raise write_error(path, exc) from exc
        raise
    finally:
        os.close(fd)
