# Type stub of the compiled Gibbs sampler kernels (_bayes.pyx).
import numpy as np

from mfkit.models._als import RowScratch

def normal_draws(seed: int, sweep: int, side: int, row: int, K: int) -> np.ndarray: ...
def sample_half(
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    Y: np.ndarray,
    ybias: np.ndarray,
    X: np.ndarray,
    xbias: np.ndarray,
    Lam: np.ndarray,
    Lmu: np.ndarray,
    alpha: float,
    mu: float,
    seed: int,
    sweep: int,
    side: int,
    row_sse: np.ndarray,
    n_threads: int,
    isa: int = 0,
    scratch: RowScratch | None = None,
    row_offset: int = 0,
) -> tuple[int, int]: ...
