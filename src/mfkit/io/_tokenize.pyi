# Type stub of the compiled tokenizer (_tokenize.pyx).
import enum
from typing import Any

import numpy as np
import numpy.typing as npt

class Reason(enum.IntEnum):
    OK = 0
    TOO_FEW = 1
    TOO_MANY = 2
    BAD_USER = 3
    BAD_ITEM = 4
    BAD_RATING = 5
    OUT_OF_SCALE = 6
    BAD_TIME = 7
    BAD_HEADER = 8
    EMPTY_ID = 9
    WIDE_ID = 10
    FLOAT32_OVERFLOW = 11

N_CODES: int
MAX_BAD: int
REASONS: dict[int, str]

def parse_block(
    buf: npt.NDArray[np.uint8],
    cuts: list[int],
    caps: list[int],
    spec: dict[str, Any],
    out: dict[str, npt.NDArray[Any]],
    row0: int,
    n_threads: int,
) -> list[dict[str, Any]]: ...
