"""Rating file loaders, binary cache and CLI, checked against a plain-Python reference parser
and against ``Ratings.from_triplets`` (np.unique + lexsort) for the container."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mfkit
import mfkit.io as mio
from mfkit.cli import main
from mfkit.io import _engine as engine
from mfkit.ratings import Ratings


# --------------------------------------------------------------------------- reference
def ref_parse(
    text: str,
    delimiter: str | None,
    cols: tuple[int, ...],
    *,
    header: bool = False,
    comment: str | None = None,
    id_kind: type = int,
    date: bool = False,
) -> tuple[list, list, list, list]:
    """Plain-Python parse of delimited text: (users, items, ratings, timestamps)."""
    users, items, ratings, times = [], [], [], []
    seen_header = not header
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip():
            continue
        if comment is not None and line.startswith(comment):
            continue
        if not seen_header:
            seen_header = True
            continue
        f = line.split() if delimiter is None else line.split(delimiter)
        users.append(id_kind(f[cols[0]].strip()))
        items.append(id_kind(f[cols[1]].strip()))
        ratings.append(float(f[cols[2]]))
        if len(cols) > 3:
            times.append(int(f[cols[3]]))
    return users, items, ratings, times


def ref_netflix(text: str) -> tuple[list, list, list, list]:
    users, items, ratings, times = [], [], [], []
    movie = None
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if line.strip().endswith(":"):
            movie = int(line.strip()[:-1])
            continue
        u, r, d = line.split(",")
        users.append(int(u))
        items.append(movie)
        ratings.append(float(r))
        times.append(int(np.datetime64(d, "s").astype(np.int64)))
    return users, items, ratings, times


def expected(users: list, items: list, ratings: list, times: list | None = None) -> Ratings:
    return Ratings.from_triplets(
        np.array(users), np.array(items), np.array(ratings), timestamps=times or None
    )


def assert_same(got: Ratings, want: Ratings) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.values, want.values)
    assert got.values.dtype == np.float32 and got.indices.dtype == np.int32
    for a, b in ((got.user_ids, want.user_ids), (got.item_ids, want.item_ids)):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype.kind == b.dtype.kind
            np.testing.assert_array_equal(a, b)
    if want.timestamps is None:
        assert got.timestamps is None
    else:
        assert got.timestamps is not None
        np.testing.assert_array_equal(got.timestamps, want.timestamps)


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny blocks, memory-map windows and parallel chunks, so block, window and chunk
    borders fall everywhere."""
    monkeypatch.setattr(engine, "_BLOCK", 64)
    monkeypatch.setattr(engine, "_MAP_WINDOW", 64)
    monkeypatch.setattr(engine, "_PARALLEL_MIN", 1)


HALF_STARS = [k / 2 for k in range(1, 11)]


# --------------------------------------------------------------------------- formats
def test_movielens_100k_odd_lines(tmp_path: Path) -> None:
    text = "196\t242\t3\t881250949\r\n186\t302\t3\t891717742\r\n22\t377\t1\t878887116\r\n\r\n"
    text += "244\t51\t2\t880606923"  # no final newline
    p = write(tmp_path / "u.data", text)
    got = mio.load_movielens_100k(p)
    assert_same(got, expected(*ref_parse(text, "\t", (0, 1, 2, 3))))
    assert got.nnz == 4 and got.user_ids.tolist() == [22, 186, 196, 244]


def test_movielens_dat_half_stars(tmp_path: Path) -> None:
    lines = [f"{1 + k % 3}::{100 + k}::{r:g}::{978300760 + k}" for k, r in enumerate(HALF_STARS)]
    text = "\n".join(lines) + "\n\n\n"  # trailing blank lines
    p = write(tmp_path / "ratings.dat", text)
    got = mio.load_movielens_dat(p)
    assert_same(got, expected(*ref_parse(text, "::", (0, 1, 2, 3))))
    assert sorted(got.values.tolist()) == HALF_STARS


def test_movielens_csv_header_and_crlf(tmp_path: Path, small_blocks: None) -> None:
    rows = [
        (u, i, HALF_STARS[(u + i) % 10], 1_100_000_000 + u * 7 + i)
        for u in range(1, 9)
        for i in (1, 5, 31, 2571)
    ]
    text = "userId,movieId,rating,timestamp\r\n"
    text += "".join(f"{u},{i},{r:.1f},{t}\r\n" for u, i, r, t in rows)
    p = write(tmp_path / "ratings.csv", text)
    info = mio.LoadInfo()
    got = mio.load_movielens_csv(p, info=info)
    assert_same(got, expected(*ref_parse(text, ",", (0, 1, 2, 3), header=True)))
    assert info.ratings == len(rows) and info.headers == 1 and info.skipped == 0


def test_movielens_csv_columns_by_name_and_no_timestamp(tmp_path: Path) -> None:
    text = "movieId,rating,userId\n10,4.5,3\n11,0.5,3\n10,5.0,1\n"
    got = mio.load_movielens_csv(write(tmp_path / "ratings.csv", text))
    assert_same(got, expected([3, 3, 1], [10, 11, 10], [4.5, 0.5, 5.0]))


def test_netflix_several_files_and_folder(tmp_path: Path, small_blocks: None) -> None:
    a = "1:\r\n1488844,3,2005-09-06\r\n822109,5,2005-05-13\r\n2:\r\n2059652,4,2005-09-05\r\n"
    b = "3:\n1488844,1,1999-12-31\n4:\n30878,2,2004-02-29\n822109,5,2005-05-13"
    pa = write(tmp_path / "combined_data_1.txt", a)
    pb = write(tmp_path / "combined_data_2.txt", b)
    want = expected(*[x + y for x, y in zip(ref_netflix(a), ref_netflix(b), strict=True)])
    assert_same(mio.load_netflix([pa, pb]), want)
    assert_same(mio.load_netflix(tmp_path), want)
    assert_same(mfkit.load_ratings(tmp_path), want)
    # dates are midnight UTC
    got = mio.load_netflix(pa)
    assert got.timestamps.min() == np.datetime64("2005-05-13", "s").astype(np.int64)


def test_netflix_per_movie_layout(tmp_path: Path) -> None:
    ts = tmp_path / "training_set"
    ts.mkdir()
    texts = {
        1: "1:\n6,3,2005-09-06\n7,5,2005-05-13\n",
        2: "2:\r\n6,4,2005-09-05\r\n",
        17770: "17770:\n8,1,2001-01-01",  # no final newline
    }
    for m, t in texts.items():
        write(ts / f"mv_{m:07d}.txt", t)
    parsed = [ref_netflix(t) for t in texts.values()]
    want = expected(*[sum(c, []) for c in zip(*parsed, strict=True)])
    assert_same(mio.load_netflix(ts), want)
    assert_same(mio.load_netflix(tmp_path), want)
    # an mv file whose first line is not its movie header is refused
    write(ts / "mv_0000003.txt", "9,3,2005-01-01\n")
    with pytest.raises(mio.RatingFileError, match="mv_0000003.txt, line 1: the first line"):
        mio.load_netflix(ts)


def test_netflix_probe_and_qualifying(tmp_path: Path) -> None:
    probe = write(tmp_path / "probe.txt", "1:\n30878\n2647871\n10:\n1952305\n")
    pairs = mio.load_netflix_pairs(probe)
    assert pairs.users.tolist() == [30878, 2647871, 1952305]
    assert pairs.items.tolist() == [1, 1, 10] and pairs.dates is None and len(pairs) == 3
    qual = write(tmp_path / "qualifying.txt", "1:\r\n1046323,2005-12-19\r\n2:\r\n7,2004-02-29\r\n")
    pairs = mio.load_netflix_pairs(qual)
    assert pairs.users.tolist() == [1046323, 7] and pairs.items.tolist() == [1, 2]
    assert pairs.dates.tolist() == [
        int(np.datetime64(d, "s").astype(np.int64)) for d in ("2005-12-19", "2004-02-29")
    ]
    with pytest.raises(ValueError, match="load_netflix_pairs"):
        mfkit.load_ratings(probe)


def test_generic_big_ids_comments_and_blank_lines(tmp_path: Path) -> None:
    big = 2**31 + 5
    text = (
        "# exported ratings\n"
        f"{big};{2**40};3.5\n"
        "\n"
        f"-4;{2**40};0.5\r\n"
        "# a comment in the middle\n"
        f"{big};7;5\n"
        f"{2**62};7;2.25\n  \n"
    )
    p = write(tmp_path / "export.txt", text)
    info = mio.LoadInfo()
    got = mio.load_delimited(p, info=info)
    want = expected(*ref_parse(text, ";", (0, 1, 2), comment="#"))
    assert_same(got, want)
    assert got.user_ids.dtype == np.int64 and got.user_ids.tolist() == [-4, big, 2**62]
    assert info.comments == 2 and info.blank == 2 and info.ratings == 4


def test_generic_string_ids_header_names_extra_columns(tmp_path: Path, small_blocks: None) -> None:
    text = 'ts|rating|extra|item|user\n5|4|x|"The Matrix"|u1\n6|2.5|y|Alien|u2\n7|1|z|Alien|u1\n'
    p = write(tmp_path / "books.psv", text)
    got = mio.load_delimited(p)
    assert got.user_ids.tolist() == ["u1", "u2"]
    assert got.item_ids.tolist() == ["Alien", "The Matrix"]
    want = expected(["u1", "u2", "u1"], ["The Matrix", "Alien", "Alien"], [4, 2.5, 1], [5, 6, 7])
    assert_same(got, want)
    # the same by explicit positions, ids as strings even where they look like integers
    text2 = "a,1,2,x\nb,1,3.5,y\n"
    got2 = mio.load_delimited(write(tmp_path / "g.csv", text2), columns=(0, 1, 2), id_type="str")
    assert got2.item_ids.tolist() == ["1"] and got2.values.tolist() == [2.0, 3.5]


def test_generic_whitespace_and_timestamp_column(tmp_path: Path) -> None:
    text = "1   10\t4   100\n  2 10 3 200  \n"
    got = mio.load_delimited(write(tmp_path / "w.txt", text), delimiter=None)
    assert_same(got, expected([1, 2], [10, 10], [4.0, 3.0], [100, 200]))


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zip", "zip-many"])
def test_compressed_input(tmp_path: Path, kind: str, small_blocks: None) -> None:
    text = "userId,movieId,rating,timestamp\n1,2,3.5,10\n2,2,4.0,11\n"
    raw = text.encode()
    if kind == "gz":
        p = write(tmp_path / "ratings.csv.gz", gzip.compress(raw))
    elif kind == "bz2":
        p = write(tmp_path / "ratings.csv.bz2", bz2.compress(raw))
    elif kind == "xz":
        p = write(tmp_path / "ratings.csv.xz", lzma.compress(raw))
    else:
        p = tmp_path / "ml-latest-small.zip"
        with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("ml-latest-small/ratings.csv", raw)
            if kind == "zip-many":
                zf.writestr("ml-latest-small/movies.csv", b"movieId,title\n2,Jumanji\n")
                zf.writestr("ml-latest-small/README.txt", b"hello")
    info = mio.LoadInfo()
    got = mfkit.load_ratings(p, info=info)
    assert info.format == "movielens-csv"
    assert_same(got, expected(*ref_parse(text, ",", (0, 1, 2, 3), header=True)))


def test_zip_with_several_unknown_members_asks_for_member(tmp_path: Path) -> None:
    p = tmp_path / "data.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("a.csv", b"1,2,3\n")
        zf.writestr("b.csv", b"1,2,4\n")
    with pytest.raises(ValueError, match="member="):
        mio.load_delimited(p)
    got = mio.load_delimited(p, member="b.csv")
    assert got.values.tolist() == [4.0]


def _arrow_table() -> object:
    import pyarrow as pa  # in the test extra: a missing pyarrow fails, never skips

    return pa.table(
        {
            "userId": pa.array([2**33, 5, 5], pa.int64()),
            "movieId": pa.array(["b", "a", "b"]),
            "rating": pa.array([4.5, 1.0, 3.0], pa.float32()),
            "timestamp": pa.array([1, 2, 3], pa.int64()),
        }
    )


def test_parquet_and_arrow(tmp_path: Path) -> None:
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    table = _arrow_table()
    pq.write_table(table, tmp_path / "r.parquet")
    feather.write_feather(table, tmp_path / "r.arrow")
    want = expected([2**33, 5, 5], ["b", "a", "b"], [4.5, 1.0, 3.0], [1, 2, 3])
    for name, fmt in (("r.parquet", "parquet"), ("r.arrow", "arrow")):
        info = mio.LoadInfo()
        got = mfkit.load_ratings(tmp_path / name, info=info)
        assert info.format == fmt
        assert_same(got, want)


def test_parquet_and_arrow_through_the_cli(tmp_path: Path) -> None:
    # the CLI passes progress= to every loader; Parquet and Arrow must take it too
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    table = _arrow_table()
    pq.write_table(table, tmp_path / "r.parquet")
    feather.write_feather(table, tmp_path / "r.arrow")
    want = expected([2**33, 5, 5], ["b", "a", "b"], [4.5, 1.0, 3.0], [1, 2, 3])
    for name in ("r.parquet", "r.arrow"):
        calls: list[tuple[int, int]] = []
        got = mfkit.load_ratings(
            tmp_path / name, progress=lambda d, t, s, calls=calls: calls.append((d, t))
        )
        size = (tmp_path / name).stat().st_size
        assert calls == [(size, size)]
        assert_same(got, want)
        assert main(["convert", str(tmp_path / name), str(tmp_path / f"{name}.cache")]) == 0
        assert_same(Ratings.load(tmp_path / f"{name}.cache"), want)


def test_parquet_bad_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.table({"user": [1, 2, None], "item": [1, 1, 1], "rating": [3.0, 9.0, 4.0]})
    pq.write_table(t, tmp_path / "r.parquet")
    with pytest.raises(mio.RatingFileError, match="row 2"):
        mio.load_parquet(tmp_path / "r.parquet")
    info = mio.LoadInfo()
    got = mio.load_parquet(
        tmp_path / "r.parquet", rating_scale=(1, 5), on_bad_line="skip", info=info
    )
    assert info.skipped == 2 and got.nnz == 1 and got.values.tolist() == [3.0]


def test_parquet_without_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = write(tmp_path / "r.parquet", b"PAR1 not really")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match="needs pyarrow.*pip install pyarrow"):
        mfkit.load_ratings(p)


# --------------------------------------------------------------------------- auto
@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("u.data", "1\t2\t3\t4\n", "movielens-100k"),
        ("ratings.dat", "1::2::3::4\n", "movielens-dat"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,4\n", "movielens-csv"),
        ("my.csv", "userId,movieId,rating\n1,2,3.5\n", "movielens-csv"),
        ("combined_data_3.txt", "1:\n5,3,2005-01-01\n", "netflix"),
        ("probe.txt", "1:\n5\n", "netflix-pairs"),
        ("qualifying.txt", "1:\n5,2005-01-01\n", "netflix-pairs"),
        ("data.tsv", "1\t2\t3\n", "delimited"),
        ("x.txt", "a b 3\n", "delimited"),
    ],
)
def test_sniff_picks_each_format(tmp_path: Path, name: str, text: str, fmt: str) -> None:
    p = write(tmp_path / name, text)
    assert mio.sniff_format(p)[0] == fmt


def test_auto_loads_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path / "ratings.dat", "1::2::3::4\n2::2::5::5\n")
    info = mio.LoadInfo()
    got = mfkit.load_ratings(p, verbose=True, info=info)
    assert info.format == "movielens-dat" and "'::'" in info.reason
    assert "as movielens-dat" in capsys.readouterr().err
    assert_same(got, expected([1, 2], [2, 2], [3, 5], [4, 5]))
    got.save(tmp_path / "cache")
    assert mio.sniff_format(tmp_path / "cache")[0] == "cache"
    assert_same(mfkit.load_ratings(tmp_path / "cache"), got)
    with pytest.raises(ValueError, match="format must be"):
        mfkit.load_ratings(p, format="excel")


# --------------------------------------------------------------------------- bad lines
H = "userId,movieId,rating,timestamp\n"
BAD_CASES = [
    # (file name, content, loader kwargs, line number, reason fragment)
    ("ratings.csv", H + "1,2,3,4\n1,3,4\n", {}, 3, "too few fields: expected 4, found 3"),
    ("ratings.csv", H + "1,2,3,4,5\n", {}, 2, "too many fields"),
    ("ratings.csv", H + "1,2,3,4\n1,3,four,4\n", {}, 3, "rating is not a number"),
    ("ratings.csv", H + "1,2,nan,4\n", {}, 2, "rating is not a number"),
    ("ratings.csv", H + "\n1,2,5.5,4\n", {}, 3, "outside the rating scale [0.5, 5]"),
    ("ratings.csv", H + "1,2,5,4\nx1,2,5,4\n", {}, 3, "user id is not an integer"),
    ("ratings.csv", H + "1,2,5,4\n1,2.5,5,4\n", {}, 3, "item id is not an integer"),
    ("ratings.csv", H + "1,2,5,4\n1,3,5,\n", {}, 3, "timestamp"),
    ("ratings.csv", H + "1,2,5,4\n1,3,", {}, 3, "truncated"),
    ("u.data", "1\t2\t3\t4\n1\t3\t3\t4\n1\t4\t3\n", {}, 3, "too few fields"),
    ("ratings.dat", "1::2::3::4\n1::3:3::4\n", {}, 2, "too few fields"),
    ("combined_data_1.txt", "1:\n5,3,2005-01-01\n6,3,2005-13-01\n", {}, 3, "date is not valid"),
    ("combined_data_1.txt", "1:\n5,3,2005-01-01\n2a:\n", {}, 3, "MovieID"),
    ("combined_data_1.txt", "5,3,2005-01-01\n1:\n", {}, 1, "before the first 'MovieID:'"),
    ("combined_data_1.txt", "1:\n5,6,2005-01-01\n", {}, 2, "outside the rating scale [1, 5]"),
    ("g.txt", "1,2,3\n1,3,3,\n", {"format": "delimited"}, 2, "too many fields"),
    ("g.txt", "1,2,3\n1,3,\n", {"format": "delimited", "rating_scale": (1, 5)}, 2,
     "rating is not a number"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "kw", "line", "why"), BAD_CASES)
def test_bad_line_names_file_line_and_text(
    tmp_path: Path, name: str, text: str, kw: dict, line: int, why: str
) -> None:
    p = write(tmp_path / name, text)
    with pytest.raises(mio.RatingFileError) as exc:
        mfkit.load_ratings(p, **kw)
    err = exc.value
    assert err.path == str(p) and err.line_number == line
    assert why in str(err)
    assert err.line == text.split("\n")[line - 1]
    assert f"{p}, line {line}:" in str(err)


def test_bad_line_number_across_blocks_and_chunks(tmp_path: Path, small_blocks: None) -> None:
    lines = [f"{k},{k % 7},{1 + k % 5}" for k in range(1, 400)]
    lines[236] = "237,3,oops"
    p = write(tmp_path / "g.csv", "\n".join(lines) + "\n")
    with pytest.raises(mio.RatingFileError, match=r"line 237: the rating is not a number"):
        mio.load_delimited(p)


@pytest.mark.parametrize(
    "text", ["", "userId,movieId,rating,timestamp\n", "\n\n  \n", "  ", "\r\n\t"]
)
def test_empty_files(tmp_path: Path, text: str) -> None:
    p = write(tmp_path / "ratings.csv", text)
    with pytest.raises(mio.RatingFileError, match=r"empty|no ratings"):
        mio.load_movielens_csv(p)


def test_skip_and_warn_count(tmp_path: Path, small_blocks: None) -> None:
    good = [f"{u},{i},{1 + (u * i) % 5},{u + i}" for u in range(1, 30) for i in range(1, 4)]
    lines = ["userId,movieId,rating,timestamp", *good[:10], "1,x,3,4", *good[10:50], "2,1,7,4"]
    lines += [*good[50:], "3,1", "# comment-like junk"]
    text = "\n".join(lines) + "\n"
    p = write(tmp_path / "ratings.csv", text)
    info = mio.LoadInfo()
    got = mio.load_movielens_csv(p, on_bad_line="skip", info=info)
    assert_same(got, expected(*ref_parse("\n".join(["h", *good]), ",", (0, 1, 2, 3), header=True)))
    assert info.skipped == 4
    assert info.skipped_by_reason == {
        "the item id is not an integer": 1,
        "the rating is outside the rating scale": 1,
        "too few fields": 2,
    }
    assert [b[1] for b in info.bad_lines] == [12, 53, len(lines) - 1, len(lines)]
    with pytest.warns(mio.BadLineWarning, match="skipped 4 bad line"):
        again = mio.load_movielens_csv(p, on_bad_line="warn")
    assert_same(again, got)
    with pytest.raises(ValueError, match="on_bad_line"):
        mio.load_movielens_csv(p, on_bad_line="ignore")  # type: ignore[arg-type]


def test_duplicates(tmp_path: Path) -> None:
    text = "1,1,2,10\n2,1,3,11\n1,1,4,12\n1,1,5,13\n"
    p = write(tmp_path / "d.csv", text)
    with pytest.raises(ValueError, match="duplicate rating for user 1, item 1"):
        mio.load_delimited(p)
    u, i, r, t = ref_parse(text, ",", (0, 1, 2, 3))
    for how in ("mean", "last", "sum"):
        want = Ratings.from_triplets(
            np.array(u), np.array(i), np.array(r), duplicates=how, timestamps=t
        )
        assert_same(mio.load_delimited(p, duplicates=how), want)


# --------------------------------------------------------------------------- random files
row_st = st.tuples(
    st.integers(-(2**62), 2**62),
    st.integers(0, 50),
    st.sampled_from(["1", "5", "0.5", "3.25", "-2", "1e1", "4.", ".5", "2.5E-1", "12345678.875"]),
    st.integers(0, 2**40),
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    rows=st.lists(row_st, min_size=1, max_size=60, unique_by=lambda r: (r[0], r[1])),
    delimiter=st.sampled_from([",", "\t", ";", "::", "|"]),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    blanks=st.lists(st.integers(0, 60), max_size=4),
    pad=st.booleans(),
)
def test_agrees_with_reference_parser(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list,
    delimiter: str,
    crlf: bool,
    final_newline: bool,
    blanks: list,
    pad: bool,
) -> None:
    sp = " " if pad and delimiter != "\t" else ""
    lines = [f"{u}{sp}{delimiter}{i}{delimiter}{sp}{r}{delimiter}{t}" for u, i, r, t in rows]
    for b in sorted(blanks, reverse=True):
        lines.insert(min(b, len(lines)), "# note" if b % 2 else "")
    eol = "\r\n" if crlf else "\n"
    text = eol.join(lines) + (eol if final_newline else "")
    p = write(tmp_path_factory.mktemp("rand") / "r.txt", text)
    old = (engine._BLOCK, engine._MAP_WINDOW, engine._PARALLEL_MIN)
    engine._BLOCK, engine._MAP_WINDOW, engine._PARALLEL_MIN = 128, 128, 1
    try:
        got = mio.load_delimited(p, delimiter=delimiter, columns=(0, 1, 2, 3), header=False)
    finally:
        engine._BLOCK, engine._MAP_WINDOW, engine._PARALLEL_MIN = old
    assert_same(got, expected(*ref_parse(text, delimiter, (0, 1, 2, 3), comment="#")))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    rows=st.lists(
        st.tuples(
            st.text("abcXYZ_-09 é", min_size=1, max_size=8).map(str.strip).filter(bool),
            st.text("abc01", min_size=1, max_size=4),
            st.sampled_from(["1", "2.5", "4"]),
        ),
        min_size=1,
        max_size=40,
        unique_by=lambda r: (r[0], r[1]),
    )
)
def test_string_ids_agree_with_reference(
    tmp_path_factory: pytest.TempPathFactory, rows: list
) -> None:
    text = "".join(f"{u}\t{i}\t{r}\n" for u, i, r in rows)
    p = write(tmp_path_factory.mktemp("rand") / "s.tsv", text)
    got = mio.load_delimited(p, delimiter="\t", id_type="str", header=False)
    assert_same(got, expected(*ref_parse(text, "\t", (0, 1, 2), id_kind=str)))


# --------------------------------------------------------------------------- binary cache
def _sample(with_strings: bool = False, with_times: bool = True) -> Ratings:
    rng = np.random.default_rng(7)
    users = rng.integers(0, 50, 400)
    items = rng.integers(0, 30, 400)
    if with_strings:
        users = np.array([f"user-{u}" for u in users])
    return Ratings.from_triplets(
        users,
        items * 1000,
        rng.integers(1, 11, 400) / 2,
        duplicates="last",
        timestamps=rng.integers(0, 2**40, 400) if with_times else None,
    )


@pytest.mark.parametrize(("strings", "times"), [(False, True), (True, False)])
@pytest.mark.parametrize("mmap", [True, False])
def test_cache_round_trip(tmp_path: Path, strings: bool, times: bool, mmap: bool) -> None:
    r = _sample(strings, times)
    r.save(tmp_path / "c")
    back = Ratings.load(tmp_path / "c", mmap=mmap)
    assert_same(back, r)
    assert not back.values.flags.writeable
    if mmap:
        assert isinstance(back.indices.base, np.memmap) or isinstance(back.indices, np.memmap)
    # replacing an existing cache works and leaves no temporary folder behind
    _sample(not strings, times).save(tmp_path / "c")
    assert sorted(os.listdir(tmp_path)) == ["c"]


def test_cache_refuses_foreign_or_damaged(tmp_path: Path) -> None:
    r = _sample()
    r.save(tmp_path / "c")
    # a file or folder that is not a cache is never overwritten
    write(tmp_path / "f.txt", "keep me")
    with pytest.raises(FileExistsError):
        r.save(tmp_path / "f.txt")
    (tmp_path / "d").mkdir()
    with pytest.raises(FileExistsError):
        r.save(tmp_path / "d")
    with pytest.raises(ValueError, match="no meta.json"):
        Ratings.load(tmp_path / "d")
    with pytest.raises(ValueError, match="is a file"):
        Ratings.load(tmp_path / "f.txt")
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    # newer version
    bad = dict(meta, format_version=99)
    (tmp_path / "c" / "meta.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="format version 99"):
        Ratings.load(tmp_path / "c")
    (tmp_path / "c" / "meta.json").write_text(json.dumps(dict(meta, format="other")))
    with pytest.raises(ValueError, match="does not describe an mfkit ratings cache"):
        Ratings.load(tmp_path / "c")
    (tmp_path / "c" / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        Ratings.load(tmp_path / "c")
    (tmp_path / "c" / "meta.json").write_text(json.dumps(meta))
    # flipped bytes: found by the checksum
    vals = tmp_path / "c" / meta["data"] / "values.npy"
    data = bytearray(vals.read_bytes())
    data[-3] ^= 0x40
    vals.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch"):
        Ratings.load(tmp_path / "c", mmap=False)
    with pytest.raises(ValueError, match="checksum mismatch"):
        Ratings.load(tmp_path / "c", mmap=True, verify=True)
    # truncated array
    vals.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ValueError, match="values.npy"):
        Ratings.load(tmp_path / "c")
    os.remove(vals)
    with pytest.raises(ValueError, match="values.npy is missing"):
        Ratings.load(tmp_path / "c")


def test_cache_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = _sample()
    r.save(tmp_path / "c")
    calls = {"n": 0}
    real_save = np.save

    def failing_save(*a: object, **k: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real_save(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        _sample(True).save(tmp_path / "c")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["c"]
    assert_same(Ratings.load(tmp_path / "c"), r)


# --------------------------------------------------------------------------- CLI, progress
def test_cli_train_and_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    pairs = {
        (int(u), int(i))
        for u, i in zip(rng.integers(1, 80, 3000), rng.integers(1, 60, 3000), strict=True)
    }
    text = "userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{1 + (u + i) % 5}.0,{u * i}\n" for u, i in sorted(pairs)
    )
    p = write(tmp_path / "ratings.csv", text)
    assert main(["train", str(p), "--epochs", "2", "--factors", "4", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "test RMSE" in out.out and "as movielens-csv" in out.err
    assert main(["convert", str(p), str(tmp_path / "cache")]) == 0
    assert_same(Ratings.load(tmp_path / "cache"), mio.load_movielens_csv(p))
    assert main(["train", str(tmp_path / "cache"), "--epochs", "1", "--factors", "4"]) == 0
    bad = write(tmp_path / "bad.csv", "userId,movieId,rating,timestamp\n1,2,x,4\n")
    assert main(["convert", str(bad), str(tmp_path / "c2")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}, line 2: the rating is not a number" in err
    assert not (tmp_path / "c2").exists()
    assert main(["train", str(bad), "--on-bad-line", "skip", "--epochs", "1"]) == 2  # no ratings


def test_progress_callback(tmp_path: Path, small_blocks: None) -> None:
    text = "".join(f"{k},{k % 3},1\n" for k in range(200))
    p = write(tmp_path / "g.csv", text)
    seen: list[tuple[int, int]] = []
    mio.load_delimited(p, progress=lambda done, total, s: seen.append((done, total)))
    assert len(seen) > 3 and seen[-1] == (len(text), len(text))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))


def test_threads_agree(tmp_path: Path, small_blocks: None) -> None:
    rng = np.random.default_rng(11)
    text = "".join(
        f"{u},{i},{r}\n"
        for u, i, r in zip(
            rng.permutation(3000), rng.integers(0, 99, 3000), rng.integers(1, 6, 3000), strict=True
        )
    )
    p = write(tmp_path / "g.csv", text)
    a = mio.load_delimited(p, n_threads=1)
    b = mio.load_delimited(p, n_threads=3)
    assert_same(a, b)
    assert_same(a, expected(*ref_parse(text, ",", (0, 1, 2))))


def test_cache_folder_has_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        expected([1, 2], [3, 4], [1.0, 2.0]).save(tmp_path / "c")
    finally:
        os.umask(old)
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "c" / "meta.json").stat().st_mode & 0o777 == 0o644


def test_columns_allocated_once_for_large_plain_input(
    tmp_path: Path, small_blocks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Input spanning several windows (or files) is counted first, so the columns are never
    grown (growing copies them: two copies of every column at once)."""
    sizes: list[int] = []
    real = engine.Engine._alloc

    def spy(self: engine.Engine, cap: int) -> None:
        sizes.append(cap)
        real(self, cap)

    monkeypatch.setattr(engine.Engine, "_alloc", spy)
    a = write(tmp_path / "a.csv", "".join(f"{k},{k % 13},2.5\n" for k in range(3000)))
    r = mio.load_delimited(a, header=False)
    assert r.nnz == 3000 and sizes == [1024, 3000]
    sizes.clear()
    parts = [
        f"{m}:\n" + "".join(f"{u},3,2005-01-0{1 + u % 9}\n" for u in range(700)) for m in (1, 2)
    ]
    files = [write(tmp_path / f"combined_data_{k}.txt", t) for k, t in enumerate(parts, 1)]
    r = mio.load_netflix(files)
    assert r.nnz == 1400 and sizes == [1024, 1402]


def test_float32_overflow_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path / "big.csv", "2,2,3\n1,1,-1e39\n")
    with pytest.raises(mio.RatingFileError, match=r"line 2: the rating overflows float32"):
        mio.load_delimited(p, header=False)
    info = mio.LoadInfo()
    r = mio.load_delimited(p, header=False, on_bad_line="skip", info=info)
    assert r.nnz == 1 and info.skipped == 1


def test_integer_ids_are_int64_however_spread(tmp_path: Path) -> None:
    for text in ("1,1,3\n2,2,3\n", "1,1,3\n2000000000,2,3\n"):
        r = mio.load_delimited(write(tmp_path / "s.csv", text), header=False)
        assert r.user_ids.dtype == np.int64 and r.item_ids.dtype == np.int64


def test_failed_load_leaves_no_file_mapped(tmp_path: Path) -> None:
    """The error (and its traceback) may be kept; the file must not stay mapped."""
    p = write(tmp_path / "bad.csv", "1,1,3\n2,2,x\n")
    with pytest.raises(mio.RatingFileError) as exc:
        mio.load_delimited(p, header=False)
    assert exc.value is not None
    with open("/proc/self/maps") as fh:
        assert not any(str(p) in line for line in fh)


def test_bad_lines_kept_are_the_first_for_any_thread_count(tmp_path: Path) -> None:
    lines = [f"{k},{k % 5},{'x' if k % 3 == 0 else 2}" for k in range(400)]
    p = write(tmp_path / "many_bad.csv", "\n".join(lines) + "\n")
    kept = []
    for nt in (1, 2, 3):
        info = mio.LoadInfo()
        old = engine._PARALLEL_MIN
        engine._PARALLEL_MIN = 1
        try:
            mio.load_delimited(p, header=False, on_bad_line="skip", n_threads=nt, info=info)
        finally:
            engine._PARALLEL_MIN = old
        kept.append([ln for _, ln, _, _ in info.bad_lines])
        assert info.skipped == 134
    assert kept[0] == kept[1] == kept[2] == [3 * k + 1 for k in range(20)]


def test_netflix_first_error_in_file_order(
    tmp_path: Path, small_blocks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rating line before any 'MovieID:' line (line 1) is reported before a malformed
    line further down, when both are in one window but in different chunks."""
    monkeypatch.setattr(engine, "_MAP_WINDOW", 1 << 16)
    monkeypatch.setattr(engine, "_BLOCK", 1 << 16)
    body = "".join(f"{u},3,2005-01-0{1 + u % 9}\n" for u in range(60))
    text = "7,3,2005-01-01\n1:\n" + body + "8,x,2005-01-01\n" + body
    p = write(tmp_path / "combined_data_1.txt", text)
    with pytest.raises(mio.RatingFileError, match=r"line 1\b.*before the first 'MovieID:'"):
        mio.load_netflix(p)


def test_duplicates_summing_past_float32_are_refused(tmp_path: Path) -> None:
    p = write(tmp_path / "sum.csv", "1,1,3e38\n1,1,3e38\n2,2,1\n")
    with pytest.raises(ValueError, match="overflow float32"):
        mio.load_delimited(p, header=False, duplicates="sum", rating_scale=None)
    with pytest.raises(ValueError, match="overflow float32"):
        Ratings.from_triplets([1, 1], [1, 1], [3e38, 3e38], duplicates="sum")


def test_file_cut_short_between_windows_is_an_error(
    tmp_path: Path, small_blocks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = write(tmp_path / "cut.csv", "".join(f"{k},{k % 5},3\n" for k in range(400)))
    real = engine.Engine.parse
    calls = []

    def parse_then_cut(self: engine.Engine, *a: Any, **k: Any) -> int:
        n = real(self, *a, **k)
        calls.append(n)
        if len(calls) == 2:
            os.truncate(p, 100)
        return n

    monkeypatch.setattr(engine.Engine, "parse", parse_then_cut)
    monkeypatch.setattr(engine, "_count_mapped_lines", lambda paths, nt: 0)
    with pytest.raises(mio.RatingFileError, match="shrank while it was being read"):
        mio.load_delimited(p, header=False)


def test_loads_leave_no_file_mapped(tmp_path: Path) -> None:
    s = write(tmp_path / "s.tsv", "".join(f"u{k}\ti{k % 7}\t3\n" for k in range(300)))
    n = write(
        tmp_path / "combined_data_1.txt",
        "1:\n" + "".join(f"{k},3,2005-01-02\n" for k in range(300)),
    )
    mio.load_delimited(s, delimiter="\t", id_type="str", header=False)
    mio.load_netflix(n)
    with open("/proc/self/maps") as fh:
        maps = fh.read()
    assert str(s) not in maps and str(n) not in maps
