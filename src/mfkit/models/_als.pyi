# Type stub of the compiled ALS kernels (_als.pyx).
import numpy as np

def cholesky_half_step(
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    Y: np.ndarray,
    ybias: np.ndarray,
    X: np.ndarray,
    xbias: np.ndarray,
    X0: np.ndarray,
    mu: float,
    reg: float,
    reg_bias: float,
    prior: float,
    weighted: bool,
    row_sse: np.ndarray,
    n_threads: int,
) -> tuple[int, int]: ...
def cg_half_step(
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    Y: np.ndarray,
    ybias: np.ndarray,
    X: np.ndarray,
    xbias: np.ndarray,
    X0: np.ndarray,
    mu: float,
    reg: float,
    reg_bias: float,
    prior: float,
    weighted: bool,
    cg_steps: int,
    row_sse: np.ndarray,
    n_threads: int,
) -> tuple[int, int]: ...
