"""Original ids (integers or strings) and their contiguous indices."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def as_id_array(ids: Any, name: str) -> np.ndarray:
    """Original ids as a 1-d array of ints or strings (never objects)."""
    if isinstance(ids, list | tuple):
        # NumPy turns [1, 'a'] into strings ('1', 'a') and [2**70] into objects: look first
        kinds = {type(x) for x in ids}
        if len(kinds) > 1 and any(issubclass(t, str) for t in kinds):
            names = ", ".join(sorted(t.__name__ for t in kinds))
            raise TypeError(
                f"{name} mixes strings and other values ({names}); ids must be all integers "
                f"or all strings (convert them with str() first if strings are meant)"
            )
        arr = np.asarray(ids, dtype=object if kinds <= {int} and ids else None)
    else:
        arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == object:
        values = arr.tolist()
        kinds = {type(x) for x in values}
        if kinds <= {str}:
            arr = arr.astype(str)
        elif all(issubclass(t, numbers.Integral) and t is not bool for t in kinds):
            if values and (min(values) < -(2**63) or max(values) > 2**63 - 1):
                raise ValueError(
                    f"{name} has ids outside the int64 range [-2**63, 2**63-1] (e.g. "
                    f"{max(values, key=abs)}), which mfkit cannot store; map them to smaller "
                    f"integers or pass them as strings"
                )
            arr = np.asarray(values, dtype=np.int64)
        else:
            names = ", ".join(sorted(t.__name__ for t in kinds))
            raise TypeError(
                f"{name} must hold integers or strings, found {names}"
                + (
                    "; ids must be all integers or all strings (a column mixing 1 and '1' "
                    "would merge them)"
                    if str in kinds
                    else ""
                )
            )
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold integers or strings, not booleans")
    if arr.dtype.kind == "f":
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf; ids must be integers or strings")
        if arr.size and not np.all(arr == np.round(arr)):
            raise TypeError(f"{name} holds non-integer floats; ids must be integers or strings")
        if arr.size and (arr.min() < -(2.0**63) or arr.max() >= 2.0**63):
            raise ValueError(
                f"{name} has float ids outside the int64 range (e.g. "
                f"{arr[np.argmax(np.abs(arr))]:g}), which would merge into one id; pass them "
                f"as integers in range or as strings"
            )
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iuU":
        raise TypeError(f"{name} must hold integers or strings, got dtype {arr.dtype}")
    if arr.dtype.kind == "u":
        if arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} has ids above 2**63-1, which mfkit cannot store")
        arr = arr.astype(np.int64)
    return arr


class IdMap:
    """Maps original ids to contiguous indices 0..n-1 (``None`` ids: the identity)."""

    __slots__ = ("ids", "n", "_sorter", "_sorted")

    def __init__(self, ids: np.ndarray | None, n: int) -> None:
        self.ids = ids
        self.n = int(n)
        self._sorter: np.ndarray | None = None
        self._sorted = ids
        if ids is not None:
            if len(ids) != n:
                raise ValueError(f"id map has {len(ids)} ids for {n} rows")
            if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
                self._sorter = np.argsort(ids, kind="stable")
                self._sorted = ids[self._sorter]

    def lookup(self, values: Any, name: str) -> np.ndarray:
        """Indices (int64) of ``values``; -1 where a value is not a known id."""
        arr = np.asarray(values).ravel()
        if arr.dtype == object:
            arr = as_id_array(arr, name)
        if self.ids is not None and self.ids.dtype.kind == "U":
            if arr.dtype.kind != "U" and arr.size:
                raise TypeError(f"{name} must be strings like the ids the model was fitted on")
            keys, invalid = arr.astype(str, copy=False), None
        elif arr.dtype.kind == "U":
            raise TypeError(
                f"{name} must be integers like the ids the model was fitted on"
                if self.ids is not None
                else f"{name} must be integer indices (the model was fitted without an id "
                f"map), got dtype {arr.dtype}"
            )
        else:
            keys, invalid = int_keys(arr, name)
        if self._sorted is None:
            out = keys.copy()
            out[(keys < 0) | (keys >= self.n)] = -1
        elif self.n == 0:
            out = np.full(len(keys), -1, dtype=np.int64)
        else:
            pos = np.minimum(np.searchsorted(self._sorted, keys), self.n - 1)
            found = self._sorted[pos] == keys
            if self._sorter is not None:
                pos = self._sorter[pos]
            out = np.where(found, pos, -1).astype(np.int64)
        if invalid is not None:
            out[invalid] = -1
        return out

    def original(self, index: np.ndarray) -> np.ndarray:
        return np.asarray(index) if self.ids is None else self.ids[index]

    def same_as(self, other: IdMap) -> bool:
        if self.n != other.n:
            return False
        if self.ids is None or other.ids is None:
            return self.ids is None and other.ids is None
        return self.ids.dtype.kind == other.ids.dtype.kind and bool(
            np.array_equal(self.ids, other.ids)
        )


def int_keys(arr: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer lookup keys as int64 (never compared through float64, which would merge ids
    above 2**53), and a mask of keys that cannot be ids at all (uint64 above 2**63-1,
    floats out of the int64 range), or None."""
    kind = arr.dtype.kind
    if kind == "i":
        return arr.astype(np.int64, copy=False), None
    if kind == "u":
        big = arr > np.iinfo(np.int64).max
        return arr.astype(np.int64), (big if big.any() else None)
    if kind == "f":
        if arr.size and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise TypeError(f"{name} holds non-integer floats; ids must be integers or strings")
        out = (arr <= -(2.0**63)) | (arr >= 2.0**63)
        keys = np.where(out, 0, arr).astype(np.int64)
        return keys, (out if out.any() else None)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64), None
    raise TypeError(f"{name} must be integer ids or indices, got dtype {arr.dtype}")


def check_unique_ids(ids: np.ndarray | None, name: str) -> None:
    """An id map must name each row once, or lookups would be ambiguous."""
    if ids is None or len(ids) < 2 or np.all(ids[1:] > ids[:-1]):
        return
    s = np.sort(ids)
    dup = np.flatnonzero(s[1:] == s[:-1])
    if len(dup):
        raise ValueError(f"{name} must be distinct; {s[dup[0]].item()!r} appears more than once")
