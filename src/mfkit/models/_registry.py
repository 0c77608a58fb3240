"""Model classes by name, so that a saved model names its class and ``load`` finds it; and
the fit functions of higher layers for data that lives on a cluster.

A layer above the models (``mfkit.distributed``) registers its fit for the collections of a
third-party package by that package's top-level module name (``'dask'``); ``fit`` looks the
data's type up here, so the models never import that layer nor the package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MODEL_CLASSES: dict[str, type[Any]] = {}
_COLLECTION_FITTERS: dict[str, Callable[..., Any]] = {}


def register(cls: type[Any]) -> None:
    """Record ``cls`` under its class name (every ``FactorModel`` subclass does this)."""
    _MODEL_CLASSES[cls.__name__] = cls


def model_class(name: str) -> type[Any]:
    """The model class saved under ``name``; ``ValueError`` for an unknown one."""
    try:
        return _MODEL_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown mfkit model class {name!r}") from None


def register_collection_fitter(package: str, fit: Callable[..., Any]) -> None:
    """Make ``model.fit(data, ...)`` call ``fit(model, data, validation, init=, callback=)``
    when ``type(data)`` is defined in the top-level package ``package``."""
    _COLLECTION_FITTERS[package] = fit


def collection_fitter(data: Any) -> Callable[..., Any] | None:
    """The registered fit for ``data``'s package, or None (the data is fitted in memory)."""
    if not _COLLECTION_FITTERS:
        return None
    package = type(data).__module__.partition(".")[0]
    return _COLLECTION_FITTERS.get(package)


__all__ = ["collection_fitter", "model_class", "register", "register_collection_fitter"]
