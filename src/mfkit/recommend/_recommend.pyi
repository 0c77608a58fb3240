# Type stub of the compiled top-N kernel (_recommend.pyx).
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

def have_screen() -> bool: ...
def panel_width() -> int: ...
def topn(
    P: npt.NDArray[_F],
    rows: npt.NDArray[np.int64],
    panels: npt.NDArray[_F],
    cand: npt.NDArray[np.int64],
    item_add: npt.NDArray[np.float64],
    row_add: npt.NDArray[np.float64],
    seen_indptr: npt.NDArray[np.int64],
    seen_indices: npt.NDArray[np.int32],
    seen_row: npt.NDArray[np.int64],
    out_items: npt.NDArray[np.int64],
    out_scores: npt.NDArray[np.float64],
    n_threads: int,
    use_avx512: bool = True,
    isa: int = 0,
    prune: bool = True,
    screen: bool = True,
) -> None: ...
