"""Models saved shard by shard: a folder of ``.npy`` files and a ``manifest.json``.

A fit that keeps its factors on a cluster (``mfkit.distributed``) saves each shard of rows
from the worker that holds it; :func:`mfkit.load` reads the folder back into an ordinary
model. Layout (format ``mfkit-sharded-model``, version 1)::

    path/manifest.json                 written last, by one rename
    path/shards-<token>/<name>.npy     one file per array of each shard, and the id arrays

The manifest holds the model class, its parameters, the global mean, rating range, history
and stop reason, the shape, and for every file its name, shape, dtype and the SHA-256 of
the file's bytes; shards are listed per side (``user``, ``item``) with the rows they hold.

A folder is untrusted input: the manifest's structure, every file name (a plain name inside
the folder), shape and dtype are checked before any file is read, every file's digest before
it is parsed (``allow_pickle=False``), and the arrays then pass the same content checks as a
``.npz`` model file. Errors are ``ValueError`` naming the folder and the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

from mfkit._core.files import atomic_write

FORMAT_NAME = "mfkit-sharded-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: a manifest larger than this is refused unread (a real one is a few KiB per shard)
MAX_MANIFEST_BYTES = 64 << 20
#: the per-shard arrays, their allowed dtypes (little-endian), and their dimensions
SHARD_ARRAYS: dict[str, tuple[tuple[str, ...], int]] = {
    "factors": (("<f4", "<f8"), 2),
    "biases": (("<f4", "<f8"), 1),
    "seen_indptr": (("<i8",), 1),
    "seen_indices": (("<i4",), 1),
}
_NAME = re.compile(r"^(shards-[A-Za-z0-9]{1,64}/)?[A-Za-z0-9_.-]{1,128}\.npy$")


class _Hashing:
    """A binary writer that hashes what goes through it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.sha = fh, hashlib.sha256()

    def write(self, data: Any) -> int:
        self.sha.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def write_array(folder: str, name: str, a: np.ndarray) -> dict[str, Any]:
    """Write ``a`` to ``folder/name`` as ``.npy`` (atomic) and return its manifest entry."""
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":  # pragma: no cover - mfkit's arrays are native
        a = a.astype(a.dtype.newbyteorder("<"))
    box: list[str] = []

    def write(fh: IO[bytes]) -> None:
        h = _Hashing(fh)
        np.lib.format.write_array(h, a, allow_pickle=False)
        box.append(h.sha.hexdigest())

    atomic_write(os.path.join(folder, name), write)
    return {"file": name, "shape": list(a.shape), "dtype": a.dtype.str, "sha256": box[-1]}


def write_manifest(folder: str, manifest: Mapping[str, Any]) -> None:
    """Write ``folder/manifest.json`` by one rename (after every file it lists)."""
    blob = json.dumps(dict(manifest), allow_nan=True, indent=1).encode("utf-8")

    def write(fh: IO[bytes]) -> None:
        fh.write(blob)

    atomic_write(os.path.join(folder, MANIFEST), write)


def is_sharded(path: Any) -> bool:
    """Whether ``path`` is a folder with a manifest (a model saved shard by shard)."""
    try:
        return os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST))
    except (TypeError, ValueError):
        return False


def _refuse(path: str, why: str) -> ValueError:
    return ValueError(f"{path} is not a valid mfkit sharded model: {why}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(folder: str, entry: Any, what: str) -> dict[str, Any]:
    """A manifest file entry, checked for structure and a safe file name (nothing read)."""
    if not isinstance(entry, Mapping) or set(entry) != {"file", "shape", "dtype", "sha256"}:
        raise _refuse(folder, f"the entry of {what} is malformed")
    name, shape, dtype, sha = entry["file"], entry["shape"], entry["dtype"], entry["sha256"]
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise _refuse(folder, f"the file name of {what} ({name!r}) is not a plain file name")
    if not isinstance(shape, list) or not all(_int(d) and d >= 0 for d in shape):
        raise _refuse(folder, f"the shape of {what} ({shape!r}) is malformed")
    if (
        not isinstance(dtype, str)
        or not isinstance(sha, str)
        or not re.fullmatch(r"[0-9a-f]{64}", sha)
    ):
        raise _refuse(folder, f"the dtype or digest of {what} is malformed")
    return dict(entry)


def _read_entry(folder: str, entry: Mapping[str, Any], allowed: tuple[str, ...]) -> np.ndarray:
    """The array of a checked entry: its dtype allowed, the file's digest checked before it
    is parsed, its header equal to the entry."""
    name = entry["file"]
    path = os.path.join(folder, name)
    if entry["dtype"] not in allowed:
        raise _refuse(folder, f"{name} has dtype {entry['dtype']!r}; expected one of {allowed}")
    expected = math.prod(entry["shape"]) * np.dtype(entry["dtype"]).itemsize
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise _refuse(folder, f"the shard file {name} is missing or unreadable ({exc})") from None
    if size > expected + 65536 + 16:
        raise _refuse(folder, f"{name} holds {size} bytes, more than its entry declares")
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except OSError as exc:
        raise _refuse(folder, f"the shard file {name} cannot be read ({exc})") from None
    if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
        raise _refuse(folder, f"the shard file {name} was altered or damaged (checksum mismatch)")
    try:
        fh2 = io.BytesIO(blob)
        version = np.lib.format.read_magic(fh2)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh2)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh2)
    except (ValueError, OSError, EOFError) as exc:
        raise _refuse(folder, f"{name} is not a NumPy .npy file ({exc})") from None
    if dtype.hasobject or fortran or dtype.str != entry["dtype"] or list(shape) != entry["shape"]:
        raise _refuse(folder, f"{name} does not hold the {entry['dtype']} {entry['shape']} array")
    data = blob[fh2.tell() :]
    if len(data) != expected:
        raise _refuse(folder, f"{name} holds {len(data)} data bytes, expected {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _side(folder: str, shards: Any, side: str, n: int, k: int) -> list[dict[str, Any]]:
    """The checked shard list of one side: contiguous rows 0..n, entries checked."""
    if not isinstance(shards, list) or not shards:
        raise _refuse(folder, f"the {side} shards are missing")
    out, start = [], 0
    for s, shard in enumerate(shards):
        what = f"{side} shard {s}"
        if not isinstance(shard, Mapping) or "rows" not in shard or "factors" not in shard:
            raise _refuse(folder, f"{what} is malformed")
        rows = shard["rows"]
        if not (isinstance(rows, list) and len(rows) == 2 and all(_int(r) for r in rows)):
            raise _refuse(folder, f"the rows of {what} are malformed")
        a, b = rows
        if a != start or b < a:
            raise _refuse(folder, f"{what} holds rows {a}..{b}, expected rows from {start}")
        start = b
        checked: dict[str, Any] = {"rows": (a, b)}
        for key in shard:
            if key == "rows":
                continue
            if key not in SHARD_ARRAYS or (side == "item" and key.startswith("seen")):
                raise _refuse(folder, f"{what} has an unknown array {key!r}")
            entry = _check_entry(folder, shard[key], f"{what} {key}")
            want = [b - a, k] if key == "factors" else [b - a]
            if key == "seen_indptr":
                want = [b - a + 1]
            if key != "seen_indices" and entry["shape"] != want:
                raise _refuse(
                    folder, f"{entry['file']} has shape {entry['shape']}, expected {want}"
                )
            if key == "seen_indices" and len(entry["shape"]) != 1:
                raise _refuse(folder, f"{entry['file']} is not 1-d")
            checked[key] = entry
        if "biases" not in checked:
            raise _refuse(folder, f"{what} has no biases")
        out.append(checked)
    if start != n:
        raise _refuse(folder, f"the {side} shards hold {start} rows, the model has {n}")
    return out


def read_sharded(path: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a sharded model folder: the metadata (as in a ``.npz`` model file)
    and the whole arrays (``user_factors``, ..., ``user_ids``, ``seen_indptr``, ...)."""
    folder = os.fspath(path)
    mpath = os.path.join(folder, MANIFEST)
    try:
        if os.path.getsize(mpath) > MAX_MANIFEST_BYTES:
            raise _refuse(folder, f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
        with open(mpath, "rb") as fh:
            meta = json.loads(fh.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(folder, f"{MANIFEST} is damaged ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise _refuse(folder, f"{MANIFEST} does not describe an mfkit sharded model")
    version: Any = meta.get("format_version")
    if not _int(version) or version < 1:
        raise _refuse(folder, f"format version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise _refuse(folder, f"format version {version} is newer than this mfkit reads")
    for key, kind in (("model", str), ("params", dict), ("history", dict), ("fitted", dict)):
        if not isinstance(meta.get(key, {} if key == "fitted" else None), kind):
            raise _refuse(folder, f"{MANIFEST} entry {key!r} is missing or malformed")
    if not isinstance(meta.get("rating_range"), list) or len(meta["rating_range"]) != 2:
        raise _refuse(folder, f"{MANIFEST} entry 'rating_range' is missing or malformed")
    shape: Any = meta.get("shape")
    k: Any = meta.get("factors")
    if not (
        isinstance(shape, list) and len(shape) == 2 and all(_int(d) and d >= 0 for d in shape)
    ) or not (_int(k) and k >= 1):
        raise _refuse(folder, "the shape or factor count is malformed")
    shards = meta.get("shards")
    if not isinstance(shards, Mapping) or set(shards) != {"user", "item"}:
        raise _refuse(folder, "the shard lists are malformed")
    sides = {
        side: _side(folder, shards[side], side, n, k)
        for side, n in zip(("user", "item"), shape, strict=True)
    }
    ids: dict[str, dict[str, Any] | None] = {}
    for side, n in zip(("user", "item"), shape, strict=True):
        entry = meta.get(f"{side}_ids")
        if entry is not None:
            entry = _check_entry(folder, entry, f"{side}_ids")
            if entry["shape"] != [n]:
                raise _refuse(folder, f"{entry['file']} has shape {entry['shape']}, expected [{n}]")
        ids[side] = entry
    # every structure checked: now the files, each digest before its bytes are parsed
    arrays: dict[str, np.ndarray] = {}
    for side, prefix in (("user", "user"), ("item", "item")):
        parts = sides[side]
        fac = [_read_entry(folder, p["factors"], SHARD_ARRAYS["factors"][0]) for p in parts]
        bias = [_read_entry(folder, p["biases"], SHARD_ARRAYS["biases"][0]) for p in parts]
        if len({a.dtype for a in fac + bias}) != 1:
            raise _refuse(folder, f"the {side} shards do not share one dtype")
        arrays[f"{prefix}_factors"] = np.concatenate(fac)
        arrays[f"{prefix}_biases"] = np.concatenate(bias)
        entry = ids[side]
        if entry is not None:
            allowed = ("<i8",) if not entry["dtype"].startswith("<U") else (entry["dtype"],)
            arrays[f"{prefix}_ids"] = _read_entry(folder, entry, allowed)
    users = sides["user"]
    with_seen = ["seen_indptr" in p for p in users]
    if any(with_seen) and not all(with_seen):
        raise _refuse(folder, "only some user shards record their seen items")
    if all(with_seen):
        ptrs, idx, offset = [np.zeros(1, dtype=np.int64)], [], 0
        for p in users:
            if "seen_indices" not in p:
                raise _refuse(folder, "a user shard has seen_indptr without seen_indices")
            ptr = _read_entry(folder, p["seen_indptr"], ("<i8",))
            ind = _read_entry(folder, p["seen_indices"], ("<i4",))
            if ptr[0] != 0 or ptr[-1] != len(ind) or np.any(np.diff(ptr) < 0):
                raise _refuse(folder, f"{p['seen_indptr']['file']} is not a row pointer")
            ptrs.append(ptr[1:] + offset)
            idx.append(ind)
            offset += len(ind)
        arrays["seen_indptr"] = np.concatenate(ptrs)
        arrays["seen_indices"] = np.concatenate(idx) if idx else np.empty(0, np.int32)
    out = {
        key: meta.get(key)
        for key in ("model", "params", "global_mean", "rating_range", "history", "best_epoch")
    }
    out["stop_reason"] = meta.get("stop_reason", "unknown")
    out["fitted"] = meta.get("fitted", {})
    out["fitted_arrays"] = []
    return out, arrays


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "is_sharded",
    "read_sharded",
    "write_array",
    "write_manifest",
]
