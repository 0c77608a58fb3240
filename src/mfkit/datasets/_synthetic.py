"""Built-in data: seeded synthetic rating sets shaped like MovieLens and Netflix.

No download is ever needed: :func:`synthetic` draws a rating matrix with heavy-tailed user
activity and item popularity from a hidden biased low-rank model, at any size up to the
Netflix Prize's 480,189 x 17,770 with 100,480,507 ratings, in bounded extra memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mfkit._core.validation import SeedLike, check_number, check_random_state
from mfkit.data import Ratings
from mfkit.data._csr import sorted_unique

#: name -> (n_users, n_items, n_ratings), the shapes of well-known public sets
PRESETS: dict[str, tuple[int, int, int]] = {
    "toy": (60, 40, 800),
    "ml-100k": (943, 1_682, 100_000),
    "ml-1m": (6_040, 3_706, 1_000_209),
    "ml-10m": (69_878, 10_677, 10_000_054),
    "ml-20m": (138_493, 26_744, 20_000_263),
    "netflix": (480_189, 17_770, 100_480_507),
}

_CHUNK_RATINGS = 2_000_000  # ratings drawn per block of users (bounds the scratch memory)
_DENSE_CELLS = 4_000_000  # user x item cells scored at once for very active users


def _user_counts(
    rng: np.random.Generator, n_users: int, n_items: int, n_ratings: int, alpha: float
) -> np.ndarray:
    """Ratings per user: at least 1, at most n_items, summing to n_ratings, Pareto-tailed."""
    weights = rng.pareto(alpha, n_users) + 1.0
    counts = np.ones(n_users, dtype=np.int64)
    left = n_ratings - n_users
    while left > 0:
        room = n_items - counts
        active = room > 0
        w = np.where(active, weights, 0.0)
        share = left * w / w.sum()
        add = np.minimum(np.floor(share).astype(np.int64), room)
        if add.sum() == 0:
            # hand the remainder out one by one to the users with the largest fractions
            frac = np.where(active, share - np.floor(share), -1.0)
            top = np.argsort(-frac, kind="stable")[:left]
            top = top[room[top] > 0]
            add = np.zeros(n_users, dtype=np.int64)
            add[top] = 1
        counts += add
        left -= int(add.sum())
    return counts


def _sample_user_items(
    rng: np.random.Generator,
    counts: np.ndarray,
    cum_w: np.ndarray,
    log_w: np.ndarray,
    n_items: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items for a block of users, drawn by popularity. Returns (user offset in
    the block, item) sorted by user then item."""
    n = len(counts)
    dense = counts > n_items // 8
    out_u: list[np.ndarray] = []
    out_i: list[np.ndarray] = []
    # Sparse users: draw with replacement, deduplicate, keep a random subset, top up.
    need = np.where(dense, 0, counts)
    have_u = np.empty(0, dtype=np.int64)
    have_i = np.empty(0, dtype=np.int64)
    for _ in range(50):
        missing = need - np.bincount(have_u, minlength=n)
        if not missing.any():
            break
        draw = np.ceil(missing * 1.3).astype(np.int64) + (missing > 0)
        u_new = np.repeat(np.arange(n), draw)
        i_new = np.searchsorted(cum_w, rng.random(len(u_new)) * cum_w[-1], side="right")
        i_new = np.minimum(i_new, n_items - 1)
        keys = sorted_unique(
            np.concatenate((have_u * n_items + have_i, u_new * n_items + i_new)), overwrite=True
        )
        ku, ki = keys // n_items, keys % n_items
        # keep at most need[u] per user, chosen at random among the distinct draws
        prio = rng.random(len(keys))
        # == np.lexsort((prio, ku)), faster: a stable sort by prio, then a stable (radix,
        # for small blocks) sort by user
        order = np.argsort(prio, kind="stable")
        ku_small = ku[order].astype(np.uint16 if n <= 65536 else np.int64)
        order = order[np.argsort(ku_small, kind="stable")]
        ku, ki = ku[order], ki[order]
        start = np.searchsorted(ku, np.arange(n))
        rank = np.arange(len(ku)) - start[ku]
        keep = rank < need[ku]
        have_u, have_i = ku[keep], ki[keep]
    else:  # pragma: no cover - only for pathological weights
        raise RuntimeError("synthetic(): could not draw distinct items; use fewer ratings")
    out_u.append(have_u)
    out_i.append(have_i)
    # Very active users: weighted sampling without replacement (Gumbel top-k).
    dense_users = np.flatnonzero(dense)
    rows_per_block = max(1, _DENSE_CELLS // max(n_items, 1))
    for s in range(0, len(dense_users), rows_per_block):
        block = dense_users[s : s + rows_per_block]
        keys = log_w[None, :] + rng.gumbel(size=(len(block), n_items))
        ranks = np.argsort(np.argsort(-keys, axis=1), axis=1)
        bu, bi = np.nonzero(ranks < counts[block][:, None])
        out_u.append(block[bu])
        out_i.append(bi.astype(np.int64))
    u = np.concatenate(out_u)
    i = np.concatenate(out_i)
    order = np.lexsort((i, u))
    return u[order], i[order]


def synthetic(
    name: str | None = "ml-100k",
    *,
    n_users: int | None = None,
    n_items: int | None = None,
    n_ratings: int | None = None,
    rank: int = 10,
    noise: float = 0.5,
    user_alpha: float = 1.5,
    item_sigma: float = 1.4,
    timestamps: bool = False,
    random_state: SeedLike = 0,
    return_truth: bool = False,
) -> Any:
    """A seeded synthetic explicit-rating set.

    Ratings are integers 1..5: ``round(mu + b_u + b_i + p_u . q_i + noise)`` clipped to the
    scale, from a hidden biased rank-``rank`` model. User activity is Pareto-tailed
    (``user_alpha``), item popularity log-normal (``item_sigma``); every user and every item
    has at least one rating and no (user, item) pair repeats.

    Parameters
    ----------
    name : str or None, default 'ml-100k'
        A preset shape from ``PRESETS`` ('toy', 'ml-100k', 'ml-1m', 'ml-10m', 'ml-20m',
        'netflix'); the explicit sizes below override it.
    n_users, n_items, n_ratings : int, optional
        The shape and number of ratings.
    rank : int, default 10
        Rank of the hidden model.
    noise : float, default 0.5
        Standard deviation of the Gaussian noise before rounding.
    timestamps : bool, default False
        Also draw a Unix timestamp (seconds, 2000-2010) per rating.
    random_state : None, int or Generator, default 0
    return_truth : bool, default False
        Also return a dict with the hidden ``mu``, ``user_biases``, ``item_biases``,
        ``user_factors`` and ``item_factors``.

    Returns
    -------
    Ratings, or (Ratings, dict) with ``return_truth=True``.
    """
    if name is not None:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)} or None")
        pu, pi, pr = PRESETS[name]
        n_users = pu if n_users is None else n_users
        n_items = pi if n_items is None else n_items
        n_ratings = pr if n_ratings is None else n_ratings
    if n_users is None or n_items is None or n_ratings is None:
        raise ValueError("give a preset name or all of n_users, n_items and n_ratings")
    n_users = check_number(n_users, "n_users", low=1, integer=True)
    n_items = check_number(n_items, "n_items", low=1, integer=True)
    n_ratings = check_number(n_ratings, "n_ratings", low=1, integer=True)
    rank = check_number(rank, "rank", low=1, integer=True)
    noise = check_number(noise, "noise", low=0)
    check_number(user_alpha, "user_alpha", low=0, low_inclusive=False)
    check_number(item_sigma, "item_sigma", low=0)
    if n_ratings < max(n_users, n_items):
        raise ValueError(
            f"n_ratings={n_ratings} is too small to give each of {n_users} users and "
            f"{n_items} items a rating"
        )
    if n_ratings > n_users * n_items:
        raise ValueError(f"n_ratings={n_ratings} exceeds n_users * n_items = {n_users * n_items}")
    rng = check_random_state(random_state)

    counts = _user_counts(rng, n_users, n_items, n_ratings, user_alpha)
    log_w = rng.normal(0.0, item_sigma, n_items)
    cum_w = np.cumsum(np.exp(log_w - log_w.max()))

    mu = 3.6
    bu_true = rng.normal(0.0, 0.35, n_users)
    pop = (log_w - log_w.mean()) / max(log_w.std(), 1e-12)
    bi_true = rng.normal(0.0, 0.4, n_items) + 0.15 * pop
    scale = (0.6 / rank) ** 0.25
    P_true = rng.normal(0.0, scale, (n_users, rank)).astype(np.float32)
    Q_true = rng.normal(0.0, scale, (n_items, rank)).astype(np.float32)

    indices = np.empty(n_ratings, dtype=np.int32)
    values = np.empty(n_ratings, dtype=np.float32)
    pos = 0
    ends = np.cumsum(counts)
    start_user = 0
    while start_user < n_users:
        # a block of users holding about _CHUNK_RATINGS ratings
        target = (ends[start_user - 1] if start_user else 0) + _CHUNK_RATINGS
        stop_user = max(start_user + 1, int(np.searchsorted(ends, target, side="right")))
        stop_user = min(stop_user, n_users)
        block = counts[start_user:stop_user]
        ub, ib = _sample_user_items(rng, block, cum_w, log_w, n_items)
        users = ub + start_user
        score = mu + bu_true[users] + bi_true[ib]
        score += np.einsum("ij,ij->i", P_true[users], Q_true[ib], dtype=np.float64)
        score += rng.normal(0.0, noise, len(ub)) if noise > 0 else 0.0
        n = len(ub)
        indices[pos : pos + n] = ib
        values[pos : pos + n] = np.clip(np.rint(score), 1, 5)
        pos += n
        start_user = stop_user
    assert pos == n_ratings
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    moved = _cover_items(rng, indptr, indices, n_items)
    if len(moved):
        # the moved ratings now belong to other items: draw them again from the hidden model,
        # then restore the item order inside the rows they sit in
        users = np.searchsorted(indptr, moved, side="right") - 1
        it = indices[moved]
        score = mu + bu_true[users] + bi_true[it]
        score += np.einsum("ij,ij->i", P_true[users], Q_true[it], dtype=np.float64)
        score += rng.normal(0.0, noise, len(moved)) if noise > 0 else 0.0
        values[moved] = np.clip(np.rint(score), 1, 5)
        for u in np.unique(users):
            a, b = indptr[u], indptr[u + 1]
            o = np.argsort(indices[a:b], kind="stable")
            indices[a:b] = indices[a:b][o]
            values[a:b] = values[a:b][o]

    ts = None
    if timestamps:
        ts = rng.integers(946_684_800, 1_262_304_000, n_ratings, dtype=np.int64)
    data = Ratings(indptr, indices, values, (n_users, n_items), timestamps=ts, check=False)
    if not return_truth:
        return data
    truth = {
        "mu": mu,
        "user_biases": bu_true,
        "item_biases": bi_true,
        "user_factors": P_true,
        "item_factors": Q_true,
    }
    return data, truth


def _cover_items(
    rng: np.random.Generator, indptr: np.ndarray, indices: np.ndarray, n_items: int
) -> np.ndarray:
    """Give every item at least one rating by moving ratings away from items that have
    more than one; the moved pair cannot repeat since the item had no rating before."""
    counts = np.bincount(indices, minlength=n_items)
    empty = np.flatnonzero(counts == 0)
    if len(empty) == 0:
        return empty
    # candidates: ratings of items rated at least twice, at most (count - 1) per item
    cand = rng.permutation(len(indices))
    items = indices[cand]
    order = np.argsort(items, kind="stable")
    cand, items = cand[order], items[order]
    start = np.searchsorted(items, np.arange(n_items))
    rank = np.arange(len(items)) - start[items]
    ok = rank < counts[items] - 1
    cand = cand[ok]
    cand = cand[rng.permutation(len(cand))[: len(empty)]]
    if len(cand) < len(empty):  # pragma: no cover - impossible when n_ratings >= n_items
        raise RuntimeError("cannot cover every item")
    indices[cand] = empty
    return cand
