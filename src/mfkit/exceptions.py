"""Exceptions and warnings raised by mfkit (the lowest layer: imports nothing of mfkit)."""

from __future__ import annotations


class DivergenceError(RuntimeError):
    """Training produced a non-finite value (NaN or inf) or exploded.

    The model keeps the factors of the last epoch that finished cleanly, so it can
    still be used or inspected. The message names the step size to lower.
    """


class NotFittedError(ValueError, AttributeError):
    """A model method that needs a fitted model was called before ``fit``."""


class RatingFileError(ValueError):
    """A rating file could not be read; names the file and, for a bad line, its number and
    its text."""

    def __init__(
        self, path: str, message: str, line_number: int | None = None, line: str | None = None
    ) -> None:
        self.path = path
        self.line_number = line_number
        self.line = line
        self.reason = message
        where = f"{path}, line {line_number}" if line_number is not None else path
        text = f"{where}: {message}"
        if line is not None:
            text += f"\n    {line!r}"
        super().__init__(text)


class BadLineWarning(UserWarning):
    """Emitted once per load with ``on_bad_line='warn'`` when lines were skipped."""


class DatasetDownloadError(OSError):
    """A public data set's archive is not on disk and could not be downloaded (``download=False``,
    no network, a timeout, an HTTP error, or the optional downloader missing). The message names
    the URL, the folder and how to place the file there by hand."""


class ChecksumError(ValueError):
    """An archive's size or checksum is not the pinned one: the file is damaged, truncated or
    another file. The message names the path; a file already on disk is left in place."""


__all__ = [
    "BadLineWarning",
    "ChecksumError",
    "DatasetDownloadError",
    "DivergenceError",
    "NotFittedError",
    "RatingFileError",
]
