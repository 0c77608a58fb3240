# Type stub of the compiled SGD layout kernels (_sgd_layout.pyx). `out` records have the
# record dtype mfkit.models.sgd.RATING_DTYPE (int32 u, int32 i, float32 r).
from typing import Any

import numpy as np
import numpy.typing as npt

_Records = np.ndarray[Any, np.dtype[np.void]]

def epoch_schedule(
    seed: int | np.unsignedinteger[Any], B: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]: ...
def build_blocks(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    values: npt.NDArray[np.float32],
    user_group: npt.NDArray[np.int32],
    item_group: npt.NDArray[np.int32],
    B: int,
    out: _Records,
    offsets: npt.NDArray[np.int64],
    n_threads: int = 1,
) -> None: ...
def row_segments(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    item_group: npt.NDArray[np.int32],
    B: int,
    out: npt.NDArray[np.int64],
    n_threads: int = 1,
) -> None: ...
