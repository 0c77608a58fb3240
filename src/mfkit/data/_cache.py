"""The binary ratings cache: a folder of ``.npy`` arrays and a ``meta.json`` that
:meth:`mfkit.Ratings.save` writes and :meth:`mfkit.Ratings.load` memory-maps.

This module knows the folder layout and checks it; the container builds itself from the
arrays (so the format sits below the container and both ``mfkit.io`` and
:class:`mfkit.Ratings` use this one definition, detection included).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from typing import Any

import numpy as np

from mfkit._core.files import current_umask
from mfkit._core.version import __version__

CACHE_FORMAT = "mfkit-ratings-cache"
CACHE_VERSION = 1
META = "meta.json"
CACHE_ARRAYS = ("indptr", "indices", "values", "user_ids", "item_ids", "timestamps")


def crc(a: np.ndarray) -> int:
    crc = 0
    flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    step = 64 << 20
    for s in range(0, len(flat), step):
        crc = zlib.crc32(flat[s : s + step].data, crc)
    return crc


def is_cache(path: Any) -> bool:
    """Whether ``path`` is a folder holding an mfkit ratings cache (its ``meta.json`` names
    the format). The one test used to sniff a path, to decide whether ``save`` may replace
    what is at a path, and by the command line."""
    meta = os.path.join(path, META)
    if not os.path.isfile(meta):
        return False
    try:
        with open(meta, encoding="utf-8") as fh:
            return json.load(fh).get("format") == CACHE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_cache(
    path: Any, arrays: dict[str, np.ndarray | None], shape: tuple[int, int], nnz: int
) -> None:
    """Write the container's arrays as a cache folder (see :meth:`mfkit.Ratings.save`)."""
    dest = os.path.abspath(os.fspath(path))
    if os.path.exists(dest) and not is_cache(dest):
        raise FileExistsError(
            f"{dest!r} exists and is not an mfkit ratings cache; refusing to replace it "
            f"(remove it or pick another path)"
        )
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"the folder {parent!r} for the cache does not exist")
    tmp = tempfile.mkdtemp(prefix=".mfkit-cache-", dir=parent)
    try:
        # mkdtemp makes the folder private (0700); give it the mode a plain mkdir would
        os.chmod(tmp, 0o777 & ~current_umask())
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
                "crc32": crc(a),
            }
        meta = {
            "format": CACHE_FORMAT,
            "format_version": CACHE_VERSION,
            "mfkit_version": __version__,
            "shape": list(shape),
            "nnz": int(nnz),
            "arrays": entries,
        }
        with open(os.path.join(tmp, META), "w", encoding="utf-8") as fh:
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


def read_cache(
    path: Any, mmap: bool = True, verify: bool | None = None
) -> tuple[tuple[int, int], dict[str, np.ndarray]]:
    """``(shape, arrays)`` of a cache folder, checked (see :meth:`mfkit.Ratings.load`)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such ratings cache: {p!r}")
    if not os.path.isdir(p):
        raise _refuse(p, "it is a file; a cache is a folder written by Ratings.save")
    meta_path = os.path.join(p, META)
    try:
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise _refuse(p, f"no {META} (not written by Ratings.save?)") from None
    except (OSError, ValueError) as exc:
        raise _refuse(p, f"{META} is damaged ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise _refuse(p, f"{META} does not describe an mfkit ratings cache")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1 or version > CACHE_VERSION:
        raise _refuse(p, f"format version {version!r}; this mfkit reads version {CACHE_VERSION}")
    verify = (not mmap) if verify is None else bool(verify)
    try:
        shape = (int(meta["shape"][0]), int(meta["shape"][1]))
        nnz = int(meta["nnz"])
        entries = dict(meta["arrays"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise _refuse(p, f"{META} is incomplete ({exc})") from exc
    for need in ("indptr", "indices", "values"):
        if need not in entries:
            raise _refuse(p, f"array {need!r} is missing from {META}")
    arrays: dict[str, np.ndarray] = {}
    for name, ent in entries.items():
        if name not in CACHE_ARRAYS:
            raise _refuse(p, f"unknown array {name!r}")
        fn = os.path.join(p, f"{name}.npy")
        try:
            a = np.load(fn, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise _refuse(p, f"{name}.npy is missing") from None
        except (OSError, ValueError, EOFError) as exc:
            raise _refuse(p, f"{name}.npy is damaged or truncated ({exc})") from exc
        if a.dtype.str != ent.get("dtype") or list(a.shape) != ent.get("shape"):
            raise _refuse(p, f"{name}.npy does not match {META} (dtype/shape)")
        if verify and crc(a) != ent.get("crc32"):
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
    return shape, arrays
