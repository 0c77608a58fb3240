"""Saving and loading fitted models as portable ``.npz`` files that never need pickle.

Layout (format version 1): one ``.npz`` archive holding ``user_factors``, ``item_factors``,
``user_biases``, ``item_biases``, optionally ``user_ids`` / ``item_ids`` and ``seen_indptr`` /
``seen_indices`` (the training ratings' CSR structure, for excluding seen items), a model's
own fitted arrays as ``fitted_<name>`` (listed in the metadata's ``fitted_arrays``), and
``__meta__``: a
UTF-8 JSON document (stored as a uint8 array) with the format name and version, the mfkit
version, the model class, its parameters, the global mean, rating range, training history and
a SHA-256 digest of every array. Loading uses ``allow_pickle=False``, checks the format,
every digest, shape and dtype, and refuses anything else with a ``ValueError``.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from mfkit._core.files import atomic_write, digest
from mfkit._core.version import __version__
from mfkit.data import IdMap
from mfkit.data._csr import check_csr_structure
from mfkit.data._idmap import check_unique_ids
from mfkit.models._manifest import is_sharded, read_sharded
from mfkit.models._registry import model_class
from mfkit.models._state import FactorState, Fitted

if TYPE_CHECKING:
    from mfkit.models._base import FactorModel

FORMAT_NAME = "mfkit-model"
FORMAT_VERSION = 1
_ARRAYS = ("user_factors", "item_factors", "user_biases", "item_biases")
_EXTRA_PREFIX = "fitted_"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.random.Generator):
        return None  # a Generator's state is not a parameter one can store meaningfully
    if isinstance(value, np.dtype | type):
        return np.dtype(value).name
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return repr(value)


def save_model(model: FactorModel, path: Any, *, seen: bool = True) -> None:
    """Write a fitted model to ``path`` (see the module docstring for the layout).

    ``seen=True`` also stores the training matrix's ``indptr`` / ``indices`` as
    ``seen_indptr`` / ``seen_indices`` (what ``recommend(exclude_seen=True)`` needs). Readers
    that do not know these arrays ignore them, so the format version stays 1."""
    model._check_fitted()
    fitted: Fitted = model._fitted
    arrays: dict[str, np.ndarray] = {
        "user_factors": fitted.state.P,
        "item_factors": fitted.state.Q,
        "user_biases": fitted.state.bu,
        "item_biases": fitted.state.bi,
    }
    if fitted.user_map.ids is not None:
        arrays["user_ids"] = fitted.user_map.ids
    if fitted.item_map.ids is not None:
        arrays["item_ids"] = fitted.item_map.ids
    # a model's own fitted arrays (BayesianMF's bias samples, ...) as "fitted_<name>"
    extra_arrays = sorted(k for k, v in fitted.extras.items() if isinstance(v, np.ndarray))
    for name in extra_arrays:
        arrays[_EXTRA_PREFIX + name] = fitted.extras[name]
    seen_arrays = fitted.seen
    if seen and seen_arrays is not None:
        arrays["seen_indptr"] = np.asarray(seen_arrays[0])
        arrays["seen_indices"] = np.asarray(seen_arrays[1])
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "mfkit_version": __version__,
        "model": type(model).__name__,
        "params": {k: _jsonable(v) for k, v in model.get_params().items()},
        "global_mean": fitted.global_mean,
        "rating_range": list(fitted.rating_range),
        "history": {k: [float(x) for x in v] for k, v in fitted.history.items()},
        "best_epoch": fitted.best_epoch,
        "stop_reason": fitted.stop_reason,
        "fitted": {k: _jsonable(v) for k, v in fitted.extras.items() if k not in extra_arrays},
        "fitted_arrays": extra_arrays,
        "digests": {name: digest(a) for name, a in arrays.items()},
    }
    blob = np.frombuffer(json.dumps(meta, allow_nan=True).encode("utf-8"), dtype=np.uint8)

    def write(fh: IO[bytes]) -> None:
        np.savez(fh, __meta__=blob, **arrays)  # type: ignore[arg-type]

    atomic_write(path, write)


def _refuse(path: Any, why: str) -> ValueError:
    return ValueError(f"{os.fspath(path)!s} is not a valid mfkit model file: {why}")


def _prescan(path: Any) -> None:
    """Refuse an archive whose members are not plain ``.npy`` arrays or declare more data
    than they hold (a crafted header could ask for 2**40 elements), before any is read."""
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise _refuse(path, f"damaged or not an .npz archive ({exc})") from exc
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise _refuse(path, f"member {info.filename!r} is not a NumPy array")
            try:
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
                raise _refuse(path, f"member {info.filename!r} is damaged ({exc})") from exc
            except NotImplementedError as exc:
                raise _refuse(path, f"member {info.filename!r} is damaged ({exc})") from exc
            if dtype.hasobject:
                raise _refuse(path, f"member {info.filename!r} needs pickle (object dtype)")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > info.file_size:
                raise _refuse(
                    path,
                    f"member {info.filename!r} declares shape {shape} ({nbytes} bytes) but "
                    f"holds {info.file_size} bytes",
                )


def read_npz(path: Any, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify an mfkit ``.npz``: metadata and arrays, digests checked."""
    if os.path.isdir(path):
        raise _refuse(path, f"it is a folder; an mfkit {kind} file is one .npz file")
    _prescan(path)
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            names = list(npz.files)
            if "__meta__" not in names:
                raise _refuse(path, f"no mfkit metadata (not an mfkit {kind} file?)")
            arrays = {name: npz[name] for name in names}
        for name, a in arrays.items():
            if not isinstance(a, np.ndarray):
                raise _refuse(path, f"entry {name!r} is not a NumPy array")
    except FileNotFoundError:
        raise
    except ValueError as exc:
        if "not a valid mfkit" in str(exc):
            raise
        raise _refuse(path, f"cannot be read without pickle ({exc})") from exc
    except (
        OSError,
        zipfile.BadZipFile,
        EOFError,
        KeyError,
        MemoryError,
        RuntimeError,
        NotImplementedError,
        zlib.error,
    ) as exc:
        raise _refuse(path, f"damaged or not an .npz archive ({exc})") from exc
    meta_blob = arrays.pop("__meta__")
    if meta_blob.dtype != np.uint8 or meta_blob.ndim != 1:
        raise _refuse(path, "metadata is damaged")
    try:
        meta = json.loads(meta_blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(path, "metadata is damaged") from exc
    if not isinstance(meta, Mapping):
        raise _refuse(path, "metadata is damaged")
    digests = meta.get("digests")
    if not isinstance(digests, Mapping) or set(digests) != set(arrays):
        raise _refuse(path, "the list of arrays does not match the metadata")
    for name, a in arrays.items():
        if digest(a) != digests[name]:
            raise _refuse(path, f"array {name!r} was altered or damaged (checksum mismatch)")
    return dict(meta), arrays


def _check_ids(path: Any, ids: np.ndarray | None, n: int, name: str) -> None:
    if ids is None:
        return
    if ids.shape != (n,):
        raise _refuse(path, f"{name} do not match the factors ({ids.shape} for {n} rows)")
    if ids.dtype != np.int64 and ids.dtype.kind != "U":
        raise _refuse(path, f"{name} have dtype {ids.dtype}; ids are int64 or strings")
    try:
        check_unique_ids(ids, name)
    except ValueError as exc:
        raise _refuse(path, str(exc)) from None


def load(path: Any) -> FactorModel:
    """Load a model written by ``model.save(path)`` (or a folder saved shard by shard, see
    :mod:`mfkit.models._manifest`); damaged or foreign files raise ``ValueError``."""
    if is_sharded(path):
        # structure and digests checked there; the content checks below are the same
        meta, arrays = read_sharded(path)
        meta.update(format=FORMAT_NAME, format_version=FORMAT_VERSION)
    else:
        meta, arrays = read_npz(path, "model")
    if meta.get("format") != FORMAT_NAME:
        raise _refuse(path, f"format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _refuse(path, f"format version {version!r} is not a version number (1, 2, ...)")
    if version > FORMAT_VERSION:
        raise _refuse(
            path, f"format version {version!r} is newer than this mfkit reads ({FORMAT_VERSION})"
        )
    for name in _ARRAYS:
        if name not in arrays:
            raise _refuse(path, f"array {name!r} is missing")
    try:
        cls = model_class(str(meta["model"]))
        # JSON has no tuples: a sequence parameter (such as ImplicitALS.validation_metrics)
        # comes back in the immutable form the defaults use
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
        model = cls(**params)
    except (KeyError, TypeError, ValueError) as exc:
        raise _refuse(path, f"unknown model or parameters ({exc})") from exc
    P, Q = arrays["user_factors"], arrays["item_factors"]
    bu, bi = arrays["user_biases"], arrays["item_biases"]
    if P.ndim != 2 or Q.ndim != 2 or P.shape[1] != Q.shape[1]:
        raise _refuse(path, "factor matrices have inconsistent shapes")
    if P.dtype not in (np.float32, np.float64) or not (P.dtype == Q.dtype == bu.dtype == bi.dtype):
        raise _refuse(path, "factor arrays must share a float32 or float64 dtype")
    if bu.shape != (P.shape[0],) or bi.shape != (Q.shape[0],):
        raise _refuse(path, "bias arrays do not match the factor matrices")
    for name, a in (("user_factors", P), ("item_factors", Q), ("user_biases", bu)):
        if not np.all(np.isfinite(a)):
            raise _refuse(path, f"{name} contain NaN or inf")
    if not np.all(np.isfinite(bi)):
        raise _refuse(path, "item_biases contain NaN or inf")
    user_ids = arrays.get("user_ids")
    item_ids = arrays.get("item_ids")
    _check_ids(path, user_ids, P.shape[0], "user_ids")
    _check_ids(path, item_ids, Q.shape[0], "item_ids")
    extras: dict[str, Any] = {}
    names = meta.get("fitted_arrays", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _refuse(path, "metadata 'fitted_arrays' is malformed")
    for name in names:
        if _EXTRA_PREFIX + name not in arrays:
            raise _refuse(path, f"array {_EXTRA_PREFIX + name!r} is missing")
        extras[name] = np.array(arrays[_EXTRA_PREFIX + name])
    state = FactorState(
        np.ascontiguousarray(P), np.ascontiguousarray(Q), np.array(bu), np.array(bi)
    )
    try:
        lo, hi = (float(x) for x in meta["rating_range"])
        history = {str(k): [float(x) for x in v] for k, v in meta.get("history", {}).items()}
        best = meta.get("best_epoch")
        fitted = Fitted(
            state=state,
            user_map=IdMap(user_ids, P.shape[0]),
            item_map=IdMap(item_ids, Q.shape[0]),
            seen=_read_seen(path, arrays, P.shape[0], Q.shape[0]),
            global_mean=float(meta["global_mean"]),
            rating_range=(lo, hi),
            history=history,
            best_epoch=None if best is None else int(best),
            # files of mfkit 0.1.0 did not record why training stopped
            stop_reason=str(meta.get("stop_reason", "unknown")),
            extras={**dict(meta.get("fitted", {})), **extras},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _refuse(path, f"metadata is incomplete or malformed ({exc})") from exc
    if not (math.isfinite(fitted.global_mean) and math.isfinite(lo) and math.isfinite(hi)):
        raise _refuse(path, "global_mean or rating_range is not finite")
    if lo > hi:
        raise _refuse(path, f"rating_range ({lo}, {hi}) is reversed")
    try:
        model._set_fitted(fitted)
    except (TypeError, ValueError) as exc:
        raise _refuse(path, f"its parameters are invalid ({exc})") from exc
    return model


def _read_seen(
    path: Any, arrays: dict[str, np.ndarray], n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The optional training CSR (``seen_indptr`` / ``seen_indices``), checked."""
    indptr = arrays.get("seen_indptr")
    indices = arrays.get("seen_indices")
    if indptr is None and indices is None:
        return None
    if indptr is None or indices is None:
        raise _refuse(path, "only one of seen_indptr / seen_indices is present")
    if indptr.dtype != np.int64 or indices.dtype != np.int32:
        raise _refuse(path, "seen_indptr / seen_indices have the wrong dtypes")
    if indptr.shape != (n_users + 1,) or indices.ndim != 1:
        raise _refuse(path, "seen_indptr does not match the user factors")
    why = check_csr_structure(indptr, indices, None, n_items)
    if why is not None:
        raise _refuse(path, f"seen_indptr / seen_indices are malformed: {why}")
    indptr.flags.writeable = False
    indices.flags.writeable = False
    return indptr, indices
