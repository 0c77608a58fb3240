# Type stub of the compiled implicit-feedback ALS kernels (_implicit.pyx).
import numpy as np

from mfkit.models._als import RowScratch

def gramian(Y: np.ndarray, G: np.ndarray, n_threads: int, isa: int = 0) -> None: ...
def ld_of(k: int) -> int: ...
def half_step(
    solver: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    Y: np.ndarray,
    X: np.ndarray,
    G: np.ndarray,
    alpha: float,
    reg: float,
    cg_steps: int,
    row_loss: np.ndarray,
    n_threads: int,
    isa: int = 0,
    scratch: RowScratch | None = None,
) -> tuple[int, int]: ...
