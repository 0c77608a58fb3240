"""Exceptions raised by mfkit."""

from __future__ import annotations


class DivergenceError(RuntimeError):
    """Training produced a non-finite value (NaN or inf) or exploded.

    The model keeps the factors of the last epoch that finished cleanly, so it can
    still be used or inspected. The message names the step size to lower.
    """


class NotFittedError(ValueError, AttributeError):
    """A model method that needs a fitted model was called before ``fit``."""
