"""Regression tests for damaged files, hostile input, interrupts and resource limits: each
reproduces a reported failure (a crash, a hang or a silent wrong answer) and checks that it
is now a correct result or a clear error."""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mfkit
from mfkit import DivergenceError, Ratings
from mfkit._core.files import digest
from mfkit.data import _assemble
from mfkit.exceptions import RatingFileError
from mfkit.models._state import FactorState


def small(seed: int = 0, n_users: int = 40, n_items: int = 30, nnz: int = 400) -> Ratings:
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=nnz, replace=False)
    return Ratings.from_triplets(
        pairs // n_items, pairs % n_items, rng.integers(1, 6, nnz).astype(float)
    )


def cache_array(path: Path, name: str) -> Path:
    meta = json.loads((path / "meta.json").read_text())
    return path / meta["data"] / f"{name}.npy"


def poke(path: Path, name: str, pos: int, value: Any) -> None:
    """Change one entry of a cache array in place (the checksum is not updated)."""
    a = np.load(cache_array(path, name), mmap_mode="r+")
    a[pos] = value
    a.flush()
    del a


# --------------------------------------------------------------- 1: damaged ratings cache
@pytest.mark.parametrize(
    ("name", "pos", "value", "why"),
    [
        ("indices", 5, 50_000_000, "out of range"),
        ("indices", 5, -1, "out of range"),
        ("values", 7, np.nan, "NaN or infinite"),
        ("values", 7, np.inf, "NaN or infinite"),
        ("indptr", 3, 10**12, "indptr"),
    ],
)
def test_damaged_cache_is_refused_with_mmap(
    tmp_path: Path, name: str, pos: int, value: Any, why: str
) -> None:
    small().save(tmp_path / "c")
    poke(tmp_path / "c", name, pos, value)
    for mmap in (True, False):
        with pytest.raises(ValueError, match=why):
            Ratings.load(tmp_path / "c", mmap=mmap, verify=False)


def test_unsorted_or_repeated_items_in_cache_are_refused(tmp_path: Path) -> None:
    R = small()
    R.save(tmp_path / "c")
    a, b = int(R.indptr[0]), int(R.indptr[1])
    assert b - a >= 2
    poke(tmp_path / "c", "indices", a, R.indices[a + 1])  # a repeat within user 0
    with pytest.raises(ValueError, match="sorted and distinct"):
        Ratings.load(tmp_path / "c")
    poke(tmp_path / "c", "indices", a + 1, R.indices[a] - 1 if R.indices[a] else 0)
    with pytest.raises(ValueError, match="sorted and distinct"):
        Ratings.load(tmp_path / "c")


def test_cache_with_duplicate_or_foreign_ids_is_refused(tmp_path: Path) -> None:
    R = small()
    R.save(tmp_path / "c")
    poke(tmp_path / "c", "user_ids", 1, R.user_ids[0])
    with pytest.raises(ValueError, match="user_ids must be distinct"):
        Ratings.load(tmp_path / "c")
    # ids of a dtype mfkit never writes (here float64), with a matching meta.json
    R.save(tmp_path / "d")
    fn = cache_array(tmp_path / "d", "item_ids")
    np.save(fn, np.arange(R.n_items, dtype=np.float64))
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    meta["arrays"]["item_ids"]["dtype"] = "<f8"
    (tmp_path / "d" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="item_ids has dtype float64"):
        Ratings.load(tmp_path / "d")


def reference_fault(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, n_cols: int
) -> tuple[int, int]:
    """Plain-Python statement of the structural rules: (fault, position) of the first
    faulty row: 1 column out of range, 2 not strictly increasing, 3 value not finite."""
    for r in range(len(indptr) - 1):
        prev = -1
        for j in range(int(indptr[r]), int(indptr[r + 1])):
            c = int(indices[j])
            if not 0 <= c < n_cols:
                return 1, j
            if c <= prev:
                return 2, j
            prev = c
        for j in range(int(indptr[r]), int(indptr[r + 1])):
            if not np.isfinite(values[j]):
                return 3, j
    return 0, -1


def test_structural_check_agrees_with_reference() -> None:
    """The parallel check kernel against a plain-Python statement of the same rules, on
    random (often faulty) structures, for 1 and 3 threads."""
    rng = np.random.default_rng(12345)
    for _ in range(400):
        n_rows = int(rng.integers(1, 40))
        counts = rng.integers(0, 5, n_rows)
        indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        n_cols = int(rng.integers(1, 9))
        indices = np.sort(rng.integers(0, n_cols, indptr[-1])).astype(np.int32)
        for r in range(n_rows):  # mostly valid rows, some damaged
            indices[indptr[r] : indptr[r + 1]] = np.sort(
                rng.choice(n_cols, min(n_cols, counts[r]), replace=False)
            )[: counts[r]].tolist() + [0] * max(0, counts[r] - n_cols)
        k = int(rng.integers(0, 3))
        if indptr[-1] and k:
            pos = rng.integers(0, indptr[-1], k)
            indices[pos] = rng.integers(-2, n_cols + 2, k)
        values = np.ones(indptr[-1], dtype=np.float32)
        if indptr[-1] and rng.random() < 0.3:
            values[rng.integers(0, indptr[-1])] = rng.choice([np.nan, np.inf, -np.inf])
        expect = reference_fault(indptr, indices, values, n_cols)
        for nt in (1, 3):
            assert _assemble.check_csr(indptr, indices, values, n_cols, nt) == expect
        no_values = reference_fault(indptr, indices, np.ones_like(values), n_cols)
        assert _assemble.check_csr(indptr, indices, None, n_cols, 2) == no_values


def test_checked_cache_then_trains_and_converts(tmp_path: Path) -> None:
    """The reported crash path: a cache accepted by load, then fit(init=...) segfaulted."""
    R = small()
    R.save(tmp_path / "c")
    m = mfkit.SGD(factors=2, epochs=1, random_state=0).fit(R)
    poke(tmp_path / "c", "indices", 0, 50_000_000)
    code = textwrap.dedent(
        f"""
        import mfkit
        try:
            mfkit.Ratings.load({str(tmp_path / "c")!r})
        except ValueError as e:
            print("refused:", e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and "out of range" in out.stdout
    assert m.n_items == R.n_items


# --------------------------------------------------------------- 4: SGD blow-up
def test_sgd_blowup_is_divergence_and_keeps_last_good_epoch() -> None:
    data = ([0, 1], [0, 1], [1e6, -1e6])
    m = mfkit.SGD(factors=3, epochs=6, random_state=0)
    with pytest.raises(DivergenceError, match="rescale them") as info:
        m.fit(data)
    assert "epoch 2" in str(info.value) and "keeps the factors of epoch 1" in str(info.value)
    assert m.stop_reason_ == "diverged"
    assert len(m.history_["train_rmse"]) == 1
    one = mfkit.SGD(factors=3, epochs=1, random_state=0).fit(data)
    np.testing.assert_array_equal(m.user_factors_, one.user_factors_)
    np.testing.assert_array_equal(m.item_factors_, one.item_factors_)
    assert np.all(np.isfinite(m.predict([0, 1], [0, 1])))


def test_factors_that_overflow_predictions_are_divergence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finite float32 factors whose dot product overflows gave -inf predictions."""
    R = small()
    real = mfkit.SGD._trainer

    def trainer(self: Any, *a: Any) -> Any:
        t = real(self, *a)
        run = t.run_epoch

        def run_epoch(epoch: int) -> tuple[float, bool]:
            rmse, ok = run(epoch)
            if epoch == 2:
                t.state.P[0] = 3e19  # finite, but 3e19 * 3e19 overflows float32
                t.state.Q[0] = -3e19
            return rmse, ok

        t.run_epoch = run_epoch
        return t

    monkeypatch.setattr(mfkit.SGD, "_trainer", trainer)
    m = mfkit.SGD(factors=2, epochs=4, random_state=0)
    with pytest.raises(DivergenceError, match="overflow float32"):
        m.fit(R)
    assert len(m.history_["epoch"]) == 1
    assert np.all(np.isfinite(m.predict(*R.to_triplets()[:2])))


def test_init_std_that_overflows_is_blamed() -> None:
    with pytest.raises(ValueError, match="lower init_std"):
        mfkit.SGD(factors=2, epochs=1, init_std=1e20, random_state=0).fit(small())
    with pytest.raises(ValueError, match="lower init_std"):
        mfkit.ALS(factors=2, epochs=1, init_std=1e20, random_state=0).fit(small())


def test_blowup_check_leaves_ordinary_training_alone() -> None:
    R = mfkit.datasets.synthetic("ml-100k", random_state=0)
    for model in (
        mfkit.SGD(factors=8, epochs=5, random_state=0),
        mfkit.ALS(factors=8, epochs=5, random_state=0),
    ):
        model.fit(R)
        assert model.stop_reason_ == "epochs"
        rmse = model.history_["train_rmse"]
        assert rmse[-1] < rmse[0]


# --------------------------------------------------------------- 10: Ctrl-C anywhere in fit
def _interrupt() -> None:
    os.kill(os.getpid(), signal.SIGINT)


# a fixed weight: regularization='auto' would choose per number of epochs, and its grid
# fits would run through the patched functions first
_FIXED = {"factors": 3, "n_threads": 1, "random_state": 0, "regularization": 0.05}


def _reference(epochs: int) -> mfkit.SGD:
    return mfkit.SGD(epochs=epochs, **_FIXED).fit(small())


def _assert_holds(m: mfkit.SGD, epochs: int) -> None:
    ref = _reference(epochs)
    assert m.stop_reason_ == "interrupted"
    assert m.history_["epoch"] == [float(e) for e in range(1, epochs + 1)]
    np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)
    np.testing.assert_array_equal(m.item_factors_, ref.item_factors_)
    np.testing.assert_array_equal(m.user_biases_, ref.user_biases_)


def test_sigint_from_callback_keeps_epoch() -> None:
    def callback(model: Any, record: dict[str, float]) -> None:
        if record["epoch"] == 3:
            _interrupt()

    m = mfkit.SGD(epochs=6, **_FIXED)
    with pytest.warns(UserWarning, match="keeps the factors of epoch 3"):
        m.fit(small(), callback=callback)
    _assert_holds(m, 3)


def test_sigint_during_validation_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    real = mfkit.SGD._score_arrays
    calls = {"n": 0}

    def score(self: Any, *a: Any) -> tuple[float, float]:
        calls["n"] += 1
        if calls["n"] == 3:
            _interrupt()
        return real(self, *a)

    monkeypatch.setattr(mfkit.SGD, "_score_arrays", score)
    m = mfkit.SGD(epochs=6, **_FIXED)
    with pytest.warns(UserWarning, match="keeps the factors of epoch 2"):
        m.fit(small(), validation=small())
    _assert_holds(m, 2)


def test_sigint_during_state_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    # the snapshot of the last completed epoch is rewritten in place after each epoch; a
    # signal while it is rewritten must not leave a half-copied model: the live state is then
    # the epoch just completed, and the model keeps that one
    real = FactorState.copy_from
    calls = {"n": 0}

    def copy_from(self: FactorState, other: FactorState) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the snapshot after epoch 3
            np.copyto(self.P, other.P)  # half done: P copied, the rest not
            _interrupt()
        real(self, other)

    monkeypatch.setattr(FactorState, "copy_from", copy_from)
    m = mfkit.SGD(epochs=6, **_FIXED)
    with pytest.warns(UserWarning, match="keeps the factors of epoch 3"):
        m.fit(small())
    monkeypatch.undo()
    _assert_holds(m, 3)


# --------------------------------------------------------------- 11: atomic replacement
_WRITER = """
import sys, numpy as np, mfkit
path, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
R = mfkit.Ratings.from_triplets(np.arange(50) % 7, np.arange(50), np.full(50, float(seed)))
for _ in range(n):
    R.save(path)
"""


def test_cache_replacement_is_atomic_for_readers(tmp_path: Path) -> None:
    path = tmp_path / "c"
    Ratings.from_triplets(np.arange(50) % 7, np.arange(50), np.full(50, 1.0)).save(path)
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(s), "20"]) for s in (1, 2)
    ]
    loads = 0
    try:
        while any(w.poll() is None for w in writers) or loads < 50:
            R = Ratings.load(path)
            assert R.nnz == 50 and len(set(R.values.tolist())) == 1
            assert R.values[0] in (1.0, 2.0)
            loads += 1
    finally:
        for w in writers:
            w.wait(timeout=60)
    assert all(w.returncode == 0 for w in writers)
    assert loads >= 50
    names = os.listdir(path)
    assert sorted(n for n in names if not n.startswith("v-")) == [".lock", "meta.json"]
    assert len([n for n in names if n.startswith("v-")]) == 1
    assert sorted(os.listdir(tmp_path)) == ["c"]


def test_old_cache_layout_is_read_and_replaced(tmp_path: Path) -> None:
    """A version-1 cache (arrays beside meta.json) still loads, and saving over it leaves
    a version-2 cache with no version-1 arrays behind."""
    R = small()
    path = tmp_path / "c"
    R.save(path)
    meta = json.loads((path / "meta.json").read_text())
    for name in meta["arrays"]:
        os.replace(path / meta["data"] / f"{name}.npy", path / f"{name}.npy")
    os.rmdir(path / meta["data"])
    del meta["data"]
    meta["format_version"] = 1
    (path / "meta.json").write_text(json.dumps(meta))
    old = Ratings.load(path, verify=True)
    np.testing.assert_array_equal(old.values, R.values)
    small(1).save(path)
    assert not any(n.endswith(".npy") for n in os.listdir(path))
    np.testing.assert_array_equal(Ratings.load(path).values, small(1).values)


_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_leftovers_of_killed_saves_are_removed(tmp_path: Path) -> None:
    m = mfkit.SGD(factors=2, epochs=1, random_state=0).fit(small())
    dead = tmp_path / ".mfkit-model.npz.abc123.tmp"
    dead.write_bytes(b"partial")
    busy = tmp_path / ".mfkit-model.npz.busy99.tmp"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(busy)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        stale_cache = tmp_path / ".mfkit-cache-zzz"
        stale_cache.mkdir()
        (stale_cache / ".lock").write_bytes(b"")
        (stale_cache / "junk").write_bytes(b"x")
        stale_old = tmp_path / ".mfkit-old-yyy"
        stale_old.mkdir()
        m.save(tmp_path / "model.npz")
        assert not dead.exists()
        assert busy.exists()  # another writer still at work: left alone
        small().save(tmp_path / "c")
        assert not stale_cache.exists() and not stale_old.exists()
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert mfkit.load(tmp_path / "model.npz").n_items == m.n_items


_SLOW_SAVE = """
import sys, time, numpy as np, mfkit
m = mfkit.SGD(factors=2, epochs=1, random_state=0).fit(
    ([0, 1, 2], [0, 1, 2], [1.0, 2.0, 3.0]))
real = np.savez
def slow(fh, **kw):
    fh.write(b"PK partial")
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)
np.savez = slow
m.save(sys.argv[1])
"""


def test_sigkill_during_model_save_leaves_nothing_after_next_save(tmp_path: Path) -> None:
    target = tmp_path / "m.npz"
    p = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SAVE, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "writing"
    p.kill()
    p.wait()
    p.stdout.close()
    assert not target.exists()
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".tmp")]) == 1
    mfkit.SGD(factors=2, epochs=1, random_state=0).fit(small()).save(target)
    assert os.listdir(tmp_path) == ["m.npz"]


# --------------------------------------------------------------- 12: crafted model files
def _model_file(tmp_path: Path) -> Path:
    R = small()
    m = mfkit.SGD(factors=2, epochs=1, random_state=0).fit(R)
    p = tmp_path / "m.npz"
    m.save(p)
    return p


def _craft(
    path: Path, out: Path, arrays: dict[str, Any] | None = None, **meta_changes: Any
) -> Path:
    """Rewrite a model file with changed arrays or metadata and digests that match."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(data.pop("__meta__").tobytes().decode())
    for k, v in (arrays or {}).items():
        if v is None:
            data.pop(k)
        else:
            data[k] = np.asarray(v)
    meta.update(meta_changes)
    meta["digests"] = {k: digest(v) for k, v in data.items()}
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(out, __meta__=blob, **data)
    return out


def test_crafted_model_files_with_matching_digests_are_refused(tmp_path: Path) -> None:
    p = _model_file(tmp_path)
    m = mfkit.load(p)
    n_users, n_items = m.n_users, m.n_items
    uid = np.asarray(m.user_ids_)
    bad_cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        ({"user_ids": np.concatenate(([uid[1]], uid[1:]))}, {}, "user_ids must be distinct"),
        ({"user_ids": np.array([b"u%d" % k for k in range(n_users)])}, {}, "dtype"),
        ({"user_ids": np.full(n_users, np.nan)}, {}, "dtype float64"),
        ({"user_factors": np.full((n_users, 2), np.nan, np.float32)}, {}, "NaN or inf"),
        ({"item_biases": np.full(n_items, np.inf, np.float32)}, {}, "NaN or inf"),
        ({}, {"format_version": 0}, "format version 0"),
        ({}, {"format_version": True}, "format version True"),
        ({}, {"global_mean": float("nan")}, "not finite"),
        ({}, {"rating_range": [5.0, 1.0]}, "reversed"),
        ({}, {"history": [1, 2]}, "malformed"),
    ]
    for k, (arrays, meta, why) in enumerate(bad_cases):
        q = _craft(p, tmp_path / f"bad{k}.npz", arrays, **meta)
        with pytest.raises(ValueError, match=why):
            mfkit.load(q)
    with np.load(p) as z:
        indptr, indices = z["seen_indptr"], z["seen_indices"]
    row = int(np.flatnonzero(np.diff(indptr) >= 2)[0])
    shuffled = indices.copy()
    a = int(indptr[row])
    shuffled[a], shuffled[a + 1] = indices[a + 1], indices[a]
    q = _craft(p, tmp_path / "unsorted.npz", {"seen_indices": shuffled})
    with pytest.raises(ValueError, match="sorted and distinct"):
        mfkit.load(q)
    params = dict(json.loads(np.load(p)["__meta__"].tobytes())["params"], n_threads=2**40)
    q = _craft(p, tmp_path / "threads.npz", params=params)
    with pytest.raises(ValueError, match="n_threads"):
        mfkit.load(q)


def test_unsorted_seen_of_folded_users_is_refused() -> None:
    R = small()
    m = mfkit.ALS(factors=2, epochs=2, random_state=0).fit(R)
    f = m.fold_in(R.subset(np.arange(R.nnz) < 20))
    indptr, indices = f.seen_indptr, np.array(f.seen_indices)
    row = int(np.flatnonzero(np.diff(indptr) >= 2)[0])
    a = int(indptr[row])
    indices[a], indices[a + 1] = indices[a + 1], indices[a]
    bad = type(f)(f.user_factors, f.user_biases, f.user_ids, indptr, indices)
    with pytest.raises(ValueError, match="sorted distinct"):
        m.recommend(bad, n=3)
    items, _ = m.recommend(f, n=5)
    for r in range(len(f)):
        assert not set(items[r].tolist()) & set(
            m.item_ids_[f.seen_indices[indptr[r] : indptr[r + 1]]].tolist()
        )


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (lambda: np.save, "not an .npz archive"),
        (lambda: None, "missing"),
    ],
)
def test_model_loader_errors_are_clear(tmp_path: Path, content: Any, why: str) -> None:
    p = _model_file(tmp_path)
    if content() is np.save:
        q = tmp_path / "array.npz"
        with open(q, "wb") as fh:
            np.save(fh, np.arange(3))
    else:
        q = _craft(p, tmp_path / "nofactors.npz", {"item_factors": None})
    with pytest.raises(ValueError, match=why) as info:
        mfkit.load(q)
    assert str(q) in str(info.value)


def test_model_member_declaring_huge_shape_is_refused(tmp_path: Path) -> None:
    p = _model_file(tmp_path)
    q = tmp_path / "huge.npz"
    with zipfile.ZipFile(p) as zin, zipfile.ZipFile(q, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "user_biases.npy":
                header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
                header["shape"] = (2**40,)
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(buf, header)
                data = buf.getvalue() + b"\0" * 16
            zout.writestr(info.filename, data)
    with pytest.raises(ValueError, match="declares shape"):
        mfkit.load(q)


# --------------------------------------------------------------- 2: threads
def test_absurd_thread_counts_are_refused(tmp_path: Path) -> None:
    R = small()
    (tmp_path / "r.csv").write_text("1,2,3\n")
    for n in (2**31, 2**63, -(2**31), 5000):
        with pytest.raises(ValueError, match="not a usable thread count"):
            mfkit.SGD(factors=2, epochs=1, n_threads=n).fit(R)
    with pytest.raises(ValueError, match="not a usable thread count"):
        mfkit.io.load_delimited(tmp_path / "r.csv", n_threads=2**31)


def test_thread_count_is_capped_at_usable_cores() -> None:
    R = small()
    cores = mfkit._core.validation.usable_cores()
    m = mfkit.ALS(factors=2, epochs=1, n_threads=64, random_state=0).fit(R)
    assert m.n_threads_ == min(64, cores)
    one = mfkit.ALS(factors=2, epochs=1, n_threads=1, random_state=0).fit(R)
    np.testing.assert_array_equal(m.user_factors_, one.user_factors_)
    np.testing.assert_array_equal(
        m.predict(*R.to_triplets()[:2]), one.predict(*R.to_triplets()[:2])
    )


_NO_THREADS = """
import warnings, numpy as np, mfkit
R = mfkit.datasets.synthetic("ml-100k", random_state=0)
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    m = mfkit.ALS(factors=4, epochs=1, n_threads=64, random_state=0).fit(R)
    s = mfkit.SGD(factors=4, epochs=1, blocks=64, n_threads=64, random_state=0).fit(R)
print("fitted", m.n_threads_, s.n_threads_, [str(x.message) for x in w])
print("predict", np.isfinite(m.predict([1, 2], [1, 2])).all())
print("recommend", len(m.recommend(1, n=3)[0]))
"""


def test_process_that_cannot_start_threads_degrades(tmp_path: Path) -> None:
    """libgomp exits the process when it cannot create a thread; here every new thread
    needs a 4 GB stack under a 3 GB address-space limit."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_STACK, (4 << 30, 4 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="")
    out = subprocess.run(
        [sys.executable, "-c", _NO_THREADS],
        capture_output=True,
        text=True,
        preexec_fn=limits,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "fitted 1 1" in out.stdout
    if mfkit._core.validation.usable_cores() > 1:
        assert "could start only 1 of" in out.stdout
    assert "predict True" in out.stdout and "recommend 3" in out.stdout


# --------------------------------------------------------------- 5: ids beyond int64
@pytest.mark.parametrize(
    "users",
    [[1e30, 2e30], [1e19, 2e19], [-1e19, 0.0], np.array([9.3e18, 1.0])],
)
def test_float_ids_beyond_int64_are_refused(users: Any) -> None:
    with pytest.raises(ValueError, match="outside the int64 range"):
        Ratings.from_triplets(users, [0, 1], [1.0, 2.0])


def test_python_ints_beyond_int64_are_refused() -> None:
    for users in ([2**70, 1], [-(2**63) - 1, 0]):
        with pytest.raises(ValueError, match="outside the int64 range"):
            Ratings.from_triplets(users, [0, 1], [1.0, 2.0])
    edge = Ratings.from_triplets([2**63 - 1, -(2**63)], [0, 1], [1.0, 2.0])
    assert edge.user_ids.tolist() == [-(2**63), 2**63 - 1]


# --------------------------------------------------------------- 6: Netflix bad header
def test_skipped_netflix_header_never_reassigns_ratings(tmp_path: Path) -> None:
    p = tmp_path / "combined_data_1.txt"
    p.write_text("1:\n10,3,2005-01-01\n2x:\n11,4,2005-01-01\n3:\n12,5,2005-01-02\n")
    for mode in ("skip", "warn", "error"):
        with pytest.raises(RatingFileError, match="line 3: a malformed 'MovieID:' line"):
            mfkit.io.load_netflix(p, on_bad_line=mode)
    # a bad rating line is still skipped, and the movies stay right
    p.write_text("1:\n10,3,2005-01-01\n10,x,2005-01-01\n3:\n12,5,2005-01-02\n")
    R = mfkit.io.load_netflix(p, on_bad_line="skip")
    users, items, _ = R.to_triplets(original_ids=True)
    assert sorted(zip(users.tolist(), items.tolist(), strict=True)) == [(10, 1), (12, 3)]


# --------------------------------------------------------------- 9: DataFrames and lists
def test_mixed_id_kinds_are_refused() -> None:
    pd = pytest.importorskip("pandas")
    with pytest.raises(TypeError, match="mixes strings"):
        Ratings.from_triplets(["a", 1], [0, 1], [1.0, 2.0])
    df = pd.DataFrame({"user": [1, "1"], "item": [0, 1], "rating": [1.0, 2.0]})
    with pytest.raises(TypeError, match="column 'user' mixes strings"):
        Ratings.from_dataframe(df)
    ok = pd.DataFrame({"user": ["1", "2"], "item": [5, 6], "rating": [1.0, 2.0]})
    R = Ratings.from_dataframe(ok)
    assert R.user_ids.tolist() == ["1", "2"] and R.item_ids.tolist() == [5, 6]


def test_dataframe_ratings_and_timestamps_are_checked() -> None:
    pd = pytest.importorskip("pandas")
    base = {"user": [1, 2], "item": [0, 1]}
    for bad in ([True, False], ["1", "x"]):
        with pytest.raises(TypeError, match="column 'rating' must hold numbers"):
            Ratings.from_dataframe(pd.DataFrame(dict(base, rating=bad)))
    with pytest.raises(TypeError, match="ratings must be numbers"):
        Ratings.from_triplets([1, 2], [0, 1], [True, False])
    t = pd.to_datetime(["2020-01-01", None])
    with pytest.raises(ValueError, match="NaT"):
        Ratings.from_dataframe(pd.DataFrame(dict(base, rating=[1.0, 2.0], t=t)), timestamp_col="t")
    nullable = pd.Series([4, 5], dtype="Int64")
    R = Ratings.from_dataframe(pd.DataFrame(dict(base, rating=nullable)))
    assert R.values.tolist() == [4.0, 5.0]


def test_dense_missing_marker() -> None:
    A = np.array([[1.0, np.nan], [np.nan, 2.0]], dtype=np.float32)
    for marker in (np.nan, np.float32("nan"), np.float64("nan")):
        assert Ratings.from_dense(A, missing=marker).nnz == 2
    for bad in ("x", True, [0]):
        with pytest.raises(TypeError, match="missing must be None or a number"):
            Ratings.from_dense(A, missing=bad)


# --------------------------------------------------------------- 3: FIFOs and pipes
def _u_data(n: int = 1500) -> bytes:
    lines = (
        f"{k % 300 + 1}\t{k // 300 * 7 + k % 13 + 1}\t{k % 5 + 1}\t{8800 + k}\n" for k in range(n)
    )
    return "".join(lines).encode()


def test_pipe_on_stdin_loses_nothing() -> None:
    """Sniffing read ahead and the loader opened /dev/stdin again: 1,244 of 1,500 ratings."""
    code = "import mfkit\nprint(mfkit.load_ratings('/dev/stdin').nnz)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], input=_u_data(), capture_output=True, timeout=300
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.split() == [b"1500"]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("auto", [False, True])
def test_fifo_with_a_writer_is_read_once(tmp_path: Path, gz: bool, auto: bool) -> None:
    fifo = tmp_path / "ratings.data"
    os.mkfifo(fifo)
    data = _u_data(4000)

    def write() -> None:
        with open(fifo, "wb") as fh:
            fh.write(gzip.compress(data) if gz else data)

    t = threading.Thread(target=write)
    t.start()
    try:
        if auto:
            R = mfkit.load_ratings(fifo, format="auto")
        else:
            R = mfkit.io.load_movielens_100k(fifo)
    finally:
        t.join(timeout=30)
    ref = tmp_path / "copy.data"
    ref.write_bytes(data)
    expect = mfkit.io.load_movielens_100k(ref)
    assert R.nnz == expect.nnz == 4000
    np.testing.assert_array_equal(R.values, expect.values)
    np.testing.assert_array_equal(R.user_ids, expect.user_ids)


def test_fifo_without_a_writer_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    monkeypatch.setattr(mfkit.io._sources, "FIFO_TIMEOUT", 0.3)
    with pytest.raises(TimeoutError, match="no data arrived on this FIFO"):
        mfkit.load_ratings(fifo)


# --------------------------------------------------------------- 13: clear errors
def _plain(n: int = 1500) -> bytes:
    return _u_data(n)


_DAMAGE = {
    "trunc.gz": lambda d: gzip.compress(d)[:-200],
    "garbage.gz": lambda d: gzip.compress(d) + b"trailing garbage",
    "trunc.bz2": lambda d: __import__("bz2").compress(d)[:-100],
    "trunc.xz": lambda d: __import__("lzma").compress(d)[:-100],
}


@pytest.mark.parametrize("name", sorted(_DAMAGE))
def test_damaged_compressed_input_names_the_file(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(_DAMAGE[name](_plain()))
    for load in (mfkit.io.load_movielens_100k, mfkit.load_ratings):
        with pytest.raises(RatingFileError, match="check or fetch the file again") as info:
            load(p)
        assert str(p) in str(info.value)


def test_damaged_zip_members_name_the_file(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("u.data", _plain())
    blob = bytearray(buf.getvalue())
    p = tmp_path / "half.zip"
    p.write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(RatingFileError, match="half.zip"):
        mfkit.io.load_movielens_100k(p)
    # a flipped byte inside the deflated member
    with zipfile.ZipFile(io.BytesIO(bytes(blob))) as z:
        offset = z.infolist()[0].header_offset + 30 + len("u.data") + 40
    blob[offset] ^= 0xFF
    p = tmp_path / "flip.zip"
    p.write_bytes(bytes(blob))
    with pytest.raises(RatingFileError, match=r"flip.zip\[u.data\]"):
        mfkit.io.load_movielens_100k(p)


def test_utf8_bom_is_accepted_in_every_text_format(tmp_path: Path) -> None:
    p = tmp_path / "u.data"
    p.write_bytes(b"\xef\xbb\xbf" + _plain())
    q = tmp_path / "plain.data"
    q.write_bytes(_plain())
    np.testing.assert_array_equal(
        mfkit.io.load_movielens_100k(p).values, mfkit.io.load_movielens_100k(q).values
    )
    n = tmp_path / "combined_data_1.txt"
    n.write_bytes(b"\xef\xbb\xbf1:\n10,3,2005-01-01\n")
    assert mfkit.io.load_netflix(n).nnz == 1
    d = tmp_path / "r.dat"
    d.write_bytes(b"\xef\xbb\xbf1::2::3::4\n")
    assert mfkit.io.load_movielens_dat(d).nnz == 1


def test_sniffing_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_bytes(b"a\nb\nc\n")
    with pytest.raises(RatingFileError, match="x.txt: cannot tell the delimiter"):
        mfkit.io.load_delimited(p)
    s = tmp_path / "s.csv"
    s.write_bytes(b"u\xff1,i1,3\nu2,i2,4\n")
    with pytest.raises(RatingFileError, match="s.csv: ids are not valid UTF-8"):
        mfkit.io.load_delimited(s)


def test_header_error_gives_its_real_line(tmp_path: Path) -> None:
    p = tmp_path / "ratings.csv"
    p.write_bytes(b"\n\nuserId,movieId,score,timestamp\n1,2,3,4\n")
    with pytest.raises(RatingFileError, match=r"ratings.csv, line 3: the header"):
        mfkit.io.load_movielens_csv(p)


_FULL_DISK = """
import resource, sys, mfkit, numpy as np
R = mfkit.datasets.synthetic("ml-100k", random_state=0)
m = mfkit.SGD(factors=64, epochs=1, random_state=0).fit(R)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
for what, save in (("model", lambda: m.save(sys.argv[1] + "/m.npz")),
                   ("cache", lambda: R.save(sys.argv[1] + "/c"))):
    try:
        save()
        print(what, "saved?!")
    except OSError as e:
        print(what, e)
"""


def test_full_disk_names_the_path_and_leaves_nothing(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("model [Errno 27] cannot write") and "m.npz" in lines[0]
    assert lines[1].startswith("cache [Errno 27] cannot write") and "/c'" in lines[1]
    assert all("free space or raise the limit" in ln for ln in lines)
    assert os.listdir(tmp_path) == []


def test_id_beyond_int64_in_a_file_is_named_as_such(tmp_path: Path) -> None:
    p = tmp_path / "u.data"
    p.write_bytes(b"1\t1\t3\t4\n9223372036854775808\t1\t3\t4\n")
    with pytest.raises(RatingFileError, match="line 2: the user id 9223372036854775808 is outside"):
        mfkit.io.load_movielens_100k(p)
    p.write_bytes(b"1\t1\t3\t4\n1\tx1\t3\t4\n")
    with pytest.raises(RatingFileError, match="line 2: the item id is not an integer"):
        mfkit.io.load_movielens_100k(p)


def test_sigint_before_the_first_epoch_leaves_the_model_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    R = small()
    real = mfkit.SGD._trainer

    def interrupted(self: Any, *a: Any) -> Any:
        raise KeyboardInterrupt

    m = mfkit.SGD(factors=3, epochs=2, n_threads=1, random_state=0)
    monkeypatch.setattr(mfkit.SGD, "_trainer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        m.fit(R)
    with pytest.raises(mfkit.NotFittedError):
        m.predict([0], [0])
    monkeypatch.setattr(mfkit.SGD, "_trainer", real)
    m.fit(R)
    P = m.user_factors_.copy()
    monkeypatch.setattr(mfkit.SGD, "_trainer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        m.fit(small(1))
    np.testing.assert_array_equal(m.user_factors_, P)
    assert m.stop_reason_ == "epochs"


def test_long_first_line_after_a_header_in_compressed_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a regression test: when the first data line of a compressed file did not fit in one
    # block, the buffer grew and the header was parsed again as data ("line 2: the user id
    # is not an integer ... 'userId,movieId,...'"); blocks are made small here instead of
    # writing a 64 MiB line
    from mfkit.io import _engine

    monkeypatch.setattr(_engine, "_BLOCK", 64)
    path = tmp_path / "r.csv.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"userId,movieId,rating,timestamp\n")
        fh.write(b"1,2,3.5," + b"1" * 200 + b"\n")  # a timestamp far too long: a bad line
        fh.write(b"2,3,4.0,100\n")
    with pytest.raises(mfkit.io.RatingFileError, match=r"line 2: the timestamp") as exc:
        mfkit.load_ratings(path)
    assert "userId" not in str(exc.value)
    info = mfkit.io.LoadInfo()
    R = mfkit.load_ratings(path, on_bad_line="skip", info=info)
    assert R.nnz == 1 and info.skipped == 1 and info.headers == 1
    assert [b[1] for b in info.bad_lines] == [2]


# --------------------------------------------------------------------------- the epoch check
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 4), (1, 1), (3, 5), (257, 64), (70_001, 3)])
def test_scan_abs_max_matches_numpy_for_any_thread_count(dtype: Any, shape: Any) -> None:
    # the per-epoch divergence check: the largest |entry| and finiteness in one pass
    from mfkit._core import _common

    rng = np.random.default_rng(shape[0])
    a = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 30, size=shape)).astype(dtype)
    want = float(np.abs(a).max()) if a.size else 0.0
    for nt in (1, 2, 3):
        assert _common.scan_abs_max(a, nt) == (True, want)
    if a.size:
        for bad in (np.nan, np.inf, -np.inf):
            for pos in {0, a.size // 2, a.size - 1}:
                b = a.copy()
                b.flat[pos] = bad
                for nt in (1, 2, 3):
                    assert _common.scan_abs_max(b, nt)[0] is False
        # the largest finite value of the dtype is finite
        b = a.copy()
        b.flat[a.size - 1] = -np.finfo(dtype).max
        assert _common.scan_abs_max(b, 2) == (True, float(np.finfo(dtype).max))
    with pytest.raises(ValueError, match="n_threads"):
        _common.scan_abs_max(np.ones((2, 2), dtype=dtype), 0)
