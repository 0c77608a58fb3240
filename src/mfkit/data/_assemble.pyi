# Type stub of the compiled CSR assembly kernels (_assemble.pyx).
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_Id = TypeVar("_Id", np.int32, np.int64)
_Pos = TypeVar("_Pos", np.int32, np.int64)
_G = TypeVar("_G", np.float32, np.float64, np.int32, np.int64)
_W = TypeVar("_W", np.uint32, np.uint64)

def dense_map(
    ids: npt.NDArray[_Id],
    lo: int,
    hi: int,
    n_threads: int,
    out: npt.NDArray[np.int32] | npt.NDArray[_Id] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]: ...
def csr_counts(
    u: npt.NDArray[np.int32],
    i: npt.NDArray[np.int32],
    n_users: int,
    n_items: int,
    n_threads: int = 1,
    shift: int = -1,
) -> tuple[npt.NDArray[np.int64], bool, bool, npt.NDArray[np.int64] | None]: ...
def csr_order(
    u: npt.NDArray[np.int32],
    i: npt.NDArray[np.int32],
    n_users: int,
    n_items: int,
    n_threads: int = 1,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32] | npt.NDArray[np.int64] | None]: ...
def _stable_pass(
    keys: npt.NDArray[np.int32],
    src_a: npt.NDArray[np.int32] | npt.NDArray[np.int64] | None,
    dst: npt.NDArray[_Pos],
    n_keys: int,
    nt: int,
) -> None: ...
def first_duplicate(
    indptr: npt.NDArray[np.int64], indices: npt.NDArray[np.int32], n_threads: int = 1
) -> tuple[int, int]: ...
def take(
    a: npt.NDArray[_G], perm: npt.NDArray[np.int32] | npt.NDArray[np.int64], n_threads: int
) -> npt.NDArray[_G]: ...
def check_csr(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    values: npt.NDArray[np.float32] | None,
    n_cols: int,
    n_threads: int = 1,
) -> tuple[int, int]: ...
def bucket_scatter(
    col: npt.NDArray[_W],
    u: npt.NDArray[np.int32],
    shift: int,
    pos: npt.NDArray[np.int64],
    out: npt.NDArray[_W] | None = None,
) -> npt.NDArray[_W]: ...
def bucket_keys(
    u: npt.NDArray[np.int32],
    i: npt.NDArray[np.int32],
    shift: int,
    item_bits: int,
    pos: npt.NDArray[np.int64],
    out: npt.NDArray[np.uint32] | None = None,
) -> npt.NDArray[np.uint32]: ...
def bucket_rows(
    keys: npt.NDArray[np.uint32],
    indptr: npt.NDArray[np.int64],
    shift: int,
    item_bits: int,
    cols: Sequence[npt.NDArray[Any]],
    n_threads: int,
    radix_bits: int = 11,
) -> None: ...
