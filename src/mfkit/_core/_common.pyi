from typing import Any

import numpy as np

def openmp_enabled() -> bool: ...
def openmp_max_threads() -> int: ...
def predict_pairs(
    P: np.ndarray,
    Q: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    mu: float,
    users: np.ndarray,
    items: np.ndarray,
    out: np.ndarray,
    n_threads: int,
) -> None: ...
def shuffle_inplace(a: np.ndarray, seed: int) -> None: ...
def all_finite(A: np.ndarray) -> bool: ...
def __getattr__(name: str) -> Any: ...
