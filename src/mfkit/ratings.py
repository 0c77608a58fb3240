"""Compatibility module: the rating container lives in :mod:`mfkit.data`."""

from mfkit.data import IdMap, Ratings, as_ratings
from mfkit.data._csr import Duplicates, map_ids_to_indices, pairs_to_csr
from mfkit.data._ratings import assemble_csr

__all__ = [
    "Duplicates",
    "IdMap",
    "Ratings",
    "as_ratings",
    "assemble_csr",
    "map_ids_to_indices",
    "pairs_to_csr",
]
