# Type stub of the compiled fold-in kernel (_foldin.pyx).
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

def fold_in_users(
    Q: npt.NDArray[_F],
    bi: npt.NDArray[_F],
    mu: float,
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    ratings: npt.NDArray[np.float32],
    lam: float,
    lam_b: float,
    biased: bool,
    weighted: bool,
    P_out: npt.NDArray[_F],
    bu_out: npt.NDArray[_F],
    n_threads: int,
) -> int: ...
