"""The tokenizer's fast path (``_tokenize.h``) against its general parser.

Every strictly formatted line takes the fast path; every other line is handed to the general
parser. So a file must load to the same bytes, the same counts and the same errors with the
fast path turned off (``mfkit.io._engine._FAST_PATH = False``). The files here mix well-formed lines
with the forms the fast path must refuse: signs, padding, exponents, long digit runs, ids
beyond int32, ratings outside the scale, odd line ends, missing and extra fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mfkit.io as mio
from mfkit.io import _engine as engine
from mfkit.ratings import Ratings


@contextmanager
def settings_of(fast: bool, small: bool) -> Iterator[None]:
    old = (engine._FAST_PATH, engine._BLOCK, engine._MAP_WINDOW, engine._PARALLEL_MIN)
    engine._FAST_PATH = fast
    if small:
        engine._BLOCK, engine._MAP_WINDOW, engine._PARALLEL_MIN = 96, 96, 1
    try:
        yield
    finally:
        engine._FAST_PATH, engine._BLOCK, engine._MAP_WINDOW, engine._PARALLEL_MIN = old


def outcome(load: Callable[[], Ratings], info: mio.LoadInfo) -> tuple[str, Any]:
    try:
        r = load()
    except (ValueError, mio.RatingFileError) as exc:
        return "error", str(exc)
    counts = (info.lines, info.ratings, info.comments, info.blank, info.headers, info.skipped)
    return "ok", (r, counts, dict(info.skipped_by_reason), list(info.bad_lines))


def assert_same_outcome(a: tuple[str, Any], b: tuple[str, Any]) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] == "error":
        assert a[1] == b[1]
        return
    ra, *rest_a = a[1]
    rb, *rest_b = b[1]
    assert rest_a == rest_b
    assert ra.shape == rb.shape
    for name in ("indptr", "indices", "values", "user_ids", "item_ids", "timestamps"):
        x, y = getattr(ra, name), getattr(rb, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype, name
            assert x.tobytes() == y.tobytes(), name


def both_ways(load: Callable[[mio.LoadInfo], Ratings], small: bool) -> None:
    results = []
    for fast in (True, False):
        info = mio.LoadInfo()
        with settings_of(fast, small):
            results.append(outcome(lambda info=info: load(info), info))
    assert_same_outcome(results[0], results[1])


# tokens: mostly well formed, often not
def digits(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))


ID = st.one_of(
    st.integers(0, 99_999).map(str),
    st.integers(0, 99_999).map(str),
    digits(1, 20),
    st.sampled_from(
        ["-5", "+7", " 12", "12 ", "", "1e3", "x1", "2147483647", "2147483648", "-2147483649",
         "4294967296", "9223372036854775807", "9223372036854775808", "007", "0"]
    ),
)  # fmt: skip
RATING = st.one_of(
    st.sampled_from([f"{k / 2:.1f}" for k in range(1, 11)]),
    st.sampled_from([str(k) for k in range(0, 7)]),
    st.sampled_from(
        ["0.5", "5.", ".5", "1e0", "10.0", "5.5", "0.0", "9.9", "0", "-1", "4.25", "3.125",
         "4.50000000000000000001", "nan", "inf", "", " 4", "4 ", "2.5e-1", "00004.000",
         "1.2345678901234567"]
    ),
    digits(1, 3).map(lambda d: "3." + d),
)  # fmt: skip
TIME = st.one_of(
    st.integers(0, 2_000_000_000).map(str),
    digits(1, 19),
    st.sampled_from(["-5", "", "12a", "+3", "1.5", "99999999999999999999"]),
)
LINE_END = st.sampled_from(["\n", "\n", "\n", "\r\n", "\r\r\n", "\n\n", "\n# comment\n", "\n  \n"])


@st.composite
def delimited_text(draw: st.DrawFn) -> tuple[str, str]:
    delimiter = draw(st.sampled_from([",", "::", "\t", ";"]))
    n = draw(st.integers(1, 40))
    parts = []
    for _ in range(n):
        fields = [draw(ID), draw(ID), draw(RATING), draw(TIME)]
        shape = draw(st.integers(0, 9))
        if shape == 0:
            fields.pop()
        elif shape == 1:
            fields.append("9")
        line = delimiter.join(fields)
        if shape == 2:
            line += delimiter
        parts.append(line + draw(LINE_END))
    text = "".join(parts)
    if draw(st.booleans()):
        text = text.rstrip("\n")
    return delimiter, text


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    case=delimited_text(),
    on_bad_line=st.sampled_from(["skip", "error"]),
    small=st.booleans(),
    scale=st.sampled_from([None, (0.5, 5.0)]),
)
def test_delimited_same_with_and_without_fast_path(
    tmp_path_factory: pytest.TempPathFactory,
    case: tuple[str, str],
    on_bad_line: str,
    small: bool,
    scale: tuple[float, float] | None,
) -> None:
    delimiter, text = case
    p = tmp_path_factory.mktemp("fast") / "r.txt"
    p.write_bytes(text.encode())
    both_ways(
        lambda info: mio.load_delimited(
            p, delimiter=delimiter, columns=(0, 1, 2, 3), header=False, comment="#",
            rating_scale=scale, on_bad_line=on_bad_line, duplicates="last", info=info,
        ),
        small,
    )  # fmt: skip


DATE = st.one_of(
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(["2005-13-01", "2005-02-30", "2005-1-01", "05-01-01", "", "2005-01-01 "]),
)


@st.composite
def netflix_text(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(1, 5))):
        out.append(draw(st.sampled_from(["1:", "17770:", "2147483648:", " 3 :", "x:"])) + "\n")
        for _ in range(draw(st.integers(0, 12))):
            out.append(f"{draw(ID)},{draw(RATING)},{draw(DATE)}{draw(LINE_END)}")
    return "".join(out)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(text=netflix_text(), small=st.booleans())
def test_netflix_same_with_and_without_fast_path(
    tmp_path_factory: pytest.TempPathFactory, text: str, small: bool
) -> None:
    p = tmp_path_factory.mktemp("fastnf") / "combined_data_1.txt"
    p.write_bytes(text.encode())
    both_ways(
        lambda info: mio.load_netflix(
            p, on_bad_line="skip", comment="#", duplicates="last", info=info
        ),
        small,
    )


def test_fast_path_values_exact(tmp_path: Path) -> None:
    """Field lengths around the eight-byte loads, at the very end of the file, parsed to the
    values Python gives."""
    rng = np.random.default_rng(5)
    rows = []
    for n in range(1, 19):
        for _ in range(3):
            u = int(rng.integers(10 ** (n - 1), 10**n)) if n < 10 else int(rng.integers(1, 2**31))
            t = int("".join(rng.choice(list("0123456789"), n)))
            r = float(rng.integers(1, 11)) / 2
            rows.append((u, n * 1000 + len(rows), r, t))
    text = "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows)
    for cut in (0, 1):  # with and without the final newline
        p = tmp_path / f"v{cut}.csv"
        p.write_bytes(text[: len(text) - cut].encode())
        got = mio.load_delimited(p, delimiter=",", columns=(0, 1, 2, 3), header=False)
        want = Ratings.from_triplets(
            np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
            np.array([r[2] for r in rows]), timestamps=np.array([r[3] for r in rows]),
        )  # fmt: skip
        np.testing.assert_array_equal(got.user_ids, want.user_ids)
        np.testing.assert_array_equal(got.item_ids, want.item_ids)
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.timestamps, want.timestamps)


def test_late_wide_id_starts_over_with_int64(tmp_path: Path) -> None:
    """An id beyond int32 deep in the file: the load starts over with int64 columns and the
    counts are those of one pass."""
    lines = [f"{k},{k % 7},3\n" for k in range(5000)] + ["3000000000,1,4\n", "# c\n"]
    p = tmp_path / "w.csv"
    p.write_text("".join(lines))
    info = mio.LoadInfo()
    with settings_of(True, True):
        r = mio.load_delimited(
            p, delimiter=",", columns=(0, 1, 2), header=False, comment="#", info=info
        )
    assert r.user_ids.dtype == np.int64 and r.user_ids[-1] == 3_000_000_000
    assert r.nnz == 5001 and info.ratings == 5001 and info.lines == 5002
    assert info.comments == 1 and info.paths == [str(p)]
