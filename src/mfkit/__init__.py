"""mfkit: fast, reproducible matrix-factorization recommenders for explicit ratings and for
implicit feedback.

This module only re-exports the public names; ``ARCHITECTURE.md`` says where each lives.
"""

from mfkit import datasets, distributed, io, metrics, model_selection, plot
from mfkit._core._common import openmp_enabled
from mfkit._core.isa import available_isas, get_isa, set_isa, use_isa
from mfkit._core.version import __version__
from mfkit.data import Ratings, as_ratings, to_implicit
from mfkit.exceptions import DivergenceError, NotFittedError
from mfkit.io import load_ratings
from mfkit.models import ALS, BPR, SGD, BayesianMF, ImplicitALS, load
from mfkit.recommend import FoldedUsers

# the module names of mfkit 0.1 (mfkit.als.half_step, mfkit.ratings.IdMap, ...) keep working
from mfkit import als, persistence, ratings, recommend, sgd  # noqa: E402, F401  isort: skip

__all__ = [
    "ALS",
    "BPR",
    "SGD",
    "BayesianMF",
    "DivergenceError",
    "FoldedUsers",
    "ImplicitALS",
    "NotFittedError",
    "Ratings",
    "__version__",
    "as_ratings",
    "available_isas",
    "datasets",
    "distributed",
    "get_isa",
    "io",
    "load",
    "load_ratings",
    "metrics",
    "model_selection",
    "openmp_enabled",
    "plot",
    "set_isa",
    "to_implicit",
    "use_isa",
]
