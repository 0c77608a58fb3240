"""The estimators: the shared base (:class:`FactorModel`), SGD, ALS, BayesianMF,
ImplicitALS, BPR, model files.

Each model is a module (``sgd``, ``als``, ``bayes``, ``implicit_als``, ``bpr``) beside its
kernel (``_sgd``, ``_als``, ``_bayes``, ``_implicit``, ``_bpr``; the Bayesian and implicit
kernels reuse the dense row kernels of ``_als.h``, BPR the block layout of SGD); the base
owns the epoch loop, prediction and persistence, a model supplies a ``Trainer`` for one fit.
"""

from mfkit.models._base import FactorModel, Trainer
from mfkit.models._persistence import load
from mfkit.models._state import FactorState, Fitted
from mfkit.models.als import ALS
from mfkit.models.bayes import BayesianMF
from mfkit.models.bpr import BPR
from mfkit.models.implicit_als import ImplicitALS
from mfkit.models.sgd import SGD

__all__ = [
    "ALS",
    "BPR",
    "SGD",
    "BayesianMF",
    "ImplicitALS",
    "FactorModel",
    "FactorState",
    "Fitted",
    "Trainer",
    "load",
]
