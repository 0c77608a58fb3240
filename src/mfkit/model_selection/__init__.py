"""Splitting ratings and choosing models on held-out data: splits, k-fold, cross-validation
and grid search."""

from mfkit.model_selection._search import clone, cross_validate, grid_search
from mfkit.model_selection._split import KFold, per_user_split, temporal_split, train_test_split

__all__ = [
    "KFold",
    "clone",
    "cross_validate",
    "grid_search",
    "per_user_split",
    "temporal_split",
    "train_test_split",
]
