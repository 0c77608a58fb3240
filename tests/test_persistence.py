"""Saving and loading models: exact round trip, refusal of damaged or foreign files."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mfkit


@pytest.fixture(scope="module")
def fitted() -> mfkit.SGD:
    users = np.array([f"user{j % 40}" for j in range(400)])
    items = np.array([(j * 7919) % 53 for j in range(400)])
    g = np.random.default_rng(0)
    r = g.integers(1, 6, 400).astype(float)
    data = mfkit.Ratings.from_triplets(users, items, r, duplicates="last")
    # a fixed weight, as every model of mfkit 0.1 had (files of 0.1 are simulated from it)
    return mfkit.SGD(factors=6, epochs=4, random_state=0, regularization=0.05).fit(data)


def test_round_trip_identical_predictions(fitted: mfkit.SGD, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    fitted.save(path)
    loaded = mfkit.load(path)
    assert type(loaded) is mfkit.SGD
    assert loaded.get_params() == fitted.get_params()
    users = fitted.user_ids[:10]
    items = fitted.item_ids[:10]
    np.testing.assert_array_equal(loaded.predict(users, items), fitted.predict(users, items))
    assert loaded.user_factors.tobytes() == fitted.user_factors.tobytes()
    assert loaded.history_.keys() == fitted.history_.keys()
    for key, values in fitted.history_.items():
        np.testing.assert_array_equal(loaded.history_[key], values)
    assert loaded.global_mean == fitted.global_mean
    # pickle is never needed
    with np.load(path, allow_pickle=False) as npz:
        assert "__meta__" in npz.files


def test_saved_file_has_ordinary_permissions(fitted: mfkit.SGD, tmp_path: Path) -> None:
    path = tmp_path / "perm.npz"
    old = os.umask(0o022)
    try:
        fitted.save(path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_truncated_file_is_refused(fitted: mfkit.SGD, tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    fitted.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a valid mfkit model"):
        mfkit.load(path)


def test_altered_array_is_refused(fitted: mfkit.SGD, tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    fitted.save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["user_factors"] = arrays["user_factors"].copy()
    arrays["user_factors"][0, 0] += 1.0
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="altered or damaged"):
        mfkit.load(path)


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.arange(3))
    with pytest.raises(ValueError, match="no mfkit metadata"):
        mfkit.load(plain)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a valid mfkit model"):
        mfkit.load(text)
    newer = tmp_path / "newer.npz"
    meta = {"format": "mfkit-model", "format_version": 99, "digests": {}}
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(newer, __meta__=blob)
    with pytest.raises(ValueError, match="newer"):
        mfkit.load(newer)
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("__meta__.npy", b"garbage")
    with pytest.raises(ValueError, match="not a valid mfkit model"):
        mfkit.load(tmp_path / "z.npz")


def test_failed_save_leaves_old_file_and_no_temp(
    fitted: mfkit.SGD, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.npz"
    fitted.save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_into_a_missing_folder_names_the_path(fitted: mfkit.SGD, tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "m.npz"
    with pytest.raises(FileNotFoundError, match="no-such-dir.*does not exist"):
        fitted.save(target)
    assert os.listdir(tmp_path) == []


def test_unfitted_model_cannot_be_saved(tmp_path: Path) -> None:
    with pytest.raises(mfkit.NotFittedError):
        mfkit.SGD().save(tmp_path / "x.npz")


def _rewrite_meta(src: Path, dst: Path, drop: tuple[str, ...] = (), **changes: object) -> None:
    """Copy a model file with some metadata fields changed or dropped (the array digests
    still match)."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    meta.update(changes)
    for key in drop:
        del meta[key]
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(dst, __meta__=blob, **arrays)


@pytest.mark.parametrize("version", [0, -1, True, 1.0, "1"])
def test_format_versions_below_one_or_not_integers_are_refused(
    fitted: mfkit.SGD, tmp_path: Path, version: object
) -> None:
    # a regression test: format_version <= 0 used to load
    fitted.save(tmp_path / "m.npz")
    _rewrite_meta(tmp_path / "m.npz", tmp_path / "v.npz", format_version=version)
    with pytest.raises(ValueError, match="format version"):
        mfkit.load(tmp_path / "v.npz")


def test_loaded_model_has_the_fitted_attributes_and_file_of_0_1_loads(
    fitted: mfkit.SGD, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "m.npz")
    m = mfkit.load(tmp_path / "m.npz")
    assert (m.blocks_, m.fit_nbytes_) == (fitted.blocks_, fitted.fit_nbytes_)
    assert (m.stop_reason_, m.best_epoch_) == ("epochs", None)
    # a file written by mfkit 0.1.0 has no stop_reason, best_epoch or fitted entries
    _rewrite_meta(
        tmp_path / "m.npz", tmp_path / "old.npz", drop=("stop_reason", "best_epoch", "fitted")
    )
    m = mfkit.load(tmp_path / "old.npz")
    assert m.stop_reason_ == "unknown" and m.best_epoch_ is None
    assert m.predict(fitted.user_ids[:3], fitted.item_ids[:3]).tobytes() == (
        fitted.predict(fitted.user_ids[:3], fitted.item_ids[:3]).tobytes()
    )


def test_auto_model_file_without_its_chosen_value_is_refused(tmp_path: Path) -> None:
    data = mfkit.datasets.synthetic("toy", random_state=0)
    mfkit.ALS(factors=3, epochs=2, random_state=0).fit(data).save(tmp_path / "m.npz")
    _rewrite_meta(tmp_path / "m.npz", tmp_path / "x.npz", drop=("fitted",))
    with pytest.raises(ValueError, match="not a valid mfkit model.*regularization_"):
        mfkit.load(tmp_path / "x.npz")


def test_a_file_cannot_set_other_attributes(fitted: mfkit.SGD, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m.npz")
    _rewrite_meta(tmp_path / "m.npz", tmp_path / "x.npz", fitted={"predict": 1})
    with pytest.raises(ValueError, match="not a valid mfkit model.*no fitted attributes"):
        mfkit.load(tmp_path / "x.npz")
