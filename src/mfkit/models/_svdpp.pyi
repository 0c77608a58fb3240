# Type stub of the compiled SVD++ kernels (_svdpp.pyx). `recs` arrays have the record dtype
# mfkit.models.sgd.RATING_DTYPE (int32 u, int32 i, float32 r), grouped by user as `indptr`.
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)
_Records = np.ndarray[Any, np.dtype[np.void]]

def svdpp_epoch(
    recs: _Records,
    indptr: npt.NDArray[np.int64],
    order: npt.NDArray[np.int64],
    P: npt.NDArray[_F],
    Q: npt.NDArray[_F],
    Y: npt.NDArray[_F],
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
    recs: _Records,
    indptr: npt.NDArray[np.int64],
    P: npt.NDArray[_F],
    Y: npt.NDArray[_F],
    out: npt.NDArray[_F],
    n_threads: int,
) -> None: ...
def shuffle_users(
    recs: _Records,
    indptr: npt.NDArray[np.int64],
    order: npt.NDArray[np.int64],
    seed: int | np.unsignedinteger[Any],
) -> None: ...
