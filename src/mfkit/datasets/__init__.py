"""Data sets: seeded synthetic rating sets shaped like MovieLens and Netflix (no download), the
public MovieLens sets from GroupLens (downloaded on first use, verified, cached) and a local copy
of the Netflix Prize files (cached)."""

from mfkit.datasets._fetch import CONNECT_TIMEOUT, READ_TIMEOUT
from mfkit.datasets._items import Dataset, ItemTable
from mfkit.datasets._public import movielens, netflix
from mfkit.datasets._registry import ARCHIVES, TERMS, Archive, data_home
from mfkit.datasets._synthetic import PRESETS, synthetic
from mfkit.exceptions import ChecksumError, DatasetDownloadError

__all__ = [
    "ARCHIVES",
    "CONNECT_TIMEOUT",
    "PRESETS",
    "READ_TIMEOUT",
    "TERMS",
    "Archive",
    "ChecksumError",
    "Dataset",
    "DatasetDownloadError",
    "ItemTable",
    "data_home",
    "movielens",
    "netflix",
    "synthetic",
]
