"""Explicit ratings turned into implicit feedback (interaction strengths for ImplicitALS)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mfkit._core.validation import check_choice, check_number
from mfkit.data._ratings import Ratings, as_ratings

#: what :func:`to_implicit` can keep as each interaction's value
IMPLICIT_VALUES = ("ones", "ratings", "excess")


def to_implicit(data: Any, threshold: float | None = None, *, values: str = "ones") -> Ratings:
    """Implicit feedback from explicit ratings: which ratings count as interactions, and
    with what strength.

    Parameters
    ----------
    data : ratings (anything :func:`mfkit.as_ratings` accepts)
    threshold : float or None, default None
        Keep the ratings ``>= threshold`` (for example 4 on a 1-5 scale, "liked"); None
        keeps every rating.
    values : {'ones', 'ratings', 'excess'}, default 'ones'
        The value of each kept interaction: 1 (binary feedback); the rating itself (higher
        ratings weigh more; every kept rating must then be > 0); or ``rating - threshold +
        1`` (how far above the threshold, at least 1; needs ``threshold``).

    Returns
    -------
    Ratings
        The kept interactions with the same shape and id maps as ``data`` (users or items
        left without interactions keep their place, so ids and held-out splits still line
        up).
    """
    R = as_ratings(data)
    check_choice(values, "values", IMPLICIT_VALUES)
    if threshold is not None:
        threshold = float(check_number(threshold, "threshold"))
    elif values == "excess":
        raise ValueError("values='excess' needs a threshold (rating - threshold + 1)")
    r = np.asarray(R.values)
    keep = np.ones(len(r), dtype=bool) if threshold is None else r >= threshold
    out = R.subset(keep)
    kept = r[keep]
    if values == "ones":
        v = np.ones(len(kept), dtype=np.float32)
    elif values == "ratings":
        if len(kept) and not (kept > 0).all():
            raise ValueError(
                f"values='ratings' uses each rating as a confidence weight, so kept ratings "
                f"must be > 0 (the smallest is {float(kept.min())}); pass a threshold above "
                f"it, or values='ones'"
            )
        v = kept.astype(np.float32)
    else:
        assert threshold is not None
        v = (kept - np.float32(threshold) + np.float32(1)).astype(np.float32)
    return Ratings(
        out.indptr,
        out.indices,
        v,
        out.shape,
        user_ids=out.user_ids,
        item_ids=out.item_ids,
        timestamps=out.timestamps,
        check=False,
    )


__all__ = ["IMPLICIT_VALUES", "to_implicit"]
