"""mfkit.plot: figures render to PNG and show the numbers they are given."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

import mfkit
from mfkit import plot

matplotlib.use("Agg")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def models() -> tuple[mfkit.SGD, mfkit.ALS, mfkit.Ratings]:
    data = mfkit.datasets.synthetic("toy", random_state=0)
    train, test = mfkit.model_selection.train_test_split(data, 0.2, random_state=0)
    sgd = mfkit.SGD(factors=4, epochs=4, random_state=0).fit(train, validation=test)
    als = mfkit.ALS(factors=4, epochs=3, random_state=0).fit(train, validation=test)
    return sgd, als, test


def written_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 2000


def test_learning_curves_plot_the_history(models: tuple, tmp_path: Path) -> None:
    sgd, als, _ = models
    ax = plot.learning_curves({"sgd": sgd, "als": als}, title="curves")
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_array_equal(lines["sgd (validation)"].get_ydata(), sgd.history_["val_rmse"])
    np.testing.assert_array_equal(lines["als (train)"].get_ydata(), als.history_["train_rmse"])
    np.testing.assert_array_equal(lines["sgd (validation)"].get_xdata(), sgd.history_["epoch"])
    plot.save(ax, tmp_path / "curves.png")
    written_png(tmp_path / "curves.png")
    ax2 = plot.learning_curves([sgd], x="seconds")
    np.testing.assert_allclose(ax2.get_lines()[0].get_xdata(), np.cumsum(sgd.history_["seconds"]))
    with pytest.raises(ValueError, match="labels has 1 names for 2"):
        plot.learning_curves([sgd, als], labels=["a"])
    with pytest.raises(mfkit.NotFittedError):
        plot.learning_curves(mfkit.SGD())


def test_parity_plot_counts_every_rating(models: tuple, tmp_path: Path) -> None:
    sgd, _, test = models
    left, right = plot.parity(sgd, test)
    counts = sum(p.get_height() for p in right.patches)
    assert counts == test.nnz
    u, i, r = test.to_triplets(original_ids=True)
    res = sgd.predict(u, i, unknown="baseline") - r
    assert f"RMSE {np.sqrt(np.mean(res**2)):.4f}" in right.get_title()
    plot.save([left, right], tmp_path / "parity.png")
    written_png(tmp_path / "parity.png")


def test_bar_chart_of_a_benchmark_table(tmp_path: Path) -> None:
    rows = [
        {"library": "mfkit", "threads": 1, "updates/s": 3.0e7},
        {"library": "mfkit", "threads": 2, "updates/s": 5.5e7},
        {"library": "reference", "threads": 1, "updates/s": 1.0e6},
    ]
    ax = plot.bar_chart(rows, "library", "updates/s", group="threads", log=True)
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == [1.0e6, 3.0e7, 5.5e7]
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == ["1M", "30M", "55M"]
    small = plot.bar_chart([{"a": "x", "v": 35_850.0}, {"a": "y", "v": 0.60341}], "a", "v")
    assert [t.get_text() for t in small.texts] == ["35.9k", "0.6034"]
    plot.save(ax.figure, tmp_path / "bars.png")
    written_png(tmp_path / "bars.png")
    import pandas as pd

    ax = plot.bar_chart(pd.DataFrame(rows), "library", "updates/s")
    assert sorted(p.get_width() for p in ax.patches) == widths
    with pytest.raises(ValueError, match="no column 'rmse'"):
        plot.bar_chart(rows, "library", "rmse")


def test_save_refuses_non_figures(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Figure or Axes"):
        plot.save(object(), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
