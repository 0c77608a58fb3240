"""Top-N recommendation, similar items and fold-in of new users for fitted factor models.

These functions back the ``recommend``, ``similar_items`` and ``fold_in`` methods of every
mfkit model; their kernels (``_recommend``, ``_foldin``) sit beside the Python that calls them.
"""

from mfkit.recommend._fold import FoldedUsers, fold_in, fold_in_rows
from mfkit.recommend._topn import pack_items, recommend, recommend_indices, similar_items

__all__ = [
    "FoldedUsers",
    "fold_in",
    "fold_in_rows",
    "pack_items",
    "recommend",
    "recommend_indices",
    "similar_items",
]
