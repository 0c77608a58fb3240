"""Values the tokenizer reads, against Python's own parsers, on the fast path and the general
parser alike.

* A rating is ``numpy.float32(float(text))``: the text rounded once to the nearest double
  (as Python's ``float`` does), that double rounded once to float32. Checked on texts at
  float32 rounding boundaries (the midpoint between two neighbouring float32 values, and the
  doubles next to it), written with 15 to 40 significant digits, with mantissas above
  2**53, long digit strings and exponents.
* A date is a ``datetime.date``: impossible dates (2005-02-31, month 13, day 0, February 29
  in a year that is not a leap year, year 0) are bad lines, "the timestamp/date is not
  valid", and a valid one is stored as its seconds since 1970-01-01.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mfkit.io as mio
from mfkit.io import _engine as engine

BAD_DATE = "the timestamp/date is not valid"
EPOCH = datetime.date(1970, 1, 1)


@contextmanager
def fast_path(on: bool) -> Iterator[None]:
    old = engine._FAST_PATH
    engine._FAST_PATH = on
    try:
        yield
    finally:
        engine._FAST_PATH = old


def want_rating(text: str) -> np.float32:
    return np.float32(float(text))


def load_ratings_text(path: Path, texts: list[str], fast: bool) -> np.ndarray:
    """The ratings of one line per text (user = line number, so CSR order is file order)."""
    path.write_text("".join(f"{u},1,{t}\n" for u, t in enumerate(texts)))
    with fast_path(fast):
        r = mio.load_delimited(path, delimiter=",", columns=(0, 1, 2), header=False)
    assert r.nnz == len(texts)
    np.testing.assert_array_equal(r.user_ids, np.arange(len(texts)))
    return r.values


def assert_ratings_exact(path: Path, texts: list[str]) -> None:
    want = np.array([want_rating(t) for t in texts], dtype=np.float32)
    for fast in (True, False):
        got = load_ratings_text(path, texts, fast)
        bad = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
        assert bad.size == 0, [(texts[k], got[k], want[k]) for k in bad[:5]]


def boundary_texts(f: np.float32) -> list[str]:
    """Texts whose value lies at or next to the midpoint between f and the next float32."""
    up = np.nextafter(f, np.float32(np.inf))
    mid = (float(f) + float(up)) / 2  # exact in double: float32 has 24 significant bits
    out = [format(decimal.Decimal(mid), "f")]  # the midpoint's exact decimal expansion
    for k in (-2, -1, 0, 1, 2):
        x = mid
        for _ in range(abs(k)):
            x = float(np.nextafter(x, np.inf if k > 0 else -np.inf))
        for digits in (15, 16, 17, 18, 19, 20, 25, 40):
            out.append(f"{x:.{digits}g}")
        out.append(repr(x))
        # the shortest text of x as mantissa and exponent, mantissa above 2**53
        m, _, e = f"{x:.17e}".partition("e")
        out.append(m.replace(".", "") + f"e{int(e) - 17}")
    return out


def test_reported_double_rounding_case(tmp_path: Path) -> None:
    text = "2.9363561868667605"
    assert float(want_rating(text)) == float(np.float32(2.9363563))
    assert_ratings_exact(tmp_path / "r.csv", [text])


def test_ratings_at_float32_rounding_boundaries(tmp_path: Path) -> None:
    rng = np.random.default_rng(16)
    values = rng.uniform(0.5, 5.0, 120).astype(np.float32)
    values = np.concatenate([values, rng.uniform(1e-3, 1e6, 40).astype(np.float32)])
    texts = [t for f in values for t in boundary_texts(f)]
    # exactly the float32 values and their neighbours' midpoints as short and long decimals
    texts += ["0.5", "5", "4.5", "3.0000001788139343", "3.00000017881393432617187500001"]
    texts += ["1." + "0" * 60 + "1", "2." + "9" * 70, "0." + "0" * 30 + "25e30"]
    assert_ratings_exact(tmp_path / "r.csv", texts)


@st.composite
def boundary_cases(draw: st.DrawFn) -> list[str]:
    """Every boundary text of a few float32 values (bit patterns of ~1e-3 to ~1e6)."""
    bits = draw(st.lists(st.integers(0x3A800000, 0x49800000), min_size=1, max_size=8))
    floats = np.array(bits, dtype=np.uint32).view(np.float32)
    return [t for f in floats for t in boundary_texts(f)]


DECIMAL = st.from_regex(r"[0-9]{1,22}\.[0-9]{1,30}", fullmatch=True).filter(
    lambda t: 1e-30 < float(t) < 1e30
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(near=boundary_cases(), other=st.lists(DECIMAL, max_size=20))
def test_ratings_round_once_to_float32(
    tmp_path_factory: pytest.TempPathFactory, near: list[str], other: list[str]
) -> None:
    assert_ratings_exact(tmp_path_factory.mktemp("f32") / "r.csv", near + other)


# ------------------------------------------------------------------------------- dates
def date_or_none(y: int, m: int, d: int) -> datetime.date | None:
    try:
        return datetime.date(y, m, d)
    except ValueError:
        return None


def assert_dates_like_python(path: Path, ymd: list[tuple[int, int, int]]) -> None:
    ymd = [*ymd, (2005, 1, 1)]  # one valid line, so that a load never comes back empty
    texts = [f"{y:04d}-{m:02d}-{d:02d}" for y, m, d in ymd]
    path.write_text("1:\n" + "".join(f"{u},3,{t}\n" for u, t in enumerate(texts)))
    valid = [(u, date_or_none(*t)) for u, t in enumerate(ymd)]
    valid = [(u, dt) for u, dt in valid if dt is not None]
    for fast in (True, False):
        info = mio.LoadInfo()
        with fast_path(fast):
            r = mio.load_netflix(path, on_bad_line="skip", info=info)
        assert info.skipped == len(ymd) - len(valid)
        if info.skipped:
            assert info.skipped_by_reason == {BAD_DATE: info.skipped}
        np.testing.assert_array_equal(r.user_ids, [u for u, _ in valid])
        want = [(dt - EPOCH).days * 86400 for _, dt in valid]
        np.testing.assert_array_equal(r.timestamps, want)


IMPOSSIBLE = [
    (2005, 2, 31), (2005, 2, 30), (2005, 2, 29), (1900, 2, 29), (2100, 2, 29),
    (2005, 13, 1), (2005, 0, 10), (2005, 1, 0), (2005, 4, 31), (2005, 6, 31),
    (2005, 9, 31), (2005, 11, 31), (2005, 1, 32), (2005, 99, 99), (0, 1, 1),
]  # fmt: skip
POSSIBLE = [
    (2004, 2, 29), (2000, 2, 29), (2005, 2, 28), (2005, 1, 31), (2005, 3, 31),
    (2005, 4, 30), (2005, 12, 31), (1, 1, 1), (9999, 12, 31), (1970, 1, 1), (1969, 12, 31),
]  # fmt: skip


def test_impossible_dates_are_bad_lines(tmp_path: Path) -> None:
    assert_dates_like_python(tmp_path / "combined_data_1.txt", IMPOSSIBLE + POSSIBLE)


@pytest.mark.parametrize("fast", [True, False])
def test_impossible_date_error_names_the_line(tmp_path: Path, fast: bool) -> None:
    p = tmp_path / "combined_data_1.txt"
    p.write_text("1:\n10,3,2005-01-01\n11,4,2005-02-31\n")
    with fast_path(fast), pytest.raises(mio.RatingFileError, match=BAD_DATE) as exc:
        mio.load_netflix(p)
    assert "line 3" in str(exc.value) and "2005-02-31" in str(exc.value)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    ymd=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 9999), st.sampled_from([1900, 2000, 2004, 2100, 2400])),
            st.integers(0, 14),
            st.integers(0, 32),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_dates_agree_with_datetime(
    tmp_path_factory: pytest.TempPathFactory, ymd: list[tuple[int, int, int]]
) -> None:
    assert_dates_like_python(tmp_path_factory.mktemp("dates") / "combined_data_1.txt", ymd)
