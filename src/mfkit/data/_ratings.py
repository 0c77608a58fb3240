"""The rating container: explicit ratings of n_users x n_items in CSR form.

Every mfkit model takes a :class:`Ratings` (or anything :func:`as_ratings` turns into one).
The arrays are normalised once here, so the kernels can trust them:

* ``indptr``  int64, length n_users + 1, non-decreasing;
* ``indices`` int32 item index per rating, sorted within each user, no duplicates;
* ``values``  float32 ratings, all finite;
* optional ``user_ids`` / ``item_ids``: the original id of each row / column
  (ints or strings), so results can be reported in the user's own ids;
* optional ``timestamps``: int64, aligned with ``values``.

The arrays are read-only; a CSC view (``csc()``) and the per-rating user index
(``user_index()``) are built once, on demand, and cached.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfkit._core.validation import resolve_n_threads
from mfkit.data import _assemble
from mfkit.data._cache import read_cache, write_cache
from mfkit.data._csr import DUPLICATE_CHOICES, Duplicates, assemble_csr_arrays, map_ids_to_indices
from mfkit.data._idmap import IdMap, as_id_array, check_unique_ids

_INT32_MAX = np.iinfo(np.int32).max


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class Ratings:
    """Explicit ratings of ``n_users x n_items`` in CSR form (immutable).

    Build one with :meth:`from_scipy`, :meth:`from_dense`, :meth:`from_triplets`,
    :meth:`from_dataframe`, or let :func:`as_ratings` pick. Missing ratings are simply
    not stored; a stored rating may be any finite number (0 included).
    """

    __slots__ = (
        "indptr",
        "indices",
        "values",
        "shape",
        "user_ids",
        "item_ids",
        "timestamps",
        "_csc",
        "_user_index",
    )

    def __init__(
        self,
        indptr: Any,
        indices: Any,
        values: Any,
        shape: tuple[int, int],
        *,
        user_ids: Any = None,
        item_ids: Any = None,
        timestamps: Any = None,
        check: bool = True,
    ) -> None:
        n_users, n_items = (int(shape[0]), int(shape[1]))
        if n_users < 0 or n_items < 0:
            raise ValueError(f"shape must be non-negative, got {shape}")
        if n_items > _INT32_MAX or n_users > _INT32_MAX:
            raise ValueError(f"shape {shape} is too large: at most 2**31-1 users and items")
        indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        indices_in = np.asarray(indices)
        values_in = np.asarray(values)
        if check:
            if indptr.ndim != 1 or len(indptr) != n_users + 1:
                raise ValueError(f"indptr must have n_users + 1 = {n_users + 1} entries")
            if indices_in.ndim != 1 or values_in.ndim != 1 or len(indices_in) != len(values_in):
                raise ValueError("indices and values must be 1-d arrays of the same length")
            if indptr[0] != 0 or indptr[-1] != len(indices_in) or np.any(np.diff(indptr) < 0):
                raise ValueError("indptr must start at 0, end at nnz and never decrease")
            if indices_in.dtype.kind not in "iu":
                raise TypeError(f"indices must be integers, got dtype {indices_in.dtype}")
            if values_in.dtype.kind not in "iuf":
                raise TypeError(f"ratings must be numbers, got dtype {values_in.dtype}")
        indices = np.ascontiguousarray(indices_in, dtype=np.int32) if check else indices_in
        if check:
            with np.errstate(over="ignore"):  # a float64 beyond float32 is reported below
                values = np.ascontiguousarray(values_in, dtype=np.float32)
        else:
            values = values_in
        if check:
            if len(indices) and (indices_in.min() < 0 or indices_in.max() >= n_items):
                raise ValueError(
                    f"item indices must lie in [0, {n_items}); got values from "
                    f"{indices_in.min()} to {indices_in.max()}"
                )
            _check_finite_ratings(values_in, "ratings")
            if not np.all(np.isfinite(values)):
                raise ValueError("ratings overflow float32; rescale them")
            if len(indices) > 1:
                same_row = np.repeat(np.arange(n_users), np.diff(indptr))
                step = np.diff(indices.astype(np.int64))
                within = same_row[1:] == same_row[:-1]
                if np.any(within & (step < 0)):
                    raise ValueError("item indices must be sorted within each user row")
                dup = within & (step == 0)
                if np.any(dup):
                    j = int(np.flatnonzero(dup)[0])
                    raise ValueError(
                        f"duplicate (user, item) pair at user index {same_row[j]}, item index "
                        f"{indices[j]}; use duplicates='mean'|'last'|'sum' when building"
                    )
        self.indptr = _readonly(indptr)
        self.indices = _readonly(indices)
        self.values = _readonly(values)
        self.shape = (n_users, n_items)
        self.user_ids = None if user_ids is None else _readonly(as_id_array(user_ids, "user_ids"))
        self.item_ids = None if item_ids is None else _readonly(as_id_array(item_ids, "item_ids"))
        if self.user_ids is not None and len(self.user_ids) != n_users:
            raise ValueError(f"user_ids has {len(self.user_ids)} entries for {n_users} users")
        if self.item_ids is not None and len(self.item_ids) != n_items:
            raise ValueError(f"item_ids has {len(self.item_ids)} entries for {n_items} items")
        if check:
            check_unique_ids(self.user_ids, "user_ids")
            check_unique_ids(self.item_ids, "item_ids")
        if timestamps is not None:
            ts = _as_timestamps(timestamps, values.shape) if check else timestamps
            ts = np.ascontiguousarray(ts, dtype=np.int64)
            if ts.shape != values.shape:
                raise ValueError("timestamps must have one entry per rating")
            self.timestamps: np.ndarray | None = _readonly(ts)
        else:
            self.timestamps = None
        self._csc: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._user_index: np.ndarray | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_scipy(cls, X: Any, *, duplicates: Duplicates = "error") -> Ratings:
        """From a scipy sparse array or matrix of any format. Stored entries are ratings
        (explicit zeros included); entries not stored are missing."""
        if not sp.issparse(X):
            raise TypeError(f"expected a scipy sparse array or matrix, got {type(X).__name__}")
        if X.ndim != 2:
            raise ValueError(f"ratings must be two-dimensional, got {X.ndim} dimensions")
        coo = X.tocoo()
        return cls.from_triplets(
            coo.row, coo.col, coo.data, shape=X.shape, map_ids=False, duplicates=duplicates
        )

    @classmethod
    def from_dense(cls, A: Any, *, missing: float | None = np.nan) -> Ratings:
        """From a dense 2-d array; cells equal to ``missing`` (NaN by default; 0 and -1 are
        common markers) are not ratings. ``missing=None``: every cell is a rating."""
        arr = np.asarray(A)
        if arr.ndim != 2:
            raise ValueError(f"a dense rating matrix must be 2-d, got shape {arr.shape}")
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"a dense rating matrix must hold numbers, got dtype {arr.dtype}")
        if missing is not None and (
            isinstance(missing, bool | np.bool_) or not isinstance(missing, numbers.Real)
        ):
            raise TypeError(
                f"missing must be None or a number (the marker of cells without a rating, "
                f"e.g. np.nan, 0 or -1), got {missing!r}"
            )
        if missing is None:
            mask = np.ones(arr.shape, dtype=bool)
        elif np.isnan(missing):
            mask = ~np.isnan(arr) if arr.dtype.kind == "f" else np.ones(arr.shape, dtype=bool)
        else:
            mask = arr != missing
        rows, cols = np.nonzero(mask)
        vals = arr[rows, cols]
        if vals.dtype.kind == "f" and not np.all(np.isfinite(vals)):
            bad = np.flatnonzero(~np.isfinite(vals))[0]
            raise ValueError(
                f"the rating matrix has a non-finite value at ({rows[bad]}, {cols[bad]}); "
                f"mark missing cells with missing= (currently {missing!r})"
            )
        return cls.from_triplets(rows, cols, vals, shape=arr.shape, map_ids=False)

    @classmethod
    def from_triplets(
        cls,
        users: Any,
        items: Any,
        ratings: Any,
        *,
        shape: tuple[int, int] | None = None,
        map_ids: bool = True,
        duplicates: Duplicates = "error",
        timestamps: Any = None,
    ) -> Ratings:
        """From parallel arrays of user ids, item ids and ratings.

        ``map_ids=True`` (default): ids may be any integers or strings; they are mapped to
        contiguous indices in sorted id order and kept as ``user_ids`` / ``item_ids``.
        ``map_ids=False``: ids are already indices in ``[0, shape)``.
        ``duplicates``: what to do with repeated (user, item) pairs: ``'error'`` (default),
        keep the ``'mean'``, the ``'last'`` (in input order) or the ``'sum'``.
        """
        if duplicates not in DUPLICATE_CHOICES:
            raise ValueError(f"duplicates must be one of {DUPLICATE_CHOICES}, got {duplicates!r}")
        u = np.asarray(users)
        i = np.asarray(items)
        r = np.asarray(ratings)
        for name, a in (("users", u), ("items", i), ("ratings", r)):
            if a.ndim != 1:
                raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
        if not (len(u) == len(i) == len(r)):
            raise ValueError(
                f"users, items and ratings must have the same length; got {len(u)}, {len(i)} "
                f"and {len(r)}"
            )
        if len(r) == 0:
            raise ValueError("no ratings: the data is empty")
        if r.dtype.kind not in "iuf":
            raise TypeError(f"ratings must be numbers, got dtype {r.dtype}")
        _check_finite_ratings(r, "ratings")
        ts = None if timestamps is None else _as_timestamps(timestamps, r.shape)
        user_ids = item_ids = None
        if map_ids:
            # lists go to as_id_array as given: np.asarray would turn [1, 'a'] into strings
            user_ids, u_idx = map_ids_to_indices(as_id_array(_raw(users, u), "users"))
            item_ids, i_idx = map_ids_to_indices(as_id_array(_raw(items, i), "items"))
            n_users, n_items = len(user_ids), len(item_ids)
            if shape is not None and tuple(shape) != (n_users, n_items):
                raise ValueError("shape cannot be combined with map_ids=True")
        else:
            u_idx = _check_index(u, "users", None if shape is None else shape[0])
            i_idx = _check_index(i, "items", None if shape is None else shape[1])
            if shape is None:
                shape = (int(u_idx.max()) + 1, int(i_idx.max()) + 1)
            n_users, n_items = int(shape[0]), int(shape[1])
        if n_items > _INT32_MAX or n_users > _INT32_MAX:
            raise ValueError("at most 2**31-1 users and items are supported")
        return assemble_csr(
            u_idx, i_idx, r, ts, (n_users, n_items), duplicates=duplicates,
            user_ids=user_ids, item_ids=item_ids,
        )  # fmt: skip

    @classmethod
    def from_dataframe(
        cls,
        df: Any,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str = "rating",
        *,
        timestamp_col: str | None = None,
        duplicates: Duplicates = "error",
    ) -> Ratings:
        """From a pandas DataFrame with named user, item and rating columns (ids are mapped)."""
        wanted = (user_col, item_col, rating_col) + (
            () if timestamp_col is None else (timestamp_col,)
        )
        missing_cols = [c for c in wanted if c not in df.columns]
        if missing_cols:
            raise ValueError(
                f"DataFrame has no column(s) {missing_cols}; it has {list(df.columns)}. "
                f"Name them with user_col=, item_col=, rating_col=, timestamp_col="
            )
        users = _column(df[user_col], user_col)
        items = _column(df[item_col], item_col)
        ts = None if timestamp_col is None else df[timestamp_col].to_numpy()
        return cls.from_triplets(
            users,
            items,
            _rating_column(df[rating_col], rating_col),
            duplicates=duplicates,
            timestamps=ts,
        )

    # ------------------------------------------------------------------ binary cache
    def save(self, path: Any) -> None:
        """Write the ratings to the folder ``path`` as a binary cache that :meth:`load` opens
        (memory-mapped) in a fraction of a second.

        Layout (version 2, no pickle): one ``.npy`` file per array (``indptr``, ``indices``,
        ``values`` and, when present, ``user_ids``, ``item_ids``, ``timestamps``) and
        ``meta.json`` (format name and version, shape, nnz, each array's dtype, shape and
        CRC-32); since version 2 the arrays sit in a subfolder that ``meta.json`` names. A
        new cache is written under a temporary name and renamed into place; an existing
        cache at ``path`` is replaced atomically for readers (a reader opens the old version
        or the new one, never a mix or nothing); anything else there is refused. Leftovers
        of saves that were killed are removed by the next save.
        """
        arrays = {
            "indptr": self.indptr,
            "indices": self.indices,
            "values": self.values,
            "user_ids": self.user_ids,
            "item_ids": self.item_ids,
            "timestamps": self.timestamps,
        }
        write_cache(path, arrays, self.shape, self.nnz)

    @classmethod
    def load(cls, path: Any, mmap: bool = True, verify: bool | None = None) -> Ratings:
        """Open a cache folder written by :meth:`save`.

        ``mmap=True`` (default) memory-maps the arrays (read-only). Every load checks the
        structure, whoever wrote the folder: the layout, dtypes and lengths, the row pointer,
        that item indices are in range, sorted and distinct within each user, that ratings
        are finite and that ids are distinct int64 or strings (O(nnz), in a parallel
        kernel), so a damaged or crafted cache raises ``ValueError`` rather than reaching a
        kernel. ``verify=True`` also checks every array's CRC-32 (catches a flipped bit that
        leaves the structure valid, e.g. in a rating); default ``True`` without mmap and
        ``False`` with it. A foreign or newer-version folder raises ``ValueError``.
        """
        shape, arrays = read_cache(path, mmap=mmap, verify=verify)
        return cls(
            arrays["indptr"],
            arrays["indices"],
            arrays["values"],
            shape,
            user_ids=arrays.get("user_ids"),
            item_ids=arrays.get("item_ids"),
            timestamps=arrays.get("timestamps"),
            check=False,
        )

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return self.shape[0]

    @property
    def n_items(self) -> int:
        return self.shape[1]

    @property
    def nnz(self) -> int:
        return len(self.values)

    def __len__(self) -> int:
        return self.nnz

    def __repr__(self) -> str:
        return (
            f"Ratings({self.n_users} users x {self.n_items} items, {self.nnz} ratings"
            f"{', with ids' if self.user_ids is not None else ''}"
            f"{', with timestamps' if self.timestamps is not None else ''})"
        )

    @property
    def user_map(self) -> IdMap:
        return IdMap(self.user_ids, self.n_users)

    @property
    def item_map(self) -> IdMap:
        return IdMap(self.item_ids, self.n_items)

    def user_index(self) -> np.ndarray:
        """The user index of every rating (int32, CSR order); built once and cached."""
        if self._user_index is None:
            counts = np.diff(self.indptr)
            self._user_index = _readonly(np.repeat(np.arange(self.n_users, dtype=np.int32), counts))
        return self._user_index

    def user_counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def item_counts(self) -> np.ndarray:
        # in runs: bincount copies its int32 input to intp, which for the whole array would
        # be a transient 8 bytes per rating. A run is 2**16 ratings (half a MB), or n_items
        # when that is more, so that each run's O(n_items) count array is paid for by at
        # least as many ratings (the scratch stays within the size of the result)
        counts = np.zeros(self.n_items, dtype=np.intp)
        step = max(1 << 16, self.n_items)
        for start in range(0, self.nnz, step):
            counts += np.bincount(self.indices[start : start + step], minlength=self.n_items)
        return counts

    def _csc_order(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(item pointer, stable order of the ratings by item) from the counting sort."""
        return _assemble.csr_order(
            self.indices, self.user_index(), self.n_items, self.n_users, resolve_n_threads(None)
        )

    def csc_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same ratings by item: ``(indptr int64, user indices int32, values float32)``,
        users ascending within each item; built once (a stable counting sort, parallel) and
        cached. What the item half of ALS reads."""
        if self._csc is None:
            indptr, order = self._csc_order()
            nt = resolve_n_threads(None)
            if order is None:  # already in item order (one user, or a diagonal pattern)
                users, vals = self.user_index(), self.values
            else:
                users = _assemble.take(self.user_index(), order, nt)
                vals = _assemble.take(self.values, order, nt)
            del order  # not kept: it would cost 4-8 bytes per rating for as long as self lives
            self._csc = (_readonly(indptr), _readonly(users), _readonly(vals))
        return self._csc

    def csc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`csc_arrays` plus the position of each entry in CSR order (int64). The
        positions are computed on every call and not kept; use :meth:`csc_arrays` when you do
        not need them."""
        indptr, users, vals = self.csc_arrays()
        _, order = self._csc_order()
        pos = np.arange(self.nnz, dtype=np.int64) if order is None else order.astype(np.int64)
        return indptr, users, vals, _readonly(pos)

    def to_scipy(self) -> sp.csr_array:
        """A scipy ``csr_array`` sharing the index and value arrays."""
        return sp.csr_array((self.values, self.indices, self.indptr), shape=self.shape)

    def to_triplets(self, original_ids: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, items, ratings) in CSR order; indices, or original ids when asked."""
        u = self.user_index()
        i = self.indices
        if original_ids:
            return self.user_map.original(u), self.item_map.original(i), self.values
        return u, i, self.values

    def subset(self, mask_or_index: Any) -> Ratings:
        """The ratings selected by a boolean mask or positions (CSR order), with the same
        shape and id maps (users or items left without ratings keep their place)."""
        sel = np.asarray(mask_or_index)
        if sel.dtype == bool:
            if sel.shape != (self.nnz,):
                raise ValueError(f"mask must have one entry per rating ({self.nnz})")
            pos = np.flatnonzero(sel)
        else:
            if sel.ndim != 1 or (sel.size and sel.dtype.kind not in "iu"):
                raise TypeError(
                    f"subset takes a boolean mask or a 1-d array of integer positions, got "
                    f"dtype {sel.dtype} and shape {sel.shape}"
                )
            pos = np.sort(sel.astype(np.int64))
            if len(pos) and (pos[0] < 0 or pos[-1] >= self.nnz):
                raise ValueError(
                    f"subset positions must lie in [0, {self.nnz}) (negative positions do not "
                    f"count from the end); got {pos[0]} to {pos[-1]}"
                )
            if len(pos) > 1 and np.any(pos[1:] == pos[:-1]):
                raise ValueError("subset positions repeat a rating; give each position once")
        counts = np.bincount(self.user_index()[pos], minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return Ratings(
            indptr,
            self.indices[pos],
            self.values[pos],
            self.shape,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            timestamps=None if self.timestamps is None else self.timestamps[pos],
            check=False,
        )


def _raw(given: Any, arr: np.ndarray) -> Any:
    return given if isinstance(given, list | tuple) else arr


def _column(col: Any, name: str) -> np.ndarray:
    if col.isna().any():
        raise ValueError(f"column {name!r} has missing ids (NaN/None); drop those rows first")
    arr = col.to_numpy()
    if arr.dtype == object or str(col.dtype) in ("string", "category"):
        values = arr.tolist() if arr.dtype == object else None
        kinds = {type(x) for x in values} if values is not None else {str}
        if len(kinds) > 1 and str in kinds:
            names = ", ".join(sorted(t.__name__ for t in kinds))
            raise TypeError(
                f"column {name!r} mixes strings and other values ({names}), so 1 and '1' "
                f"would be one id; make the column all integers or all strings "
                f"(df[{name!r}].astype(str))"
            )
        if kinds <= {str}:
            arr = col.astype(str).to_numpy(dtype=str)
        else:
            arr = as_id_array(arr, f"column {name!r}")
    return arr


def _rating_column(col: Any, name: str) -> np.ndarray:
    # pandas' nullable dtypes (Int64, Float64, boolean) have a NumPy-like kind too
    if getattr(col.dtype, "kind", "O") not in "iuf":
        raise TypeError(
            f"column {name!r} must hold numbers (ratings), got dtype {col.dtype}; convert it "
            f"first, e.g. pandas.to_numeric(df[{name!r}])"
        )
    return np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan))


def _as_timestamps(timestamps: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Timestamps as integers (``datetime64`` values become seconds), one per rating."""
    ts = np.asarray(timestamps)
    if ts.shape != shape:
        raise ValueError("timestamps must have one entry per rating")
    if ts.dtype.kind not in "iu":
        if np.issubdtype(ts.dtype, np.datetime64):
            nat = np.isnat(ts)
            if nat.any():
                raise ValueError(
                    f"timestamps contain {int(nat.sum())} missing value(s) (NaT), first at "
                    f"position {int(np.flatnonzero(nat)[0])}; drop those rows or fill them"
                )
            return ts.astype("datetime64[s]").astype(np.int64)
        raise TypeError(
            f"timestamps must be integers (e.g. Unix seconds) or numpy.datetime64, got dtype "
            f"{ts.dtype}"
        )
    return ts


def _check_finite_ratings(r: np.ndarray, name: str) -> None:
    if r.dtype.kind == "f" and r.size and not np.all(np.isfinite(r)):
        bad = np.flatnonzero(~np.isfinite(r))
        raise ValueError(
            f"{name} contain {len(bad)} NaN or inf value(s), first at position {bad[0]}; "
            f"drop missing ratings instead of storing them"
        )


def _check_index(a: np.ndarray, name: str, bound: int | None) -> np.ndarray:
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and (a.size == 0 or np.all(a == np.round(a))):
            a = a.astype(np.int64)
        else:
            raise TypeError(
                f"{name} must be integer indices with map_ids=False, got dtype {a.dtype}; "
                f"use map_ids=True for arbitrary ids"
            )
    if a.size and a.min() < 0:
        raise ValueError(f"{name} has negative index {a.min()}; indices must be >= 0")
    if bound is not None and a.size and a.max() >= bound:
        raise ValueError(
            f"{name} has index {a.max()} out of range for {bound} rows/columns; "
            f"enlarge shape= or fix the ids"
        )
    return a


def as_ratings(
    data: Any,
    *,
    missing: float | None = np.nan,
    duplicates: Duplicates = "error",
) -> Ratings:
    """Turn ``data`` into :class:`Ratings`.

    Accepts a :class:`Ratings`; a scipy sparse array or matrix (stored entries are ratings);
    a dense 2-d ndarray (cells equal to ``missing`` are not ratings); a ``(users, items,
    ratings)`` tuple of arrays of arbitrary ids; or a pandas DataFrame with columns
    ``user``, ``item``, ``rating`` (use :meth:`Ratings.from_dataframe` for other names).
    """
    if isinstance(data, Ratings):
        return data
    if sp.issparse(data):
        return Ratings.from_scipy(data, duplicates=duplicates)
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        return Ratings.from_dataframe(data, duplicates=duplicates)
    if isinstance(data, np.ndarray):
        if data.ndim == 2:
            return Ratings.from_dense(data, missing=missing)
        raise ValueError(
            f"a rating array must be 2-d (users x items), got shape {data.shape}; for "
            f"triplets pass a tuple (users, items, ratings)"
        )
    if isinstance(data, tuple) and len(data) == 3:
        return Ratings.from_triplets(data[0], data[1], data[2], duplicates=duplicates)
    if isinstance(data, list):
        return Ratings.from_dense(np.asarray(data), missing=missing)
    raise TypeError(
        "data must be mfkit.Ratings, a scipy sparse matrix, a dense 2-d array, a "
        f"(users, items, ratings) tuple or a pandas DataFrame; got {type(data).__name__}"
    )


def assemble_csr(
    u_idx: np.ndarray,
    i_idx: np.ndarray,
    values: np.ndarray,
    timestamps: np.ndarray | None,
    shape: tuple[int, int],
    *,
    duplicates: Duplicates = "error",
    user_ids: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
    n_threads: int | None = None,
    where: str = "",
    finite: bool = False,
    consume: bool = False,
) -> Ratings:
    """The container from ratings in any order, given as user and item indices (see
    :func:`mfkit.data.assemble_csr_arrays` for the arguments)."""
    indptr, indices, vals32, ts = assemble_csr_arrays(
        u_idx, i_idx, values, timestamps, shape, duplicates=duplicates, user_ids=user_ids,
        item_ids=item_ids, n_threads=n_threads, where=where, finite=finite, consume=consume,
    )  # fmt: skip
    return Ratings(
        indptr, indices, vals32, shape, user_ids=user_ids, item_ids=item_ids,
        timestamps=ts, check=False,
    )  # fmt: skip
