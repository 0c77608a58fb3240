# Type stub of the compiled ALS kernels (_als.pyx). Empty ybias/xbias: no biases; an empty
# X0: no prior; an empty row_sse: no per-row residual sums.
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

_F = TypeVar("_F", np.float32, np.float64)

@disjoint_base
class RowScratch:
    k: int
    itemsize: int
    n_threads: int
    rows: int
    buffer: npt.NDArray[np.uint8]
    def __init__(self, k: int, rows: int, itemsize: int, n_threads: int) -> None: ...
    @property
    def nbytes(self) -> int: ...

def max_row_length(indptr: npt.NDArray[np.int64]) -> int: ...
def cholesky_half_step(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    values: npt.NDArray[np.float32],
    Y: npt.NDArray[_F],
    ybias: npt.NDArray[_F],
    X: npt.NDArray[_F],
    xbias: npt.NDArray[_F],
    X0: npt.NDArray[_F],
    mu: float,
    reg: float,
    reg_bias: float,
    prior: float,
    weighted: bool,
    row_sse: npt.NDArray[np.float64],
    n_threads: int,
    isa: int = 0,
    scratch: RowScratch | None = None,
) -> tuple[int, int]: ...
def cg_half_step(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    values: npt.NDArray[np.float32],
    Y: npt.NDArray[_F],
    ybias: npt.NDArray[_F],
    X: npt.NDArray[_F],
    xbias: npt.NDArray[_F],
    X0: npt.NDArray[_F],
    mu: float,
    reg: float,
    reg_bias: float,
    prior: float,
    weighted: bool,
    cg_steps: int,
    row_sse: npt.NDArray[np.float64],
    n_threads: int,
    isa: int = 0,
    scratch: RowScratch | None = None,
) -> tuple[int, int]: ...
def solve_systems(
    A: npt.NDArray[np.float32], b: npt.NDArray[np.float32], isa: int = 0, batched: bool = True
) -> npt.NDArray[np.int32]: ...
