"""The README's Python examples run as written (on small files made here)."""

from __future__ import annotations

import re
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


def test_readme_has_examples() -> None:
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("index", [0, 1])
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
    else:
        items = np.asarray(namespace["items"])
        assert items.shape == (2, 10)  # two folded-in users, ten items each
        assert (tmp_path / "ratings.cache").exists()


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")
def test_readme_dask_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the block starts a LocalCluster of two worker processes, as a user would
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    code = python_blocks()[2]
    assert "LocalCluster" in code
    exec(compile(code, "README.md block 2", "exec"), namespace)
    model = namespace["model"]
    assert isinstance(model, mfkit.ALS) and model.history_["epoch"] == [1, 2, 3, 4, 5]
