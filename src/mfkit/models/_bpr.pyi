# Type stub of the compiled BPR kernel (_bpr.pyx).
import numpy as np

def bpr_block_epoch(
    recs: np.ndarray,
    offsets: np.ndarray,
    strata: np.ndarray,
    block_seeds: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    group_ptr: np.ndarray,
    group_items: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    lr: float,
    reg: float,
    neg_out: np.ndarray,
    n_threads: int,
) -> tuple[float, float, float]: ...
