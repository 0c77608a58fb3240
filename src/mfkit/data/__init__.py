"""The rating data layer: the :class:`Ratings` container, id maps, CSR assembly, the cache.

Everything above this layer (loaders, models, metrics) takes a :class:`Ratings`, whose arrays
are normalised once here so the kernels can trust them. The private modules hold the pieces
the other layers build on: ``_csr`` (id mapping and the counting sort, with the
``_assemble`` kernel), ``_idmap``, ``_implicit`` (explicit ratings to implicit feedback),
``_cache`` (the binary cache format) and ``_ratings``.
"""

from mfkit.data._idmap import IdMap
from mfkit.data._implicit import to_implicit
from mfkit.data._ratings import Ratings, as_ratings

__all__ = ["IdMap", "Ratings", "as_ratings", "to_implicit"]
