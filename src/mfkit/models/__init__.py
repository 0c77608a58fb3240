"""The estimators: the shared base (:class:`FactorModel`), SGD, ALS, and model files.

Each model is a module (``sgd``, ``als``) beside its kernel (``_sgd``, ``_als``); the base owns
the epoch loop, prediction and persistence, a model supplies a ``Trainer`` for one fit.
"""

from mfkit.models._base import FactorModel, Trainer
from mfkit.models._persistence import load
from mfkit.models._state import FactorState, Fitted
from mfkit.models.als import ALS
from mfkit.models.sgd import SGD

__all__ = ["ALS", "SGD", "FactorModel", "FactorState", "Fitted", "Trainer", "load"]
