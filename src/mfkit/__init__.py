"""mfkit: fast, reproducible matrix-factorization recommenders for explicit ratings."""

from __future__ import annotations

__version__ = "0.1.0"

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
