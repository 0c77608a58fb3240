"""Compatibility module: ALS lives in :mod:`mfkit.models.als`."""

from mfkit.models.als import ALS, SOLVERS, half_step

__all__ = ["ALS", "SOLVERS", "half_step"]
