"""mfkit: fast, reproducible matrix-factorization recommenders for explicit ratings."""

from __future__ import annotations

__version__ = "0.1.0"

import os as _os

# GNU OpenMP lets an idle thread spin for about 300,000 iterations before it sleeps. mfkit's
# kernels wait at a barrier after every SGD stratum and ALS half-step; on a machine shared with
# other busy processes that spinning takes the core the working thread needs. A short spin
# keeps barriers cheap on an idle machine without that cost. It is read when the OpenMP
# runtime loads, and a value the user set (or OMP_WAIT_POLICY) wins.
if "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

from mfkit import datasets, io, metrics, model_selection
from mfkit._common import openmp_enabled
from mfkit.als import ALS
from mfkit.exceptions import DivergenceError, NotFittedError
from mfkit.io import load_ratings
from mfkit.persistence import load
from mfkit.ratings import Ratings, as_ratings
from mfkit.recommend import FoldedUsers
from mfkit.sgd import SGD

__all__ = [
    "ALS",
    "SGD",
    "DivergenceError",
    "FoldedUsers",
    "NotFittedError",
    "Ratings",
    "__version__",
    "as_ratings",
    "datasets",
    "io",
    "load",
    "load_ratings",
    "metrics",
    "model_selection",
    "openmp_enabled",
]
