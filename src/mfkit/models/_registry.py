"""Model classes by name, so that a saved model names its class and ``load`` finds it."""

from __future__ import annotations

from typing import Any

_MODEL_CLASSES: dict[str, type[Any]] = {}


def register(cls: type[Any]) -> None:
    """Record ``cls`` under its class name (every ``FactorModel`` subclass does this)."""
    _MODEL_CLASSES[cls.__name__] = cls


def model_class(name: str) -> type[Any]:
    """The model class saved under ``name``; ``ValueError`` for an unknown one."""
    try:
        return _MODEL_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown mfkit model class {name!r}") from None
