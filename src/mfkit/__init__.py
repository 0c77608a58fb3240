"""mfkit: fast, reproducible matrix-factorization recommenders for explicit ratings.

This module only re-exports the public names; ``ARCHITECTURE.md`` says where each lives.
"""

from mfkit import datasets, io, metrics, model_selection
from mfkit._core._common import openmp_enabled
from mfkit._core.version import __version__
from mfkit.data import Ratings, as_ratings
from mfkit.exceptions import DivergenceError, NotFittedError
from mfkit.io import load_ratings
from mfkit.models import ALS, SGD, load
from mfkit.recommend import FoldedUsers

# the module names of mfkit 0.1 (mfkit.als.half_step, mfkit.ratings.IdMap, ...) keep working
from mfkit import als, persistence, ratings, recommend, sgd  # noqa: E402, F401  isort: skip

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
