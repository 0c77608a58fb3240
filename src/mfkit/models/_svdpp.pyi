import numpy as np

def svdpp_epoch(
    recs: np.ndarray,
    indptr: np.ndarray,
    order: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    Y: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    mu: float,
    lr: float,
    reg: float,
    reg_bias: float,
    biases: bool,
    *,
    loss: int = ...,
    delta: float = ...,
    Gp: np.ndarray | None = ...,
    Gq: np.ndarray | None = ...,
    Gy: np.ndarray | None = ...,
    Gbu: np.ndarray | None = ...,
    Gbi: np.ndarray | None = ...,
) -> tuple[float, int]: ...
def effective_user_factors(
    recs: np.ndarray,
    indptr: np.ndarray,
    P: np.ndarray,
    Y: np.ndarray,
    out: np.ndarray,
    n_threads: int,
) -> None: ...
def shuffle_users(recs: np.ndarray, indptr: np.ndarray, order: np.ndarray, seed: int) -> None: ...
