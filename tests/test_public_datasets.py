"""Public data sets: download, verify, cache and parse, against a local HTTP server on
127.0.0.1 serving small archives built here in the official GroupLens layouts."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mfkit
from mfkit.datasets import ARCHIVES, Archive, ChecksumError, DatasetDownloadError

# ----------------------------------------------------------------------------- archives
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy"]


def triplets(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = rng.choice(40 * 30, size=n, replace=False)
    users = keys // 30 + 1
    items = keys % 30 + 1
    ratings = rng.integers(1, 6, n).astype(np.float64)
    stamps = rng.integers(874_724_710, 893_286_638, n)
    return users, items, ratings, stamps


def movie_names(k: int) -> str:
    return f"Movie \u00e9{k}, The ({1990 + k % 10})"  # a comma and a non-ASCII letter


def build_zip(layout: str, seed: int = 0) -> tuple[bytes, dict[str, Any]]:
    """An archive in the official layout, and what a correct reader must find in it."""
    u, i, r, t = triplets(seed)
    movies = sorted(set(i.tolist()) | {29, 30})  # two movies nobody rated
    # genres in u.genre's order, as the 100K flags give them
    genres = {
        m: sorted({GENRES[(m + j) % len(GENRES)] for j in range(m % 3)}, key=GENRES.index)
        for m in movies
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if layout == "100k":
            zf.writestr(
                "ml-100k/u.data",
                "".join(
                    f"{a}\t{b}\t{int(c)}\t{d}\n" for a, b, c, d in zip(u, i, r, t, strict=True)
                ),
            )
            lines = []
            for m in movies:
                flags = ["1" if g in genres[m] else "0" for g in GENRES]
                lines.append(f"{m}|{movie_names(m)}|01-Jan-1995||http://x/{m}|" + "|".join(flags))
            zf.writestr("ml-100k/u.item", ("\n".join(lines) + "\n").encode("latin-1"))
            zf.writestr("ml-100k/u.genre", "".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)))
            zf.writestr("ml-100k/README", "MovieLens 100K test copy\n")
        elif layout == "dat":
            zf.writestr(
                "ml-1m/ratings.dat",
                "".join(
                    f"{a}::{b}::{int(c)}::{d}\n" for a, b, c, d in zip(u, i, r, t, strict=True)
                ),
            )
            text = "".join(f"{m}::{movie_names(m)}::{'|'.join(genres[m])}\n" for m in movies)
            zf.writestr("ml-1m/movies.dat", text.encode("latin-1"))
        else:
            zf.writestr(
                "ml-latest-small/ratings.csv",
                "userId,movieId,rating,timestamp\n"
                + "".join(f"{a},{b},{c:.1f},{d}\n" for a, b, c, d in zip(u, i, r, t, strict=True)),
            )
            rows = [
                f'{m},"{movie_names(m)}",{"|".join(genres[m]) or "(no genres listed)"}\n'
                for m in movies
            ]
            zf.writestr(
                "ml-latest-small/movies.csv", ("movieId,title,genres\n" + "".join(rows)).encode()
            )
        # incompressible filler, so a cut-short transfer has delivered whole blocks
        filler = np.random.default_rng(seed).bytes(400_000)
        zf.writestr(zipfile.ZipInfo("filler.bin"), filler, compress_type=zipfile.ZIP_STORED)
    expect = {"triplets": (u, i, r, t), "movies": movies, "genres": genres}
    return buf.getvalue(), expect


KEYS = {"100k": "100k", "dat": "1m", "csv": "latest-small"}


# ----------------------------------------------------------------------------- server
class Server:
    """A local HTTP server; ``mode`` decides how the next requests are answered."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode = "ok"
        self.fail_first = 0  # answer this many requests with a cut-short transfer first
        self.requests = 0
        self.ranges: list[str | None] = []  # the Range header of each request
        self.honour_range = True
        self.stop = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                outer.requests += 1
                whole = outer.files.get(self.path)
                if whole is None:
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                cut = outer.mode == "truncate" or outer.fail_first > 0
                outer.fail_first = max(outer.fail_first - 1, 0)
                start = 0
                if rng and outer.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(whole):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(whole) - 1}/{len(whole)}"
                    )
                else:
                    self.send_response(200)
                body = whole[start:]
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.mode == "stall":
                    self.wfile.write(body[:100])
                    self.wfile.flush()
                    outer.stop.wait(20)
                    return
                if cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


def serve(
    server: Server, monkeypatch: pytest.MonkeyPatch, layout: str, *, sha256: str | None = None
) -> tuple[str, bytes, dict[str, Any]]:
    """Serve an archive of ``layout`` and point its registry entry at it (the test hook)."""
    key = KEYS[layout]
    body, expect = build_zip(layout)
    official = ARCHIVES[key]
    server.files["/" + official.filename] = body
    entry = Archive(
        url=server.base + "/" + official.filename,
        filename=official.filename,
        sha256=sha256 or hashlib.sha256(body).hexdigest(),
        size=len(body),
        md5=hashlib.md5(body, usedforsecurity=False).hexdigest(),
        ratings=official.ratings,
        items=official.items,
        layout=official.layout,
    )
    monkeypatch.setitem(ARCHIVES, key, entry)
    return key, body, expect


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def only_partial(folder: Path, filename: str) -> bool:
    """Nothing at the final path, at most the hidden partial download beside it."""
    return not (folder / filename).exists() and set(leftovers(folder)) <= {f".{filename}.part"}


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("layout", ["100k", "dat", "csv"])
def test_download_parse_and_item_table(
    layout: str, server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, body, expect = serve(server, monkeypatch, layout)
    data = mfkit.datasets.movielens(key, tmp_path, progress=False)
    assert server.requests == 1
    assert (tmp_path / ARCHIVES[key].filename).read_bytes() == body  # official name, whole file
    u, i, r, t = expect["triplets"]
    R = data.ratings
    ru, ri, rr = R.to_triplets(original_ids=True)
    got = sorted(zip(ru.tolist(), ri.tolist(), rr.tolist(), strict=True))
    want = sorted(zip(u.tolist(), i.tolist(), r.tolist(), strict=True))
    assert got == want
    # timestamps follow their ratings
    order = np.lexsort((i, u))
    assert R.timestamps is not None
    np.testing.assert_array_equal(np.sort(R.timestamps), np.sort(t[order]))
    items = data.items
    assert items is not None
    assert items.item.tolist() == expect["movies"]
    assert items.titles([29, 1]).tolist() == [movie_names(29), movie_names(1)]
    assert items.genres.tolist() == ["|".join(expect["genres"][m]) for m in expect["movies"]]
    with pytest.raises(KeyError, match="999"):
        items.titles([999])
    assert data.name == ARCHIVES[key].filename.removesuffix(".zip")
    assert "redistribution" in data.terms


def test_second_call_is_cached_and_needs_no_request(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, _, _ = serve(server, monkeypatch, "100k")
    first = mfkit.datasets.movielens(key, tmp_path, progress=False)
    server.close()  # no server any more: the cache must answer
    t0 = time.perf_counter()
    second = mfkit.datasets.movielens(f"ml-{key}", tmp_path, download=False)
    took = time.perf_counter() - t0
    assert server.requests == 1
    for a in ("indptr", "indices", "values", "user_ids", "item_ids", "timestamps"):
        np.testing.assert_array_equal(getattr(first.ratings, a), getattr(second.ratings, a))
    assert first.items is not None and second.items is not None
    np.testing.assert_array_equal(first.items.title, second.items.title)
    assert (tmp_path / "ml-100k.mfkit" / "source.json").is_file()
    assert took < 5.0  # generous bound for a loaded machine; the point is: no parse, no fetch


def test_env_var_names_the_default_folder(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, _, _ = serve(server, monkeypatch, "csv")
    monkeypatch.setenv("MFKIT_DATA", str(tmp_path / "env"))
    mfkit.datasets.movielens(key, progress=False)
    assert (tmp_path / "env" / "ml-latest-small.zip").is_file()
    assert mfkit.datasets.data_home() == str(tmp_path / "env")


def test_truncated_transfer_leaves_nothing(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, body, _ = serve(server, monkeypatch, "100k")
    server.mode = "truncate"
    with pytest.raises(DatasetDownloadError) as err:
        mfkit.datasets.movielens(key, tmp_path, retries=0, progress=False)
    assert ARCHIVES[key].url in str(err.value) and "resumes" in str(err.value)
    assert only_partial(tmp_path, "ml-100k.zip")
    part = tmp_path / ".ml-100k.zip.part"
    assert body.startswith(part.read_bytes()) and 0 < part.stat().st_size < len(body)


def test_wrong_checksum_is_refused_and_nothing_kept(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, _, _ = serve(server, monkeypatch, "100k", sha256="0" * 64)
    with pytest.raises(ChecksumError, match="pinned SHA-256"):
        mfkit.datasets.movielens(key, tmp_path, retries=0, progress=False)
    assert leftovers(tmp_path) == []


def test_stalled_server_times_out(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, _, _ = serve(server, monkeypatch, "100k")
    server.mode = "stall"
    t0 = time.perf_counter()
    with pytest.raises(DatasetDownloadError, match="timeout"):
        mfkit.datasets.movielens(key, tmp_path, timeout=(2.0, 0.5), retries=0, progress=False)
    assert time.perf_counter() - t0 < 10.0
    assert only_partial(tmp_path, "ml-100k.zip")


def test_interrupted_download_then_retry(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, body, _ = serve(server, monkeypatch, "dat")
    server.fail_first = 1
    with pytest.raises(DatasetDownloadError):
        mfkit.datasets.movielens(key, tmp_path, retries=0, progress=False)
    assert only_partial(tmp_path, "ml-1m.zip")
    have = (tmp_path / ".ml-1m.zip.part").stat().st_size
    assert 0 < have <= len(body) // 2
    data = mfkit.datasets.movielens(key, tmp_path, retries=0, progress=False)  # resumes
    assert server.ranges == [None, f"bytes={have}-"]
    assert (tmp_path / "ml-1m.zip").read_bytes() == body
    assert leftovers(tmp_path) == ["ml-1m.mfkit", "ml-1m.zip"]
    assert data.ratings.nnz == 300
    # within one call: a cut-short first attempt is retried from where it stopped
    other = tmp_path / "again"
    server.fail_first = 1
    mfkit.datasets.movielens(key, other, retries=1, progress=False)
    assert server.ranges[-2:] == [None, f"bytes={have}-"]
    assert (other / "ml-1m.zip").read_bytes() == body


def test_server_without_ranges_restarts_from_the_start(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, body, _ = serve(server, monkeypatch, "100k")
    server.honour_range = False
    server.fail_first = 1
    with pytest.raises(DatasetDownloadError):
        mfkit.datasets.movielens(key, tmp_path, retries=0, progress=False)
    mfkit.datasets.movielens(key, tmp_path, retries=0, progress=False)
    assert (tmp_path / "ml-100k.zip").read_bytes() == body  # the whole file, not appended


def test_foreign_partial_file_is_discarded(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, body, _ = serve(server, monkeypatch, "100k")
    (tmp_path / ".ml-100k.zip.part").write_bytes(b"x" * 100)  # not the start of this file
    with pytest.raises(ChecksumError):
        mfkit.datasets.movielens(key, tmp_path, retries=0, progress=False)
    assert leftovers(tmp_path) == []  # the bad bytes are gone, so the next call starts over
    mfkit.datasets.movielens(key, tmp_path, retries=0, progress=False)
    assert (tmp_path / "ml-100k.zip").read_bytes() == body


def test_damaged_archive_on_disk_is_refused_and_left_in_place(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, body, _ = serve(server, monkeypatch, "100k")
    damaged = bytearray(body)
    damaged[len(damaged) // 2] ^= 0xFF
    path = tmp_path / "ml-100k.zip"
    path.write_bytes(bytes(damaged))
    with pytest.raises(ChecksumError) as err:
        mfkit.datasets.movielens(key, tmp_path)
    assert str(path) in str(err.value) and "left in place" in str(err.value)
    assert path.read_bytes() == bytes(damaged)
    assert server.requests == 0
    path.write_bytes(b"not a zip")  # a foreign file of another size
    with pytest.raises(ChecksumError, match="bytes where the official"):
        mfkit.datasets.movielens(key, tmp_path)
    assert path.read_bytes() == b"not a zip"


def test_archive_placed_by_hand_is_used_without_network(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, body, expect = serve(server, monkeypatch, "csv")
    (tmp_path / "ml-latest-small.zip").write_bytes(body)
    data = mfkit.datasets.movielens(key, tmp_path, download=False)
    assert server.requests == 0 and data.ratings.nnz == len(expect["triplets"][0])


def test_download_false_says_where_and_how(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, _, _ = serve(server, monkeypatch, "100k")
    t0 = time.perf_counter()
    with pytest.raises(DatasetDownloadError) as err:
        mfkit.datasets.movielens(key, tmp_path / "none", download=False)
    msg = str(err.value)
    assert ARCHIVES[key].url in msg and str(tmp_path / "none") in msg and "by hand" in msg
    assert time.perf_counter() - t0 < 1.0 and server.requests == 0
    assert not (tmp_path / "none").exists()


def test_no_server_is_a_quick_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # a port nothing listens on: connection refused
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    official = ARCHIVES["100k"]
    entry = Archive(
        url=f"http://127.0.0.1:{port}/ml-100k.zip",
        filename=official.filename,
        sha256="0" * 64,
        ratings=official.ratings,
        layout=official.layout,
    )
    monkeypatch.setitem(ARCHIVES, "100k", entry)
    t0 = time.perf_counter()
    with pytest.raises(DatasetDownloadError, match="could not download") as err:
        mfkit.datasets.movielens("100k", tmp_path, retries=0, timeout=2.0)
    assert time.perf_counter() - t0 < 5.0
    assert "by hand" in str(err.value) and str(tmp_path) in str(err.value)
    assert not (tmp_path / "ml-100k.zip").exists()


def test_progress_on_stderr(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    key, body, _ = serve(server, monkeypatch, "100k")
    mfkit.datasets.movielens(key, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "ml-100k.zip" in err and "100%" in err and "MB/s" in err


def test_stale_cache_is_rebuilt(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, _, _ = serve(server, monkeypatch, "100k")
    mfkit.datasets.movielens(key, tmp_path, progress=False)
    (tmp_path / "ml-100k.mfkit" / "source.json").write_text("{broken")
    data = mfkit.datasets.movielens(key, tmp_path, download=False)
    assert data.ratings.nnz == 300
    assert '"version": 1' in (tmp_path / "ml-100k.mfkit" / "source.json").read_text()
    assert [p for p in leftovers(tmp_path) if p.startswith(".")] == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"timeout": 0}, ValueError, "timeout must be > 0"),
        ({"timeout": (1.0,)}, ValueError, "connect, read"),
        ({"timeout": "5"}, TypeError, "timeout must be a real number"),
        ({"retries": -1}, ValueError, "retries must be >= 0"),
        ({"retries": 1.5}, TypeError, "retries must be an integer"),
        ({"download": "no"}, TypeError, "download must be True or False"),
        ({"progress": 1}, TypeError, "progress must be True or False"),
    ],
)
def test_bad_options_are_named(
    kwargs: dict[str, Any],
    error: type,
    match: str,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with pytest.raises(error, match=match):
        mfkit.datasets.movielens("100k", tmp_path, **kwargs)
    assert leftovers(tmp_path) == []
    key, _, _ = serve(server, monkeypatch, "100k")
    mfkit.datasets.movielens(key, tmp_path, progress=False)
    with pytest.raises(error, match=match):  # also when the cache would answer
        mfkit.datasets.movielens(key, tmp_path, **kwargs)


def test_names_and_registry() -> None:
    with pytest.raises(ValueError, match="unknown MovieLens data set"):
        mfkit.datasets.movielens("5m")
    with pytest.raises(TypeError, match="name must be a str"):
        mfkit.datasets.movielens(100)  # type: ignore[arg-type]
    assert set(ARCHIVES) == {"100k", "1m", "10m", "20m", "25m", "32m", "latest-small"}
    for entry in ARCHIVES.values():
        assert entry.url == "https://files.grouplens.org/datasets/movielens/" + entry.filename
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        assert entry.size is not None and entry.size > 0
    assert "redistribut" in mfkit.datasets.TERMS


# ----------------------------------------------------------------------------- Netflix
def write_netflix(folder: Path, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, i, r, _ = triplets(seed, 120)
    folder.mkdir(exist_ok=True)
    out = []
    for m in np.unique(i):
        out.append(f"{m}:")
        out += [
            f"{a * 1000},{int(c)},2005-09-06" for a, b, c in zip(u, i, r, strict=True) if b == m
        ]
    (folder / "combined_data_1.txt").write_text("\n".join(out) + "\n")
    titles = [
        f"{m},{2000 + m % 5 if m % 7 else 'NULL'},Title, with comma {m}" for m in range(1, 31)
    ]
    (folder / "movie_titles.txt").write_bytes(("\n".join(titles) + "\n").encode("latin-1"))
    return u * 1000, i, r


def test_netflix_local_copy_is_parsed_once_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "nf_prize_dataset"
    u, i, r = write_netflix(src, 3)
    home = tmp_path / "home"
    data = mfkit.datasets.netflix(src, home)
    ref = mfkit.io.load_netflix(src)
    np.testing.assert_array_equal(data.ratings.values, ref.values)
    np.testing.assert_array_equal(data.ratings.item_ids, ref.item_ids)
    got = sorted(
        zip(*(a.tolist() for a in data.ratings.to_triplets(original_ids=True)), strict=True)
    )
    assert got == sorted(zip(u.tolist(), i.tolist(), r.tolist(), strict=True))
    assert data.items is not None
    assert data.items.titles([7, 8]).tolist() == [
        "Title, with comma 7",
        "Title, with comma 8 (2003)",
    ]
    assert len([p for p in os.listdir(home) if p.startswith("netflix-")]) == 1

    def no_parse(*a: Any, **k: Any) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr("mfkit.datasets._public.load_netflix", no_parse)
    again = mfkit.datasets.netflix(src, home)
    np.testing.assert_array_equal(again.ratings.values, data.ratings.values)
    monkeypatch.undo()
    # a changed file is parsed again
    u2, i2, r2 = write_netflix(src, 4)
    os.utime(src / "combined_data_1.txt", ns=(1, 1))
    changed = mfkit.datasets.netflix(src, home)
    got = sorted(
        zip(*(a.tolist() for a in changed.ratings.to_triplets(original_ids=True)), strict=True)
    )
    assert got == sorted(zip(u2.tolist(), i2.tolist(), r2.tolist(), strict=True))


def test_netflix_missing_path_is_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such rating file"):
        mfkit.datasets.netflix(tmp_path / "nope.txt", tmp_path)


# ----------------------------------------------------------------------------- command line
def test_cli_datasets_fetch_list_and_train(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    from mfkit.cli import main

    key, _, expect = serve(server, monkeypatch, "100k")
    home = str(tmp_path)
    assert main(["datasets", "fetch", "ml-100k", "--data-home", home]) == 0
    out = capsys.readouterr().out
    assert "300 ratings" in out and "redistribution" in out
    assert f"items: {len(expect['movies'])} movies" in out
    assert main(["datasets", "list", "--data-home", home]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ml-100k "))
    assert "archive+parsed" in line
    args = ["train", "--dataset", "ml-100k", "--data-home", home, "--no-download"]
    assert main([*args, "--epochs", "2", "--factors", "4", "--quiet"]) == 0
    assert "test RMSE" in capsys.readouterr().out
    assert server.requests == 1
    assert main(["train", "some.csv", "--dataset", "ml-100k"]) == 2
    assert "not both" in capsys.readouterr().err


def test_cli_fetch_without_network_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    from mfkit.cli import main

    assert main(["train", "--dataset", "ml-1m", "--data-home", str(tmp_path), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert "ml-1m.zip is not in" in err and "by hand" in err


def test_without_pooch_a_download_says_what_to_install(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    key, body, _ = serve(server, monkeypatch, "100k")
    monkeypatch.setitem(sys.modules, "pooch", None)  # import pooch now raises ImportError
    with pytest.raises(DatasetDownloadError, match=r"mfkit\[datasets\]") as err:
        mfkit.datasets.movielens(key, tmp_path)
    assert "by hand" in str(err.value) and server.requests == 0
    (tmp_path / "ml-100k.zip").write_bytes(body)  # placed by hand: no pooch needed
    assert mfkit.datasets.movielens(key, tmp_path).ratings.nnz == 300


def test_ctrl_c_mid_download_leaves_a_resumable_part_only(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mfkit.datasets import _fetch

    key, body, _ = serve(server, monkeypatch, "100k")
    real_update = _fetch._Progress.update

    def interrupt(self: Any, n: int) -> None:
        real_update(self, n)
        if self.done >= 2 * 65536:
            raise KeyboardInterrupt

    monkeypatch.setattr(_fetch._Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        mfkit.datasets.movielens(key, tmp_path, progress=False)
    assert only_partial(tmp_path, "ml-100k.zip")
    monkeypatch.setattr(_fetch._Progress, "update", real_update)
    mfkit.datasets.movielens(key, tmp_path, progress=False)
    assert server.ranges[-1] is not None and server.ranges[-1].startswith("bytes=")
    assert (tmp_path / "ml-100k.zip").read_bytes() == body
