"""The README's Python examples run as written (on small files made here)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mfkit

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def write_example_files(root: Path) -> dict[str, object]:
    data = mfkit.datasets.synthetic("ml-100k", random_state=0)
    u, i, r = data.to_triplets()
    (root / "ml-25m").mkdir()
    lines = [
        f"{a + 1},{b + 1},{c:.1f},{1_000_000_000 + j}"
        for j, (a, b, c) in enumerate(zip(u, i, r, strict=True))
    ]
    (root / "ml-25m" / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "\n".join(lines) + "\n"
    )
    (root / "nf_prize_dataset").mkdir()
    by_item = np.argsort(i, kind="stable")
    out = []
    for item in np.unique(i):
        out.append(f"{item + 1}:")
        sel = by_item[i[by_item] == item]
        out += [f"{u[j] + 1},{int(r[j])},2005-09-06" for j in sel]
    (root / "nf_prize_dataset" / "combined_data_1.txt").write_text("\n".join(out) + "\n")
    # ratings of two users the model has not seen, by the file's (original) item ids
    new = ([90001, 90001, 90002], [1, 2, 3], [5.0, 3.0, 4.0])
    return {"new_user_ratings": new}


def block_with(marker: str) -> int:
    """The index of the README's one Python block containing ``marker``."""
    found = [j for j, code in enumerate(python_blocks()) if marker in code]
    assert len(found) == 1, (marker, found)
    return found[0]


def test_readme_has_examples() -> None:
    assert len(python_blocks()) >= 6


@pytest.mark.parametrize("index", [0, 1, block_with("BayesianMF("), block_with("ImplicitALS(")])
def test_readme_python_example_runs(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace: dict[str, object] = {}
    if index == 1:
        namespace.update(write_example_files(tmp_path))
        namespace["mfkit"] = mfkit
    monkeypatch.chdir(tmp_path)
    code = python_blocks()[index]
    exec(compile(code, f"README.md block {index}", "exec"), namespace)
    model = namespace["model"]
    assert isinstance(model, mfkit.models.FactorModel)
    assert np.all(np.isfinite(model.user_factors))
    if index == 0:
        assert (tmp_path / "model.npz").is_file()
    elif index == block_with("BayesianMF("):
        assert isinstance(model, mfkit.BayesianMF)
        assert np.all(np.asarray(namespace["std"]) > 0)
    elif index == block_with("ImplicitALS("):  # implicit feedback
        assert isinstance(model, mfkit.ImplicitALS)
        assert np.asarray(namespace["items"]).shape == (2, 10)
        assert np.all(np.isfinite(model.history_["val_ndcg@10"]))
    else:
        items = np.asarray(namespace["items"])
        assert items.shape == (2, 10)  # two folded-in users, ten items each
        assert (tmp_path / "ratings.cache").exists()


def place_ml100k_by_hand(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ml-100k.zip in the official layout (synthetic ratings), placed in the data folder
    as a user would by hand, with the registry's pins pointed at it (the documented test
    hook), so the README's data-set example runs as written with no network."""
    data = mfkit.datasets.synthetic("ml-100k", random_state=0, timestamps=True)
    u, i, r = data.to_triplets()
    t = data.timestamps
    assert t is not None
    path = home / "ml-100k.zip"
    home.mkdir()
    genres = ["unknown", "Action", "Comedy"]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "ml-100k/u.data",
            "".join(
                f"{a + 1}\t{b + 1}\t{int(c)}\t{d}\n" for a, b, c, d in zip(u, i, r, t, strict=True)
            ),
        )
        zf.writestr(
            "ml-100k/u.item",
            "".join(
                f"{m + 1}|Movie {m + 1} (1995)|01-Jan-1995||http://x|0|{m % 2}|{1 - m % 2}\n"
                for m in range(data.n_items)
            ),
        )
        zf.writestr("ml-100k/u.genre", "".join(f"{g}|{k}\n" for k, g in enumerate(genres)))
    body = path.read_bytes()
    entry = dataclasses.replace(
        mfkit.datasets.ARCHIVES["100k"],
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
        md5=None,
    )
    monkeypatch.setitem(mfkit.datasets.ARCHIVES, "100k", entry)
    monkeypatch.setenv("MFKIT_DATA", str(home))


def test_readme_dataset_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    place_ml100k_by_hand(tmp_path / "data", monkeypatch)
    monkeypatch.chdir(tmp_path)
    code = python_blocks()[block_with("mfkit.datasets.movielens(")]
    namespace: dict[str, object] = {"mfkit": mfkit}
    exec(compile(code, "README.md block 2", "exec"), namespace)
    top = namespace["top"]
    assert list(top.columns) == ["user", "rank", "item", "score", "title", "genres"]
    assert len(top) == 10 and top["title"].str.startswith("Movie ").all()
    scores = namespace["scores"]
    assert len(scores) == 1 and np.isfinite(scores["rmse"].iloc[0])
    assert (tmp_path / "curves.png").stat().st_size > 2000
    assert (tmp_path / "parity.png").stat().st_size > 2000
    assert (tmp_path / "data" / "ml-100k.mfkit").is_dir()  # parsed once, cached


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")
# when 8787 is taken (another cluster on the machine), distributed's dashboard may leave a
# socket for the garbage collector: its warning, not mfkit's
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_readme_dask_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the block starts a LocalCluster of two worker processes, as a user would
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    code = python_blocks()[block_with("LocalCluster")]
    exec(compile(code, "README.md block 2", "exec"), namespace)
    model = namespace["model"]
    assert isinstance(model, mfkit.ALS) and model.history_["epoch"] == [1, 2, 3, 4, 5]
