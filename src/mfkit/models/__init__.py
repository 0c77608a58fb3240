"""The estimators: the shared base (:class:`FactorModel`), SGD, ALS, BayesianMF, and model
files.

Each model is a module (``sgd``, ``als``, ``bayes``) beside its kernel (``_sgd``, ``_als``,
``_bayes``); the base owns
the epoch loop, prediction and persistence, a model supplies a ``Trainer`` for one fit.
"""

from mfkit.models._base import FactorModel, Trainer
from mfkit.models._persistence import load
from mfkit.models._state import FactorState, Fitted
from mfkit.models.als import ALS
from mfkit.models.bayes import BayesianMF
from mfkit.models.sgd import SGD

__all__ = ["ALS", "SGD", "BayesianMF", "FactorModel", "FactorState", "Fitted", "Trainer", "load"]
