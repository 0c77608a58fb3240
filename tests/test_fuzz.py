"""Fuzz tests: mutated rating files in every text format and compression through every
parse mode against a plain-Python reference parser, damaged and crafted caches and model
files, and random triplets through fit, predict and recommend. Every outcome must be the
right result or a clear error (``RatingFileError`` / ``ValueError`` / ``DivergenceError``);
a crash, a hang, another exception or a disagreement fails.

Hypothesis profiles are set in ``conftest.py``: ``quick`` (default, CI) and ``long``
(``MFKIT_FUZZ_PROFILE=long``, for release checks).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mfkit
from mfkit import DivergenceError, Ratings
from mfkit._core.files import digest
from mfkit.data._csr import check_csr_structure
from mfkit.exceptions import BadLineWarning, RatingFileError
from mfkit.io import _engine

# --------------------------------------------------------------------------- rating files
FORMATS = {
    # name: (file name, delimiter, header line or None, loader)
    "100k": ("u.data", "\t", None, mfkit.io.load_movielens_100k),
    "dat": ("ratings.dat", "::", None, mfkit.io.load_movielens_dat),
    "csv": ("ratings.csv", ",", "userId,movieId,rating,timestamp", mfkit.io.load_movielens_csv),
}
COMPRESS = {
    "": lambda b, name: b,
    ".gz": lambda b, name: gzip.compress(b),
    ".bz2": lambda b, name: bz2.compress(b),
    ".xz": lambda b, name: lzma.compress(b),
    ".zip": lambda b, name: _zip(b, name),
}
RATINGS = ("1", "2", "3", "4", "5", "0.5", "4.5", "3.0")
#: bad line kinds, each a bad line under every parse rule: (fields) -> fields
BAD = {
    "few": lambda f: f[:3],
    "many": lambda f: [*f, "7"],
    "user": lambda f: ["u" + f[0], *f[1:]],
    "item": lambda f: [f[0], f[1] + "z", *f[2:]],
    "rating": lambda f: [f[0], f[1], "x", f[3]],
    "scale": lambda f: [f[0], f[1], "9", f[3]],
    "time": lambda f: [*f[:3], "t" + f[3]],
}


def _zip(data: bytes, name: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


line_st = st.one_of(
    st.tuples(
        st.just("ok"),
        st.integers(1, 30),
        st.integers(1, 30),
        st.sampled_from(RATINGS),
        st.integers(0, 2**31),
        st.booleans(),  # CRLF
    ),
    st.tuples(
        st.sampled_from(sorted(BAD)),
        st.integers(1, 30),
        st.integers(1, 30),
        st.sampled_from(RATINGS),
        st.integers(0, 2**31),
        st.booleans(),
    ),
    st.tuples(st.just("blank"), st.just(0), st.just(0), st.just(""), st.just(0), st.booleans()),
)


def reference(
    lines: list[tuple[Any, ...]], delim: str, header: str | None
) -> tuple[bytes, dict[tuple[int, int], tuple[float, int]], int | None]:
    """The file text, the ratings a correct parser keeps (the last of repeated pairs) and
    the line number of the first bad line (None if there is none)."""
    out = [] if header is None else [header]
    kept: dict[tuple[int, int], tuple[float, int]] = {}
    first_bad = None
    for kind, u, i, r, t, crlf in lines:
        if kind == "blank":
            text = ""
        else:
            fields = [str(u), str(i), r, str(t)]
            if kind != "ok":
                fields = BAD[kind](fields)
                if first_bad is None:
                    first_bad = len(out) + 1
            else:
                kept.pop((u, i), None)
                kept[(u, i)] = (float(r), t)
            text = delim.join(fields)
        out.append(text + ("\r" if crlf and text else ""))
    return ("\n".join(out) + "\n").encode(), kept, first_bad


def as_expected(kept: dict[tuple[int, int], tuple[float, int]]) -> Ratings:
    pairs = list(kept)
    return Ratings.from_triplets(
        np.array([p[0] for p in pairs]),
        np.array([p[1] for p in pairs]),
        np.array([kept[p][0] for p in pairs]),
        timestamps=np.array([kept[p][1] for p in pairs]),
    )


def same(got: Ratings, want: Ratings) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got.user_ids, want.user_ids)
    np.testing.assert_array_equal(got.item_ids, want.item_ids)
    np.testing.assert_array_equal(got.timestamps, want.timestamps)


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny blocks, windows and parallel chunks, so their borders fall everywhere."""
    monkeypatch.setattr(_engine, "_BLOCK", 64)
    monkeypatch.setattr(_engine, "_MAP_WINDOW", 64)
    monkeypatch.setattr(_engine, "_PARALLEL_MIN", 1)


@given(
    lines=st.lists(line_st, min_size=1, max_size=40),
    fmt=st.sampled_from(sorted(FORMATS)),
    comp=st.sampled_from(sorted(COMPRESS)),
    mode=st.sampled_from(["error", "skip", "warn"]),
    auto=st.booleans(),
    n_threads=st.sampled_from([1, 2]),
)
def test_rating_files_agree_with_reference(
    tmp_path_factory: pytest.TempPathFactory,
    small_windows: None,
    lines: list[tuple[Any, ...]],
    fmt: str,
    comp: str,
    mode: str,
    auto: bool,
    n_threads: int,
) -> None:
    name, delim, header, loader = FORMATS[fmt]
    text, kept, first_bad = reference(lines, delim, header)
    path = tmp_path_factory.mktemp("f") / (name + comp)
    path.write_bytes(COMPRESS[comp](text, name))
    opts = {"on_bad_line": mode, "duplicates": "last", "n_threads": n_threads}

    def load() -> Ratings:
        if auto:
            return mfkit.load_ratings(path, format=fmt_name(fmt), **opts)
        return loader(path, **opts)

    if first_bad is not None and mode == "error":
        with pytest.raises(RatingFileError, match=f"line {first_bad}:"):
            load()
        return
    if not kept:
        with pytest.raises(RatingFileError):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BadLineWarning)
                load()
        return
    if first_bad is not None and mode == "warn":
        with pytest.warns(BadLineWarning):
            got = load()
    else:
        got = load()
    same(got, as_expected(kept))


def fmt_name(fmt: str) -> str:
    return {"100k": "movielens-100k", "dat": "movielens-dat", "csv": "movielens-csv"}[fmt]


@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.sampled_from(list(b"0123456789\t\n\r:,.-+ex \x00\xff") + [-1]),
        ),
        min_size=1,
        max_size=8,
    ),
    fmt=st.sampled_from(sorted(FORMATS)),
    comp=st.sampled_from(["", ".gz", ".zip"]),
    mode=st.sampled_from(["error", "skip"]),
    compressed_edit=st.booleans(),
)
def test_byte_mutations_give_valid_ratings_or_clear_errors(
    tmp_path_factory: pytest.TempPathFactory,
    edits: list[tuple[int, int]],
    fmt: str,
    comp: str,
    mode: str,
    compressed_edit: bool,
) -> None:
    name, delim, header, loader = FORMATS[fmt]
    rows = [
        ("ok", 1 + k % 13, 1 + (k * 7) % 11, RATINGS[k % 8], 1000 + k, False) for k in range(60)
    ]
    text, _, _ = reference(rows, delim, header)
    data = bytearray(text)
    blob = bytearray(COMPRESS[comp](bytes(data), name)) if compressed_edit else data
    for pos, byte in edits:
        pos %= max(len(blob), 1)
        if byte < 0:
            del blob[pos]
        else:
            blob[pos] = byte
    if not compressed_edit:
        blob = bytearray(COMPRESS[comp](bytes(blob), name))
    path = tmp_path_factory.mktemp("m") / (name + comp)
    path.write_bytes(bytes(blob))
    for load in (
        lambda: loader(path, on_bad_line=mode, duplicates="last"),
        lambda: mfkit.load_ratings(path, on_bad_line=mode, duplicates="last"),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BadLineWarning)
                R = load()
        except (RatingFileError, ValueError) as exc:
            assert str(exc)  # a message, and for file errors the file's name
            if isinstance(exc, RatingFileError):
                assert str(path) in str(exc)
            continue
        assert check_csr_structure(R.indptr, R.indices, R.values, R.n_items) is None
        assert np.all((R.values >= 0.5) & (R.values <= 5))


# --------------------------------------------------------------------------- caches
CACHE_VALUES = {
    "indptr": [-1, 0, 1, 10**9, 2**62],
    "indices": [-1, 0, 1, 29, 30, 2**31 - 1, -(2**31)],
    "values": [np.nan, np.inf, -np.inf, 0.0, 1e38],
    "user_ids": [0, -1, 2**63 - 1],
    "item_ids": [0, -1, 2**63 - 1],
    "timestamps": [0, -1],
}


def small_ratings() -> Ratings:
    rng = np.random.default_rng(5)
    pairs = rng.choice(20 * 30, size=150, replace=False)
    return Ratings.from_triplets(
        pairs // 30, pairs % 30, rng.integers(1, 6, 150).astype(float),
        timestamps=rng.integers(0, 10**6, 150),
    )  # fmt: skip


@given(
    pokes=st.lists(
        st.tuples(st.sampled_from(sorted(CACHE_VALUES)), st.integers(0, 10**6), st.integers(0, 6)),
        min_size=1,
        max_size=4,
    )
)
def test_damaged_caches_load_valid_or_are_refused(
    tmp_path_factory: pytest.TempPathFactory, pokes: list[tuple[str, int, int]]
) -> None:
    path = tmp_path_factory.mktemp("c") / "cache"
    R = small_ratings()
    R.save(path)
    meta = json.loads((path / "meta.json").read_text())
    for name, pos, k in pokes:
        a = np.load(path / meta["data"] / f"{name}.npy", mmap_mode="r+")
        vals = CACHE_VALUES[name]
        a[pos % len(a)] = vals[k % len(vals)]
        a.flush()
        del a
    try:
        X = Ratings.load(path, verify=False)
    except ValueError as exc:
        assert "not a valid mfkit ratings cache" in str(exc)
        return
    # accepted: then it is a valid container, and every kernel takes it
    assert check_csr_structure(X.indptr, X.indices, X.values, X.n_items) is None
    m = mfkit.ALS(factors=2, epochs=1, random_state=0).fit(X)
    assert np.all(np.isfinite(m.predict(*X.to_triplets(original_ids=True)[:2])))
    try:
        Y = Ratings.load(path, verify=True)
    except ValueError as exc:
        assert "checksum mismatch" in str(exc)
    else:  # the pokes wrote the values already there
        same(Y, R)


# --------------------------------------------------------------------------- model files
@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("model") / "m.npz"
    mfkit.SGD(factors=3, epochs=2, random_state=0).fit(small_ratings()).save(p)
    return p


@given(
    flips=st.lists(st.tuples(st.integers(0, 10**7), st.integers(1, 255)), min_size=1, max_size=6)
)
def test_damaged_model_files_are_refused(
    tmp_path_factory: pytest.TempPathFactory, model_file: Path, flips: list[tuple[int, int]]
) -> None:
    blob = bytearray(model_file.read_bytes())
    for pos, x in flips:
        blob[pos % len(blob)] ^= x
    p = tmp_path_factory.mktemp("d") / "m.npz"
    p.write_bytes(bytes(blob))
    try:
        m = mfkit.load(p)
    except ValueError as exc:
        assert str(p) in str(exc)
        return
    # a flip the format does not cover (e.g. in a zip timestamp): the model must be intact
    ref = mfkit.load(model_file)
    np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)


MODEL_VALUES = [np.nan, np.inf, -1, 0, 2**31, 1e30]


@given(
    name=st.sampled_from(
        ["user_factors", "item_factors", "user_biases", "item_biases", "user_ids", "item_ids",
         "seen_indptr", "seen_indices"]
    ),
    pos=st.integers(0, 10**6),
    k=st.integers(0, len(MODEL_VALUES) - 1),
)  # fmt: skip
def test_crafted_model_files_load_valid_or_are_refused(
    tmp_path_factory: pytest.TempPathFactory, model_file: Path, name: str, pos: int, k: int
) -> None:
    with np.load(model_file) as z:
        data = {n: np.array(z[n]) for n in z.files}
    meta = json.loads(data.pop("__meta__").tobytes())
    a = data[name]
    flat = a.reshape(-1)
    value = MODEL_VALUES[k]
    if a.dtype.kind in "iu" and not (
        isinstance(value, int) and np.can_cast(np.min_scalar_type(value), a.dtype)
    ):
        value = -1
    flat[pos % flat.size] = value
    meta["digests"] = {n: digest(v) for n, v in data.items()}
    p = tmp_path_factory.mktemp("x") / "m.npz"
    np.savez(p, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **data)
    try:
        m = mfkit.load(p)
    except ValueError as exc:
        assert str(p) in str(exc)
        return
    users = m.user_ids_
    assert np.all(np.isfinite(m.predict(users, np.resize(m.item_ids_, len(users)))))
    items, scores = m.recommend(users[:5], n=4)
    seen_p, seen_i = m._fitted.seen
    for r, u in enumerate(range(5)):
        rated = set(m.item_ids_[seen_i[seen_p[u] : seen_p[u + 1]]].tolist())
        assert not rated & set(items[r].tolist())
    assert np.all(np.isfinite(scores) | (items == -1))


# --------------------------------------------------------------------------- triplets
triplet_st = st.lists(
    st.tuples(
        st.integers(0, 8),
        st.integers(0, 8),
        st.one_of(st.integers(-5, 10), st.floats(-100, 100, allow_nan=False, width=32)),
    ),
    min_size=1,
    max_size=40,
)


@given(
    triplets=triplet_st,
    model=st.sampled_from(["sgd", "als"]),
    biases=st.booleans(),
    n_threads=st.sampled_from([1, 2]),
)
def test_random_triplets_fit_predict_recommend(
    triplets: list[tuple[int, int, float]], model: str, biases: bool, n_threads: int
) -> None:
    u, i, r = (np.array(x) for x in zip(*triplets, strict=True))
    R = Ratings.from_triplets(u, i, r.astype(np.float64), duplicates="mean")
    cls = mfkit.SGD if model == "sgd" else mfkit.ALS
    m = cls(factors=2, epochs=3, biases=biases, random_state=0, n_threads=n_threads)
    try:
        m.fit(R)
    except DivergenceError:
        assert m.stop_reason_ == "diverged"
        assert m.user_factors_ is not None and np.all(np.isfinite(m.user_factors_))
        return
    one = cls(factors=2, epochs=3, biases=biases, random_state=0, n_threads=1).fit(R)
    np.testing.assert_array_equal(m.user_factors_, one.user_factors_)
    users, items = R.user_ids, R.item_ids
    grid_u = np.repeat(users, len(items))
    grid_i = np.tile(items, len(users))
    pred = m.predict(grid_u, grid_i)
    assert np.all(np.isfinite(pred))
    rec, scores = m.recommend(users, n=len(items))
    for row, user in enumerate(users):
        rated = set(R.item_map.original(R.indices[R.indptr[row] : R.indptr[row + 1]]).tolist())
        got = [x for x in rec[row].tolist() if x != -1]
        assert not rated & set(got)
        assert sorted(got) == sorted(set(items.tolist()) - rated)
        want = m.predict(np.full(len(got), user), np.array(got, dtype=items.dtype))
        np.testing.assert_array_equal(scores[row][: len(got)], want)
