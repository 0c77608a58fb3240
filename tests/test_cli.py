"""The command line: the README's main job, run small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mfkit
from mfkit.cli import main


def test_train_on_synthetic_and_save(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "model.npz"
    code = main(
        ["train", "--preset", "ml-100k", "--epochs", "3", "--factors", "8", "--out", str(out)]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "test RMSE" in captured.out and "epoch   3/3" in captured.err
    model = mfkit.load(out)
    assert model.user_factors.shape == (943, 8)


def test_train_svdpp_with_fixed_and_auto_regularization(tmp_path: Path) -> None:
    out = tmp_path / "svdpp.npz"
    base = ["train", "--preset", "toy", "--epochs", "2", "--factors", "4", "--quiet"]
    assert main([*base, "--implicit-feedback", "--regularization", "0.1", "--out", str(out)]) == 0
    model = mfkit.load(out)
    assert model.implicit_feedback is True and model.regularization_ == 0.1
    assert main([*base, "--regularization", "auto", "--out", str(out)]) == 0
    assert mfkit.load(out).regularization_scores_


def test_python_dash_m_entry_point() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mfkit", "train", "--preset", "toy", "--epochs", "2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "test RMSE" in res.stdout


def test_bad_arguments_exit_nonzero(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["train", "--preset", "toy", "--epochs", "2", "--test-size", "3"]) == 2
    assert "test_size" in capsys.readouterr().err


def test_bad_options_fail_before_reading_or_training(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    missing = str(tmp_path / "not-read.csv")  # never opened: the options are checked first
    cases = [
        (["train", missing, "--model", "als", "--learning-rate", "0.1"], "--learning-rate"),
        (["train", missing, "--factors", "0"], "factors"),
        (["cv", missing, "--threads", "0"], "n_threads"),
        (["cv", missing, "--folds", "1"], "--folds"),
        (["train", missing, "--out", str(tmp_path / "no-dir" / "m.npz")], "--out"),
        (["train", missing, "--model", "als", "--implicit-feedback"], "--implicit-feedback"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and "no such rating file" not in err, (argv, err)


def test_missing_model_and_bad_user_exit_2(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["evaluate", str(tmp_path / "none.npz")]) == 2
    assert "mfkit evaluate: error: model file" in capsys.readouterr().err
    out = tmp_path / "m.npz"
    assert main(["train", "--preset", "toy", "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", "abc"]) == 2
    assert "mfkit recommend: error: --user must be an integer" in capsys.readouterr().err
