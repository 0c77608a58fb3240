"""Compatibility module: model files live in :mod:`mfkit.models` (``load``, ``save``)."""

from mfkit._core.files import atomic_write, digest
from mfkit.models._persistence import FORMAT_NAME, FORMAT_VERSION, load, read_npz, save_model

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "atomic_write",
    "digest",
    "load",
    "read_npz",
    "save_model",
]
