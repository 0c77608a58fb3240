"""The tasks a distributed fit runs on the workers: pure functions of their arguments.

Each returns the same bits wherever and however often it runs, so Dask may recompute any of
them after a worker is lost (from the input partitions or files, which it can read again)
without changing the fit. None of them imports Dask: they take and return NumPy arrays and
pandas frames.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfkit._core._common import predict_pairs
from mfkit._core.exact import exact_sum_f32, exact_sum_sq_f32
from mfkit._core.frames import recommendations_frame
from mfkit.data import IdMap
from mfkit.data._csr import assemble_csr_arrays
from mfkit.data._idmap import as_id_array
from mfkit.io import load_ratings
from mfkit.models._manifest import write_array
from mfkit.models.als import half_step
from mfkit.models.bayes import sample_rows
from mfkit.recommend._topn import _topn as topn_rows

#: (indptr int64 starting at 0, opposite indices int32, ratings float32) of one shard's rows
Shard = tuple[np.ndarray, np.ndarray, np.ndarray]


def _id_column(df: Any, col: str, where: str) -> np.ndarray:
    series = df[col]
    if series.isna().any():
        j = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise ValueError(f"{where}: column {col!r} has a missing id at row {j}; drop such rows")
    arr = series.to_numpy()
    if arr.dtype == object or str(series.dtype) in ("string", "str", "category"):
        arr = series.astype(str).to_numpy(dtype=str)
    return as_id_array(arr, f"{where}: column {col!r}")


def partition_columns(
    df: Any, where: str, cols: tuple[str, str, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, item ids, float32 ratings) of one partition, checked as
    :meth:`mfkit.Ratings.from_dataframe` checks a whole frame; errors name ``where``."""
    user_col, item_col, rating_col = cols
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"{where} has no column(s) {missing}; it has {list(df.columns)}. Name them with "
            f"user_col=, item_col=, rating_col="
        )
    users = _id_column(df, user_col, where)
    items = _id_column(df, item_col, where)
    try:
        r64 = df[rating_col].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: column {rating_col!r} must hold numbers ({exc})") from None
    bad = ~np.isfinite(r64)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{where}: rating {r64[j]} at row {j} (user {users[j].item()!r}, item "
            f"{items[j].item()!r}) is not a finite number; drop or fix such rows"
        )
    with np.errstate(over="ignore"):
        r32 = r64.astype(np.float32)
    if not np.all(np.isfinite(r32)):
        j = int(np.flatnonzero(~np.isfinite(r32))[0])
        raise ValueError(f"{where}: rating {r64[j]} at row {j} overflows float32; rescale")
    return users, items, r32


def partition_summary(df: Any, where: str, cols: tuple[str, str, str]) -> dict[str, Any]:
    """What the client needs to map ids and size shards: each column's distinct ids with
    their rating counts, the exact rating sum (in units of 2**-149), the count, min, max."""
    users, items, r = partition_columns(df, where, cols)
    uu, uc = np.unique(users, return_counts=True)
    iu, ic = np.unique(items, return_counts=True)
    return {
        "n": len(r),
        "sum": exact_sum_f32(r),
        "sum_sq": float(np.sum(np.square(r, dtype=np.float64))),
        "min": float(r.min()) if len(r) else None,
        "max": float(r.max()) if len(r) else None,
        "users": uu,
        "user_counts": uc.astype(np.int64),
        "items": iu,
        "item_counts": ic.astype(np.int64),
    }


def _merge_ids(ids: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    kinds = {a.dtype.kind for a in ids if len(a)}
    if len(kinds) > 1:
        raise TypeError(
            "the partitions hold ids of different kinds (integers in some, strings in "
            "others); give every partition the same id type"
        )
    merged = np.unique(np.concatenate(ids))
    if merged.dtype.kind in "iu":
        merged = merged.astype(np.int64)
    total = np.zeros(len(merged), dtype=np.int64)
    for a, c in zip(ids, counts, strict=True):
        np.add.at(total, np.searchsorted(merged, a), c)
    return merged, total


def merge_summaries(*summaries: dict[str, Any]) -> dict[str, Any]:
    """The whole data's summary from its partitions': sorted distinct ids with their rating
    counts, the count, the exact sum, min and max (None without ratings)."""
    users, user_counts = _merge_ids(
        [s["users"] for s in summaries], [s["user_counts"] for s in summaries]
    )
    items, item_counts = _merge_ids(
        [s["items"] for s in summaries], [s["item_counts"] for s in summaries]
    )
    rated = [s for s in summaries if s["n"]]
    return {
        "n": sum(s["n"] for s in summaries),
        "sum": sum(s["sum"] for s in summaries),
        "sum_sq": math.fsum(s["sum_sq"] for s in summaries),
        "min": min(s["min"] for s in rated) if rated else None,
        "max": max(s["max"] for s in rated) if rated else None,
        "users": users,
        "user_counts": user_counts,
        "items": items,
        "item_counts": item_counts,
    }


def id_maps_of(info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The (user ids, item ids) of a merged summary: what the shard tasks map ids with."""
    return info["users"], info["items"]


def _lookup(ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    # every key is one of the sorted ids (they were collected from these partitions)
    return np.searchsorted(ids, keys).astype(np.int32)


def split_partition(
    df: Any,
    where: str,
    cols: tuple[str, str, str],
    id_maps: tuple[np.ndarray, np.ndarray],
    bounds: tuple[np.ndarray, np.ndarray],
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], ...]:
    """One partition's ratings as indices, cut by user shard and by item shard: for each
    shard the (row index, opposite index, rating) of its ratings in partition order."""
    users, items, r = partition_columns(df, where, cols)
    u = _lookup(id_maps[0], users)
    i = _lookup(id_maps[1], items)
    out: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    for rows, other, edges in ((u, i, bounds[0]), (i, u, bounds[1])):
        shard = np.searchsorted(edges, rows, side="right") - 1
        order = np.argsort(shard, kind="stable")
        starts = np.searchsorted(shard[order], np.arange(len(edges)))
        pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for s in range(len(edges) - 1):
            sel = order[starts[s] : starts[s + 1]]
            pieces.append((rows[sel] - np.int32(edges[s]), other[sel], r[sel]))
        out.append(pieces)
    return out[0], out[1]


def pick(split: tuple[list[Any], list[Any]], side: int, shard: int) -> tuple[np.ndarray, ...]:
    """One shard's piece of a split partition (so a shard task receives only its pieces)."""
    return split[side][shard]


def assemble_shard(
    n_rows: int,
    n_opposite: int,
    where: str,
    id_maps: tuple[np.ndarray, np.ndarray],
    side: int,
    first_row: int,
    *pieces: tuple[np.ndarray, ...],
) -> Shard:
    """A shard's ratings in CSR form (rows ascending, opposite indices ascending within a
    row), from its pieces in partition order: exactly the rows ``first_row:first_row +
    n_rows`` of the single-machine CSR (users) or CSC (items) matrix."""
    rows = np.concatenate([p[0] for p in pieces]) if pieces else np.empty(0, np.int32)
    other = np.concatenate([p[1] for p in pieces]) if pieces else np.empty(0, np.int32)
    vals = np.concatenate([p[2] for p in pieces]) if pieces else np.empty(0, np.float32)
    indptr, indices, values, _ = assemble_csr_arrays(
        rows,
        other,
        vals,
        None,
        (n_rows, n_opposite),
        # a repeated (user, item) pair is refused by the user shards, which name it; the
        # item shards hold the same pairs (and the fit stops at the user shards' error)
        duplicates="error" if side == 0 else "sum",
        user_ids=id_maps[0][first_row : first_row + n_rows] if side == 0 else None,
        item_ids=id_maps[1] if side == 0 else None,
        n_threads=1,
        where=where,
        finite=True,
    )
    return indptr, indices, values


def seen_of(shard: Shard) -> tuple[np.ndarray, np.ndarray]:
    """The (indptr, indices) of a user shard: what ``recommend(exclude_seen=True)`` reads."""
    return shard[0], shard[1]


def solve_shard(
    shard: Shard,
    fixed: tuple[np.ndarray, np.ndarray | None],
    start: tuple[np.ndarray, np.ndarray | None] | None,
    prior: np.ndarray | None,
    options: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, str | None]:
    """One shard's part of an ALS half-step with the opposite side ``fixed`` = (factors,
    biases or None): ``mfkit.models.als.half_step`` on the shard's rows, exactly as one
    machine solves them. ``start``: the rows' current factors (read by the conjugate-
    gradient solver only; zeros otherwise) and biases. Returns (factors, biases, per-row squared
    error or None, None), or (.., message) when a row's system is not positive definite."""
    indptr, indices, values = shard
    Y, ybias = fixed
    n = len(indptr) - 1
    X = np.zeros((n, Y.shape[1]), dtype=Y.dtype) if start is None else start[0].copy()
    xbias = None
    if ybias is not None:
        xbias = np.zeros(n, dtype=Y.dtype) if start is None or start[1] is None else start[1].copy()
    sse = np.zeros(n, dtype=np.float64) if options["want_sse"] else None
    try:
        half_step(
            indptr,
            indices,
            values,
            Y,
            X,
            ybias=ybias,
            xbias=xbias,
            mu=options["mu"],
            regularization=options["regularization"],
            bias_regularization=options["bias_regularization"],
            weighted=options["weighted"],
            solver=options["solver"],
            cg_steps=options["cg_steps"],
            prior=prior,
            prior_regularization=options["prior_regularization"],
            row_sse=sse,
            n_threads=options["n_threads"],
            isa=options["isa"],
        )
    except np.linalg.LinAlgError as exc:
        return X, xbias, sse, str(exc)
    return X, xbias, sse, None


def sample_shard(
    shard: Shard,
    fixed: tuple[np.ndarray, np.ndarray | None],
    first_row: int,
    options: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, str | None]:
    """One shard's part of a Gibbs half-sweep with the opposite side ``fixed`` = (factors,
    biases or None): ``mfkit.models.bayes.sample_rows`` on the shard's rows, keyed by their
    global rows (``first_row`` is the shard's first), exactly as one machine draws them.
    ``options``: the draw (``mu``, ``prior_mean``, ``prior_precision``,
    ``noise_precision``, ``seed``, ``sweep``, ``side``) and ``want_sse``, ``n_threads``,
    ``isa``. Returns (factors, biases, per-row squared error or None, None), or
    (.., message) naming the first global row whose precision is not positive definite."""
    indptr, indices, values = shard
    Y, ybias = fixed
    n = len(indptr) - 1
    X = np.zeros((n, Y.shape[1]), dtype=Y.dtype)
    xbias = None if ybias is None else np.zeros(n, dtype=Y.dtype)
    sse = np.zeros(n, dtype=np.float64) if options["want_sse"] else None
    draw = {key: options[key] for key in ("mu", "prior_mean", "prior_precision")}
    try:
        sample_rows(
            indptr,
            indices,
            values,
            Y,
            X,
            ybias=ybias,
            xbias=xbias,
            noise_precision=options["noise_precision"],
            seed=options["seed"],
            sweep=options["sweep"],
            side=options["side"],
            row_sse=sse,
            n_threads=options["n_threads"],
            isa=options["isa"],
            row_offset=first_row,
            **draw,
        )
    except np.linalg.LinAlgError as exc:
        return X, xbias, sse, str(exc)
    return X, xbias, sse, None


def shard_sum_sq(shard: Shard) -> int:
    """The exact sum of the squares of a shard's ratings, times ``2**298``."""
    return exact_sum_sq_f32(shard[2])


#: one shard's factors on the cluster: (rows, biases or None, per-row squared error or None,
#: None or the message of a row whose system was not positive definite)
Part = tuple[np.ndarray, np.ndarray | None, np.ndarray | None, str | None]


def start_part(rows: np.ndarray, biases: np.ndarray | None) -> Part:
    """A shard's starting factors in the form the resident half-steps pass on."""
    return rows, biases, None, None


#: a shard whose opposite indices are positions in ``ref``, the sorted distinct opposite
#: rows it rates: (indptr, local indices int32, ratings float32, ref int32)
LocalShard = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def localize(shard: Shard) -> LocalShard:
    """A shard re-indexed against the opposite rows it references (its out-block): what it
    needs of a half-step's fixed side is ``Y[ref]``, and its indices point into that."""
    indptr, indices, values = shard
    ref = np.unique(indices).astype(np.int32)
    local = np.searchsorted(ref, indices).astype(np.int32)
    return indptr, local, values, ref


def ref_pieces(shard: LocalShard, edges: np.ndarray) -> list[np.ndarray]:
    """The shard's referenced rows cut by the opposite side's shards: piece ``t`` holds
    those in ``edges[t]:edges[t + 1]``, as row numbers within that shard."""
    ref = shard[3]
    cuts = np.searchsorted(ref, edges)
    return [
        (ref[cuts[t] : cuts[t + 1]] - np.int32(edges[t])).astype(np.int64)
        for t in range(len(edges) - 1)
    ]


def out_block(part: Part, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows ``rows`` of a shard's factors and biases: what one other shard needs of it."""
    return part[0][rows], None if part[1] is None else part[1][rows]


def solve_resident(
    shard: LocalShard,
    start: Part | None,
    prior: np.ndarray | None,
    options: dict[str, Any],
    *sources: tuple[Any, ...],
) -> Part:
    """:func:`solve_shard` against the shard's out-block (the referenced rows of the fixed
    side, in row order): every row's system reads the same values in the same order as on
    one machine, so the result has the same bits. Each of ``sources`` is a piece of it,
    in opposite-shard order: ``("cut", (rows, biases))``, cut on another worker by
    :func:`out_block`, or ``("here", part, rows)`` of an opposite shard held here."""
    blocks = [src[1] if src[0] == "cut" else out_block(src[1], src[2]) for src in sources]
    Y = np.concatenate([b[0] for b in blocks]) if len(blocks) != 1 else blocks[0][0]
    ybias = None
    if blocks and blocks[0][1] is not None:
        ybias = np.concatenate([b[1] for b in blocks])
    begin = None if start is None else (start[0], start[1])
    return solve_shard((shard[0], shard[1], shard[2]), (Y, ybias), begin, prior, options)


def seen_local(shard: LocalShard) -> tuple[np.ndarray, np.ndarray]:
    """A localized user shard's (indptr, item indices): what ``recommend`` excludes."""
    return shard[0], shard[3][shard[1]]


def _top(a: np.ndarray | None) -> float:
    if a is None or not a.size:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        return max(abs(float(a.max())), abs(float(a.min())))


def part_stats(part: Part) -> tuple[np.ndarray | None, str | None, bool, float, float]:
    """What the client needs of a solved shard: (per-row squared errors or None, the error
    message or None, whether all factors and biases are finite, max |factor|, max |bias|)."""
    rows, biases, sse, error = part
    finite = bool(np.isfinite(rows).all()) and (biases is None or bool(np.isfinite(biases).all()))
    return sse, error, finite, _top(rows), _top(biases)


def recommend_part(
    part: Part,
    seen: LocalShard | None,
    user_ids: np.ndarray,
    item_ids: np.ndarray | None,
    mu: float,
    n: int,
    n_threads: int,
    *item_parts: Part,
) -> Any:
    """The top-``n`` lists of one user shard as a long DataFrame (``user``, ``rank``,
    ``item``, ``score``): the recommend kernel on the shard's rows against all items, the
    shard's own ratings excluded when ``seen`` is given; the same bits as
    :meth:`mfkit.FactorModel.recommend` on one machine."""
    P, bu = part[0], part[1]
    Q = np.concatenate([p[0] for p in item_parts])
    rows = np.arange(len(P), dtype=np.int64)
    cand = np.arange(len(Q), dtype=np.int64)
    if bu is not None:
        row_add = mu + bu.astype(np.float64)
        item_add = np.concatenate([p[1] for p in item_parts]).astype(np.float64)
    else:
        row_add = item_add = np.empty(0, dtype=np.float64)
    seen_csr = None if seen is None else (seen[0], seen[3][seen[1]])
    idx, scores = topn_rows(
        P, rows, Q, cand, n, row_add, item_add, seen_csr, rows if seen is not None else None,
        n_threads,
    )  # fmt: skip
    if item_ids is None:
        ids = idx
    else:
        ids = item_ids[np.maximum(idx, 0)]
        if (idx < 0).any():
            ids = ids.copy()
            ids[idx < 0] = "" if item_ids.dtype.kind == "U" else -1
    return recommendations_frame(user_ids, ids, scores)


def pair_indices(
    df: Any,
    cols: tuple[str, str],
    id_maps: tuple[np.ndarray | None, np.ndarray | None],
    shape: tuple[int, int],
    unknown: str,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The (user, item) indices of a partition of pairs (-1: an id not seen in training),
    refused with ``where`` named for ``unknown='error'`` as ``predict`` refuses them."""
    out = []
    for col, ids, n, name in zip(cols, id_maps, shape, ("users", "items"), strict=True):
        values = df[col].to_numpy()
        try:
            idx = IdMap(ids, n).lookup(values, name)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        if unknown == "error" and (idx < 0).any():
            raise ValueError(
                f"{where}: {name} contain ids not seen in training (e.g. "
                f"{values[idx < 0][:5].tolist()}); pass unknown='baseline' or unknown='nan' to "
                f"predict them anyway"
            )
        out.append(np.asarray(idx, dtype=np.int64))
    return out[0], out[1]


def rows_for(
    part: Part, indices: tuple[np.ndarray, np.ndarray], side: int, first: int, stop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The distinct rows ``first <= r < stop`` of ``side`` that a partition's pairs name,
    from the shard's part: (row numbers, factors, biases or None)."""
    idx = indices[side]
    sel = np.unique(idx[(idx >= first) & (idx < stop)])
    rows = part[0][sel - first]
    return sel, rows, None if part[1] is None else part[1][sel - first]


def _local_rows(
    pieces: tuple[tuple[np.ndarray, np.ndarray, np.ndarray | None], ...], idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    sel = np.concatenate([p[0] for p in pieces])
    rows = np.ascontiguousarray(np.concatenate([p[1] for p in pieces]))
    bias = None if pieces[0][2] is None else np.concatenate([p[2] for p in pieces])
    local = np.where(idx >= 0, np.searchsorted(sel, idx), -1).astype(np.int64)
    return rows, bias, local


def predict_part(
    df: Any,
    indices: tuple[np.ndarray, np.ndarray],
    mu: float,
    column: str,
    unknown: str,
    clip: tuple[float, float] | None,
    n_threads: int,
    n_user_pieces: int,
    *pieces: tuple[np.ndarray, np.ndarray, np.ndarray | None],
) -> Any:
    """A partition of pairs with the predicted rating appended as ``column``, from the rows
    of the user and item shards its pairs name (the same kernel and bits as
    :meth:`mfkit.FactorModel.predict` on one machine)."""
    u, i = indices
    P, bu, lu = _local_rows(pieces[:n_user_pieces], u)
    Q, bi, li = _local_rows(pieces[n_user_pieces:], i)
    empty = np.empty(0, dtype=P.dtype)
    out = np.empty(len(u), dtype=np.float64)
    predict_pairs(
        P, Q, empty if bu is None else bu, empty if bi is None else bi, mu, lu, li, out, n_threads
    )
    if unknown == "nan":
        out[(u < 0) | (i < 0)] = np.nan
    if clip is not None:
        np.clip(out, clip[0], clip[1], out=out)
    res = df.copy()
    res[column] = out
    return res


def copy_part(part: Any) -> Any:
    """The same value under another key (a backup held by another worker)."""
    return part


def gather_part(part: Part) -> tuple[np.ndarray, np.ndarray | None]:
    """A shard's (factors, biases), without the statistics of its half-step."""
    return part[0], part[1]


def write_part(
    folder: str, stem: str, part: Part, seen: LocalShard | None, biases: bool
) -> dict[str, Any]:
    """Write one shard's arrays as ``folder/<stem>-<array>.npy`` (each atomically) from the
    worker that holds it; returns their manifest entries (name, shape, dtype, SHA-256)."""
    rows, bias = part[0], part[1]
    if bias is None or not biases:
        bias = np.zeros(len(rows), dtype=rows.dtype)
    out = {
        "factors": write_array(folder, f"{stem}-factors.npy", rows),
        "biases": write_array(folder, f"{stem}-biases.npy", bias),
    }
    if seen is not None:
        out["seen_indptr"] = write_array(folder, f"{stem}-seen_indptr.npy", seen[0])
        out["seen_indices"] = write_array(folder, f"{stem}-seen_indices.npy", seen[3][seen[1]])
    return out


def load_frame(path: str, options: dict[str, Any]) -> Any:
    """One rating file read by a worker (any format :func:`mfkit.load_ratings` reads), as a
    pandas frame of original user and item ids and float64 ratings."""
    import pandas as pd

    R = load_ratings(path, **options)
    users, items, ratings = R.to_triplets(original_ids=True)
    return pd.DataFrame(
        {"user": users, "item": items, "rating": np.asarray(ratings, dtype=np.float64)}
    )


__all__ = [
    "LocalShard",
    "Part",
    "Shard",
    "assemble_shard",
    "id_maps_of",
    "copy_part",
    "gather_part",
    "load_frame",
    "localize",
    "out_block",
    "merge_summaries",
    "partition_columns",
    "part_stats",
    "partition_summary",
    "pair_indices",
    "pick",
    "predict_part",
    "recommend_part",
    "ref_pieces",
    "rows_for",
    "sample_shard",
    "seen_local",
    "seen_of",
    "shard_sum_sq",
    "solve_resident",
    "solve_shard",
    "split_partition",
    "start_part",
    "write_part",
]
