from typing import Any

import numpy as np

def sgd_epoch(
    recs: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    mu: float,
    lr: float,
    reg: float,
    reg_bias: float,
    biases: bool,
    P0: np.ndarray | None = ...,
    Q0: np.ndarray | None = ...,
    prior: float = ...,
) -> tuple[float, int]: ...
def shuffle_records(recs: np.ndarray, seed: int) -> None: ...
def __getattr__(name: str) -> Any: ...
