"""The binary ratings cache: a folder with a ``meta.json`` and ``.npy`` arrays that
:meth:`mfkit.Ratings.save` writes and :meth:`mfkit.Ratings.load` memory-maps. Version 2 keeps
the arrays in a version subfolder (``v-<random>``) that ``meta.json`` names, so a cache is
replaced for readers by renaming one file; version 1 (arrays beside ``meta.json``) is read.

This module knows the folder layout and checks it; the container builds itself from the
arrays (so the format sits below the container and both ``mfkit.io`` and
:class:`mfkit.Ratings` use this one definition, detection included).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import zlib
from typing import Any

import numpy as np

from mfkit._core.files import current_umask, disk_full, is_abandoned, lock, write_error
from mfkit._core.version import __version__
from mfkit.data._csr import check_csr_structure
from mfkit.data._idmap import check_unique_ids

CACHE_FORMAT = "mfkit-ratings-cache"
#: version 2 keeps the arrays in a subfolder named by meta.json (version 1: beside it)
CACHE_VERSION = 2
META = "meta.json"
LOCK = ".lock"
VERSION_PREFIX = "v-"
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


def _version_names(path: str) -> list[str]:
    try:
        return [n for n in os.listdir(path) if n.startswith(VERSION_PREFIX)]
    except OSError:
        return []


class _Writer:
    def __init__(self, fh: Any) -> None:
        self.fh = fh

    def write(self, data: Any) -> int:
        return int(self.fh.write(data))


def _write_arrays(folder: str, arrays: dict[str, np.ndarray | None]) -> dict[str, Any]:
    entries = {}
    for name, a in arrays.items():
        if a is None:
            continue
        fn = os.path.join(folder, name + ".npy")
        with open(fn, "wb") as fh:
            # through .write, so that a full disk raises OSError with its errno (NumPy's
            # direct file write reports only "n requested and m written")
            np.save(_Writer(fh), np.ascontiguousarray(a), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        entries[name] = {
            "file": name + ".npy",
            "dtype": np.dtype(a.dtype).str,
            "shape": list(a.shape),
            "crc32": crc(a),
        }
    return entries


def _write_meta(fn: str, meta: dict[str, Any]) -> None:
    with open(fn, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale(parent: str) -> None:
    """Remove temporary cache folders of earlier saves that were killed: a folder being
    written holds the lock of its ``LOCK`` file, a dead writer's does not."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not (name.startswith(".mfkit-cache-") or name.startswith(".mfkit-old-")):
            continue
        full = os.path.join(parent, name)
        lock_file = os.path.join(full, LOCK)
        if os.path.isdir(full) and (
            is_abandoned(lock_file) if os.path.exists(lock_file) else name.startswith(".mfkit-old-")
        ):
            shutil.rmtree(full, ignore_errors=True)


def write_cache(
    path: Any, arrays: dict[str, np.ndarray | None], shape: tuple[int, int], nnz: int
) -> None:
    """Write the container's arrays as a cache folder (see :meth:`mfkit.Ratings.save`).

    A new cache is written under a temporary name and renamed into place. An existing one is
    replaced for readers atomically: the arrays go to a new version subfolder, then
    ``meta.json``, which names the subfolder, is replaced by a rename, and only then are
    the older versions removed (a reader that opened them keeps its copy; one that comes
    too late rereads ``meta.json``). Writers to one path take turns through a lock."""
    dest = os.path.abspath(os.fspath(path))
    if os.path.exists(dest) and not is_cache(dest):
        raise FileExistsError(
            f"{dest!r} exists and is not an mfkit ratings cache; refusing to replace it "
            f"(remove it or pick another path)"
        )
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"the folder {parent!r} for the cache does not exist")
    _remove_stale(parent)
    version = VERSION_PREFIX + secrets.token_hex(8)
    meta = {
        "format": CACHE_FORMAT,
        "format_version": CACHE_VERSION,
        "mfkit_version": __version__,
        "shape": list(shape),
        "nnz": int(nnz),
        "data": version,
    }
    try:
        if not os.path.exists(dest):
            tmp = tempfile.mkdtemp(prefix=".mfkit-cache-", dir=parent)
            try:
                fd = os.open(os.path.join(tmp, LOCK), os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    lock(fd)
                    # mkdtemp makes the folder private (0700); give it a plain mkdir's mode
                    os.chmod(tmp, 0o777 & ~current_umask())
                    os.mkdir(os.path.join(tmp, version))
                    meta["arrays"] = _write_arrays(os.path.join(tmp, version), arrays)
                    _write_meta(os.path.join(tmp, META), meta)
                    try:
                        os.rename(tmp, dest)
                        _fsync_dir(parent)
                        return
                    except OSError:
                        if not is_cache(dest):  # another writer made it first: replace it
                            raise
                finally:
                    os.close(fd)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        _replace(dest, version, meta, arrays)
    except OSError as exc:
        if disk_full(exc):
            raise write_error(dest, exc) from exc
        raise


def _replace(
    dest: str, version: str, meta: dict[str, Any], arrays: dict[str, np.ndarray | None]
) -> None:
    fd = os.open(os.path.join(dest, LOCK), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        lock(fd)
        # holding the lock, every version folder but the current one is a dead writer's
        current = _current_version(dest)
        for name in _version_names(dest):
            if name != current:
                shutil.rmtree(os.path.join(dest, name), ignore_errors=True)
        folder = os.path.join(dest, version)
        os.mkdir(folder)
        tmp_meta = os.path.join(dest, f".mfkit-{META}.{version}.tmp")
        try:
            meta["arrays"] = _write_arrays(folder, arrays)
            _fsync_dir(folder)
            _write_meta(tmp_meta, meta)
            os.replace(tmp_meta, os.path.join(dest, META))
            _fsync_dir(dest)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            try:
                os.unlink(tmp_meta)
            except OSError:
                pass
            raise
        # the new version is in place: drop the older ones (version 1 kept its arrays at
        # the top of the folder)
        for name in _version_names(dest):
            if name != version:
                shutil.rmtree(os.path.join(dest, name), ignore_errors=True)
        for name in CACHE_ARRAYS:
            try:
                os.unlink(os.path.join(dest, name + ".npy"))
            except OSError:
                pass
    finally:
        os.close(fd)


def _current_version(dest: str) -> str | None:
    try:
        with open(os.path.join(dest, META), encoding="utf-8") as fh:
            data = json.load(fh).get("data")
    except (OSError, ValueError, AttributeError):
        return None
    return data if isinstance(data, str) else None


def _refuse(path: str, why: str) -> ValueError:
    return ValueError(f"{path!r} is not a valid mfkit ratings cache: {why}")


def read_cache(
    path: Any, mmap: bool = True, verify: bool | None = None
) -> tuple[tuple[int, int], dict[str, np.ndarray]]:
    """``(shape, arrays)`` of a cache folder, checked (see :meth:`mfkit.Ratings.load`).

    The structure is always checked (row pointer, index ranges, sorted distinct items per
    user, finite ratings, distinct ids of an allowed dtype), so a damaged or crafted cache
    can never reach a kernel; ``verify`` adds the CRC-32 of every array."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such ratings cache: {p!r}")
    if not os.path.isdir(p):
        raise _refuse(p, "it is a file; a cache is a folder written by Ratings.save")
    verify = (not mmap) if verify is None else bool(verify)
    # a writer replacing the cache removes the old version once the new one is in place: a
    # reader that finds a file gone rereads meta.json and opens the new version
    for attempt in range(20):
        meta = _read_meta(p)
        try:
            shape, arrays = _open_arrays(p, meta, mmap, verify)
            break
        except _Gone as gone:
            if attempt == 19 or _read_meta(p) == meta:
                raise _refuse(p, f"{gone.args[0]} is missing") from None
    check_structure(p, shape, arrays)
    return shape, arrays


class _Gone(Exception):
    pass


def _read_meta(p: str) -> dict[str, Any]:
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
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or version < 1
        or version > CACHE_VERSION
    ):
        raise _refuse(
            p, f"format version {version!r}; this mfkit reads versions 1 to {CACHE_VERSION}"
        )
    return meta


def _open_arrays(
    p: str, meta: dict[str, Any], mmap: bool, verify: bool
) -> tuple[tuple[int, int], dict[str, np.ndarray]]:
    try:
        shape = (int(meta["shape"][0]), int(meta["shape"][1]))
        nnz = int(meta["nnz"])
        entries = dict(meta["arrays"])
        folder = p
        if meta["format_version"] >= 2:
            data = meta["data"]
            if (
                not isinstance(data, str)
                or not data.startswith(VERSION_PREFIX)
                or (os.path.basename(data) != data)
            ):
                raise ValueError(f"bad data folder {data!r}")
            folder = os.path.join(p, data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise _refuse(p, f"{META} is incomplete ({exc})") from exc
    if shape[0] < 0 or shape[1] < 0 or nnz < 0 or max(shape) > np.iinfo(np.int32).max:
        raise _refuse(p, f"shape {shape} / nnz {nnz} in {META} are out of range")
    for need in ("indptr", "indices", "values"):
        if need not in entries:
            raise _refuse(p, f"array {need!r} is missing from {META}")
    arrays: dict[str, np.ndarray] = {}
    for name, ent in entries.items():
        if name not in CACHE_ARRAYS:
            raise _refuse(p, f"unknown array {name!r}")
        if not isinstance(ent, dict):
            raise _refuse(p, f"{META} is incomplete (entry of {name!r})")
        fn = os.path.join(folder, f"{name}.npy")
        try:
            a = np.load(fn, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise _Gone(f"{name}.npy") from None
        except (OSError, ValueError, EOFError, MemoryError) as exc:
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
    return shape, arrays


def check_structure(p: str, shape: tuple[int, int], arrays: dict[str, np.ndarray]) -> None:
    """The structural checks every load runs (see :func:`read_cache`)."""
    indptr, indices, values = arrays["indptr"], arrays["indices"], arrays["values"]
    why = check_csr_structure(indptr, indices, values, shape[1])
    if why is not None:
        raise _refuse(p, why)
    ts = arrays.get("timestamps")
    if ts is not None and (ts.dtype != np.int64 or ts.shape != values.shape):
        raise _refuse(p, "timestamps have the wrong dtype or length")
    for name, n in (("user_ids", shape[0]), ("item_ids", shape[1])):
        ids = arrays.get(name)
        if ids is None:
            continue
        if ids.shape != (n,):
            raise _refuse(p, f"{name} has the wrong length")
        if ids.dtype != np.int64 and ids.dtype.kind != "U":
            raise _refuse(p, f"{name} has dtype {ids.dtype}; ids are int64 or strings")
        try:
            check_unique_ids(ids, name)
        except ValueError as exc:
            raise _refuse(p, str(exc)) from None
