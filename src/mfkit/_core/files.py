"""Writing files so that a reader sees the old file or the whole new one, never a part."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

import numpy as np


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


def atomic_write(path: Any, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it into place, so
    ``path`` is either the old file or the complete new one, never a partial write."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"cannot write {path!r}: the folder {directory!r} does not exist; create it first"
        )
    fd, tmp = tempfile.mkstemp(prefix=".mfkit-", suffix=".tmp", dir=directory)
    try:
        # mkstemp creates the file private (0600); give it the mode a plain open() would
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
