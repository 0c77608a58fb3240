# Type stub of the compiled shared kernels (_common.pyx).
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

def openmp_enabled() -> bool: ...
def predict_pairs(
    P: npt.NDArray[_F],
    Q: npt.NDArray[_F],
    bu: npt.NDArray[_F],
    bi: npt.NDArray[_F],
    mu: float,
    users: npt.NDArray[np.int64],
    items: npt.NDArray[np.int64],
    out: npt.NDArray[np.float64],
    n_threads: int,
) -> None: ...
def shuffle_inplace(a: npt.NDArray[np.int64], seed: int) -> None: ...
def all_finite(A: npt.NDArray[_F]) -> bool: ...
def scan_abs_max(A: npt.NDArray[_F], n_threads: int = 1) -> tuple[bool, float]: ...
def cpu_isa() -> int: ...
