"""BayesianMF on a Dask cluster (mfkit.distributed): the same samples, byte for byte, as one
machine for any number of workers, shards and partitions, after a worker is killed, with
validation, callbacks and Ctrl-C as on one machine and errors named on the client.

The clusters are real LocalClusters on loopback (worker processes with nannies, and
in-process workers); each fit is bounded by ``timeout=``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mfkit
from tests.dask_clusters import FIT_TIMEOUT, cluster_fixture, rating_frame

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

PARAMS = dict(factors=4, epochs=5, burn_in=2, random_state=11, n_threads=2)
SAMPLES = (
    "user_factors_",
    "item_factors_",
    "user_biases_",
    "item_biases_",
    "user_bias_samples_",
    "item_bias_samples_",
    "noise_precision_samples_",
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return rating_frame(21, n=40_000)


two_processes = cluster_fixture(2, processes=True)
three_workers = cluster_fixture(3, processes=False)


def assert_same_samples(a: mfkit.BayesianMF, b: mfkit.BayesianMF) -> None:
    for name in SAMPLES:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name
    for name in ("user_ids_", "item_ids_"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    for name in (
        "noise_precision_", "n_samples_", "burn_in_", "fold_in_regularization_", "isa_",
        "global_mean_", "rating_range_", "stop_reason_", "n_threads_",
    ):  # fmt: skip
        assert getattr(a, name) == getattr(b, name), name
    assert a.history_.keys() == b.history_.keys()
    for key in a.history_:
        if key != "seconds":
            # NaN (no validation) compares by its bits
            assert np.array(a.history_[key]).tobytes() == np.array(b.history_[key]).tobytes()


def single(df: pd.DataFrame, val: pd.DataFrame | None = None, **params) -> mfkit.BayesianMF:
    return mfkit.BayesianMF(**params).fit(df, val)


@pytest.mark.parametrize(
    "cluster,partitions,shards,biases,string_items",
    [("two_processes", 4, None, True, True), ("two_processes", 3, 3, False, False),
     ("three_workers", 5, None, True, False), ("three_workers", 2, 7, False, True)],
)  # fmt: skip
def test_samples_are_byte_identical_to_one_machine(
    cluster, partitions, shards, biases, string_items, request
):
    client = request.getfixturevalue(cluster)
    df = rating_frame(22, n=30_000, string_items=string_items)
    p = dict(PARAMS, biases=biases)
    ref = single(df, **p)
    m = mfkit.distributed.fit(
        mfkit.BayesianMF(**p), dd.from_pandas(df, npartitions=partitions), client=client,
        shards=shards, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert_same_samples(m, ref)
    assert m.n_samples_ == 3
    # an ordinary fitted model: seen items, predictions with their spread, top-N
    assert np.array_equal(m._fitted.seen[0], ref._fitted.seen[0])
    assert np.array_equal(m._fitted.seen[1], ref._fitted.seen[1])
    pairs = df.iloc[::97]
    mean, std = m.predict(pairs.user, pairs.item, return_std=True)
    ref_mean, ref_std = ref.predict(pairs.user, pairs.item, return_std=True)
    assert mean.tobytes() == ref_mean.tobytes() and std.tobytes() == ref_std.tobytes()
    ids, scores = m.recommend(ref.user_ids_[::50], n=5)
    ref_ids, ref_scores = ref.recommend(ref.user_ids_[::50], n=5)
    assert np.array_equal(ids, ref_ids) and scores.tobytes() == ref_scores.tobytes()


def test_model_fit_with_validation_and_a_callback_as_on_one_machine(frame, three_workers):
    train, val = frame.iloc[:34_000], frame.iloc[34_000:]
    seen: list[tuple[float, bytes]] = []

    def stop_after_four(model, record):
        # the model holds the current sample while it runs, as on one machine
        seen.append((record["train_rmse"], model.user_factors_.tobytes()))
        return record["epoch"] < 4

    ref = mfkit.BayesianMF(**PARAMS).fit(train, val, callback=stop_after_four)
    ref_seen, seen[:] = list(seen), []
    with three_workers.as_current():
        # routed to the cluster by the model's own fit; validation as a Dask DataFrame
        m = mfkit.BayesianMF(**PARAMS).fit(
            dd.from_pandas(train, npartitions=3), dd.from_pandas(val, npartitions=2),
            callback=stop_after_four,
        )  # fmt: skip
    assert_same_samples(m, ref)
    assert m.stop_reason_ == "callback" and len(m.history_["epoch"]) == 4
    assert np.all(np.isfinite(m.history_["val_rmse"]))
    assert seen == ref_seen
    # validation as a pandas DataFrame
    m2 = mfkit.distributed.fit(
        mfkit.BayesianMF(**PARAMS), dd.from_pandas(train, npartitions=2), val,
        callback=stop_after_four, client=three_workers, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert_same_samples(m2, ref)


def test_ctrl_c_keeps_the_samples_kept_so_far_as_on_one_machine(frame, three_workers):
    def interrupt_in_sweep_4(model, record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref = mfkit.BayesianMF(**PARAMS).fit(frame, callback=interrupt_in_sweep_4)
        m = mfkit.distributed.fit(
            mfkit.BayesianMF(**PARAMS), dd.from_pandas(frame, npartitions=3),
            callback=interrupt_in_sweep_4, client=three_workers, timeout=FIT_TIMEOUT,
        )  # fmt: skip
    messages = [str(w.message) for w in caught if "interrupted" in str(w.message)]
    assert len(messages) == 2 and messages[0] == messages[1]
    assert m.stop_reason_ == "interrupted" and m.n_samples_ == 1
    assert_same_samples(m, ref)


def test_a_killed_worker_process_does_not_change_the_samples(frame, two_processes):
    client = two_processes
    client.wait_for_workers(2, timeout=30)
    ref = single(frame, **PARAMS)
    pids = sorted(client.run(os.getpid).values())
    assert len(pids) == 2
    killed: list[int] = []

    def kill_during_next_sweep(model, record):
        if record["epoch"] == 2:
            # SIGKILL one worker process a moment into sweep 3 (its nanny restarts it):
            # the shards it held and its running row draws are lost
            def kill() -> None:
                time.sleep(0.02)
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

            threading.Thread(target=kill, daemon=True).start()

    m = mfkit.distributed.fit(
        mfkit.BayesianMF(**PARAMS), dd.from_pandas(frame, npartitions=4), client=client,
        callback=kill_during_next_sweep, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert killed == pids[:1]
    assert_same_samples(m, ref)
    client.wait_for_workers(2, timeout=30)
    assert pids[0] not in client.run(os.getpid).values()  # it was really replaced


def test_rating_files_read_by_the_workers(tmp_path: Path, three_workers):
    df = rating_frame(23, n=12_000, string_items=False)
    paths = []
    for j, part in enumerate([df.iloc[:4000], df.iloc[4000:9000], df.iloc[9000:]]):
        path = tmp_path / f"ratings-{j}.csv"
        part.to_csv(path, index=False, header=False)
        paths.append(path)
    ddf = mfkit.distributed.read_ratings(paths, format="delimited", delimiter=",")
    with three_workers.as_current():
        m = mfkit.BayesianMF(**PARAMS).fit(ddf)
    ref = single(df, **PARAMS)
    assert_same_samples(m, ref)
    # without gathering what each user rated: the same samples, nothing to exclude
    m = mfkit.distributed.fit(
        mfkit.BayesianMF(**PARAMS), ddf, client=three_workers, seen=False, timeout=FIT_TIMEOUT
    )
    assert m._fitted.seen is None
    assert_same_samples(m, ref)


def test_bad_input_is_named(three_workers):
    df = rating_frame(24, n=5_000)
    df.loc[3700, "rating"] = np.nan
    ddf = dd.from_pandas(df, npartitions=4)
    part = int(np.searchsorted(ddf.divisions, 3700, side="right") - 1)
    with pytest.raises(ValueError, match=rf"partition {part}: rating nan at row \d+ \(user"):
        mfkit.distributed.fit(mfkit.BayesianMF(**PARAMS), ddf, client=three_workers)
    good = dd.from_pandas(df.dropna(), npartitions=2)
    with pytest.raises(ValueError, match=r"keep_on_cluster=True is not available for Bayes"):
        mfkit.distributed.fit(
            mfkit.BayesianMF(**PARAMS), good, client=three_workers, keep_on_cluster=True
        )
    with pytest.raises(ValueError, match="does not take init"):
        mfkit.distributed.fit(
            mfkit.BayesianMF(**PARAMS), good, client=three_workers, init=(np.zeros(1),) * 2
        )
    with pytest.raises(ValueError, match="burn_in must be < epochs"):
        mfkit.distributed.fit(mfkit.BayesianMF(epochs=2, burn_in=2), good, client=three_workers)
    with pytest.raises(ValueError, match=r"no column\(s\) \['rating'\]"):
        mfkit.distributed.fit(
            mfkit.BayesianMF(**PARAMS), good.rename(columns={"rating": "stars"}),
            client=three_workers,
        )  # fmt: skip
    with pytest.raises(ValueError, match="shards must be"):
        mfkit.distributed.fit(mfkit.BayesianMF(**PARAMS), good, client=three_workers, shards=0)


def test_a_shard_names_the_global_row_that_failed_as_one_machine_does():
    # a prior precision that is not positive definite: every rated row fails
    rng = np.random.default_rng(25)
    n_rows, n_cols, k = 30, 12, 3
    mask = rng.random((n_rows, n_cols)) < 0.4
    mask[:12] = False  # the first rows have no ratings (they are set to zero, not solved)
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int64)
    indices = np.nonzero(mask)[1].astype(np.int32)
    values = rng.integers(1, 6, len(indices)).astype(np.float32)
    Y = rng.standard_normal((n_cols, k)).astype(np.float32)
    draw = dict(
        mu=0.0, prior_mean=np.zeros(k), prior_precision=-np.eye(k), noise_precision=1e-6,
        seed=1, sweep=1, side=0,
    )  # fmt: skip
    first = int(np.flatnonzero(mask.any(axis=1))[0])
    with pytest.raises(np.linalg.LinAlgError) as whole:
        mfkit.models.bayes.sample_rows(
            indptr, indices, values, Y, np.zeros((n_rows, k), np.float32), **draw
        )
    assert f"row {first} " in str(whole.value)
    a = 10  # a shard of rows 10..29
    shard = (indptr[a:] - indptr[a], indices[indptr[a] :], values[indptr[a] :])
    options = dict(draw, want_sse=False, n_threads=1, isa=mfkit.get_isa())
    *_, error = mfkit.distributed._tasks.sample_shard(shard, (Y, None), a, options)
    assert error == str(whole.value)


@pytest.mark.parametrize(
    "scale,reason", [(2e37, "a residual became NaN or inf"), (5e37, "not positive definite")]
)
def test_divergence_is_reported_and_kept_as_on_one_machine(scale, reason, three_workers):
    # ratings near float32's limit: a residual overflows, or an item's precision is not
    # positive definite in float32
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(0, 200, 3000), "item": rng.integers(0, 50, 3000)})
    df = df.drop_duplicates(["user", "item"]).reset_index(drop=True)
    df["rating"] = rng.standard_normal(len(df)) * scale
    p = dict(factors=3, epochs=4, random_state=0)
    with pytest.raises(mfkit.DivergenceError) as one:
        ref = mfkit.BayesianMF(**p)
        ref.fit(df)
    with pytest.raises(mfkit.DivergenceError) as cluster:
        m = mfkit.BayesianMF(**p)
        mfkit.distributed.fit(
            m, dd.from_pandas(df, npartitions=3), client=three_workers, timeout=FIT_TIMEOUT
        )
    assert reason in str(one.value)
    assert str(cluster.value) == str(one.value)
    assert m.stop_reason_ == "diverged"
    assert_same_samples(m, ref)


def test_workers_draw_on_the_clients_kernel_path(two_processes):
    # the worker processes would pick their own (best) path; the fit passes the client's
    df = rating_frame(26, n=8_000)
    for isa in mfkit.available_isas():
        with mfkit.use_isa(isa):
            ref = single(df, **PARAMS)
            m = mfkit.distributed.fit(
                mfkit.BayesianMF(**PARAMS), dd.from_pandas(df, npartitions=2),
                client=two_processes, timeout=FIT_TIMEOUT,
            )  # fmt: skip
        assert m.isa_ == ref.isa_ == isa
        assert_same_samples(m, ref)
