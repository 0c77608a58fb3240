# Type stub of the compiled SVD++ kernels (_svdpp.pyx). `recs`/`out` arrays have the record
# dtype mfkit.models.sgd.RATING_DTYPE (int32 u, int32 i, float32 r), laid out by build_layout.
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)
_Records = np.ndarray[Any, np.dtype[np.void]]

def build_layout(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    values: npt.NDArray[np.float32],
    user_chunk: npt.NDArray[np.int32],
    user_group: npt.NDArray[np.int32],
    item_group: npt.NDArray[np.int32],
    C: int,
    B: int,
    out: _Records,
    offsets: npt.NDArray[np.int64],
) -> None: ...
def epoch_plan(
    seed: int | np.unsignedinteger[Any], C: int, B: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint64]]: ...
def svdpp_epoch(
    recs: _Records,
    offsets: npt.NDArray[np.int64],
    chunk_ptr: npt.NDArray[np.int64],
    chunk_users: npt.NDArray[np.int32],
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    chunk_order: npt.NDArray[np.int64],
    strata: npt.NDArray[np.int64],
    block_seeds: npt.NDArray[np.uint64],
    shuffle: bool,
    n_threads: int,
    P: npt.NDArray[_F],
    Q: npt.NDArray[_F],
    Y: npt.NDArray[_F],
    Z: npt.NDArray[_F],
    A: npt.NDArray[_F],
    bu: npt.NDArray[_F],
    bi: npt.NDArray[_F],
    mu: float,
    lr: float,
    reg: float,
    reg_bias: float,
    biases: bool,
    loss: int = 0,
    delta: float = 1.0,
    Gp: npt.NDArray[_F] | None = None,
    Gq: npt.NDArray[_F] | None = None,
    Gy: npt.NDArray[_F] | None = None,
    Gbu: npt.NDArray[_F] | None = None,
    Gbi: npt.NDArray[_F] | None = None,
) -> tuple[float, int]: ...
def effective_user_factors(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    P: npt.NDArray[_F],
    Y: npt.NDArray[_F],
    out: npt.NDArray[_F],
    n_threads: int,
) -> None: ...
