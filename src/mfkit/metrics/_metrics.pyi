# Type stub of the compiled ranking-metrics kernel (_metrics.pyx).
import numpy as np
import numpy.typing as npt

def ranking_per_user(
    rec: npt.NDArray[np.int64],
    k: int,
    rel_indptr: npt.NDArray[np.int64],
    rel_indices: npt.NDArray[np.int64],
    out: npt.NDArray[np.float64],
    n_threads: int,
) -> None: ...
