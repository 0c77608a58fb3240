# Type stub of the compiled SGD kernels (_sgd.pyx). `recs` arrays have the record dtype
# mfkit.models.sgd.RATING_DTYPE (int32 u, int32 i, float32 r).
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)
_Records = np.ndarray[Any, np.dtype[np.void]]

LOSS_SQUARED: int
LOSS_HUBER: int
LOSS_ABSOLUTE: int

def _check_state(
    P: npt.NDArray[_F],
    Q: npt.NDArray[_F],
    bu: npt.NDArray[_F],
    bi: npt.NDArray[_F],
    biases: bool,
    P0: npt.NDArray[_F] | None,
    Q0: npt.NDArray[_F] | None,
    loss: int,
    delta: float,
    Gp: npt.NDArray[_F] | None,
    Gq: npt.NDArray[_F] | None,
    Gbu: npt.NDArray[_F] | None,
    Gbi: npt.NDArray[_F] | None,
    isa: int = 0,
) -> None: ...
def sgd_epoch(
    recs: _Records,
    P: npt.NDArray[_F],
    Q: npt.NDArray[_F],
    bu: npt.NDArray[_F],
    bi: npt.NDArray[_F],
    mu: float,
    lr: float,
    reg: float,
    reg_bias: float,
    biases: bool,
    P0: npt.NDArray[_F] | None = None,
    Q0: npt.NDArray[_F] | None = None,
    prior: float = 0.0,
    *,
    loss: int = 0,
    delta: float = 1.0,
    Gp: npt.NDArray[_F] | None = None,
    Gq: npt.NDArray[_F] | None = None,
    Gbu: npt.NDArray[_F] | None = None,
    Gbi: npt.NDArray[_F] | None = None,
    isa: int = 0,
) -> tuple[float, int]: ...
def shuffle_records(recs: _Records, seed: int) -> None: ...
def sgd_block_epoch(
    recs: _Records,
    offsets: npt.NDArray[np.int64],
    strata: npt.NDArray[np.int64],
    block_seeds: npt.NDArray[np.uint64],
    shuffle: bool,
    n_threads: int,
    P: npt.NDArray[_F],
    Q: npt.NDArray[_F],
    bu: npt.NDArray[_F],
    bi: npt.NDArray[_F],
    mu: float,
    lr: float,
    reg: float,
    reg_bias: float,
    biases: bool,
    P0: npt.NDArray[_F] | None = None,
    Q0: npt.NDArray[_F] | None = None,
    prior: float = 0.0,
    *,
    loss: int = 0,
    delta: float = 1.0,
    Gp: npt.NDArray[_F] | None = None,
    Gq: npt.NDArray[_F] | None = None,
    Gbu: npt.NDArray[_F] | None = None,
    Gbi: npt.NDArray[_F] | None = None,
    isa: int = 0,
) -> tuple[float, int]: ...
def sgd_rows_epoch(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    values: npt.NDArray[np.float32],
    seg: npt.NDArray[np.int64],
    group_users: npt.NDArray[np.int32],
    group_ptr: npt.NDArray[np.int64],
    strata: npt.NDArray[np.int64],
    block_seeds: npt.NDArray[np.uint64],
    shuffle: bool,
    n_threads: int,
    P: npt.NDArray[_F],
    Q: npt.NDArray[_F],
    bu: npt.NDArray[_F],
    bi: npt.NDArray[_F],
    mu: float,
    lr: float,
    reg: float,
    reg_bias: float,
    biases: bool,
    P0: npt.NDArray[_F] | None = None,
    Q0: npt.NDArray[_F] | None = None,
    prior: float = 0.0,
    *,
    loss: int = 0,
    delta: float = 1.0,
    Gp: npt.NDArray[_F] | None = None,
    Gq: npt.NDArray[_F] | None = None,
    Gbu: npt.NDArray[_F] | None = None,
    Gbi: npt.NDArray[_F] | None = None,
    isa: int = 0,
    user_chunk: int = 16,
) -> tuple[float, int]: ...
