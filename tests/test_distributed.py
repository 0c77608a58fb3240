"""ALS on a Dask cluster (mfkit.distributed): the same bytes as one machine, for any number
of workers, shards and partitions, after a worker is killed, with errors named on the client.

The clusters are real LocalClusters on loopback: in-process workers (threads) and worker
processes with nannies; each test is bounded by ``timeout=`` on the fit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mfkit
from mfkit.exceptions import RatingFileError
from tests.dask_clusters import FIT_TIMEOUT, cluster_fixture, make_client, rating_frame

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

two_processes = cluster_fixture(2, processes=True)
one_thread_worker = cluster_fixture(1, processes=False)
three_thread_workers = cluster_fixture(3, processes=False)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return rating_frame(0)


def assert_same_fit(a: mfkit.ALS, b: mfkit.ALS) -> None:
    for name in ("user_factors_", "item_factors_", "user_biases_", "item_biases_"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name
    assert np.array_equal(a.user_ids_, b.user_ids_) and a.user_ids_.dtype == b.user_ids_.dtype
    assert np.array_equal(a.item_ids_, b.item_ids_) and a.item_ids_.dtype == b.item_ids_.dtype
    assert a.global_mean_ == b.global_mean_
    assert a.rating_range_ == b.rating_range_
    assert a.history_["train_rmse"] == b.history_["train_rmse"]
    assert a.stop_reason_ == b.stop_reason_
    assert a.regularization_ == b.regularization_
    assert a.isa_ == b.isa_


def single(df: pd.DataFrame, **params) -> mfkit.ALS:
    return mfkit.ALS(**params).fit(df)


PARAMS = dict(factors=8, epochs=2, regularization=0.05, random_state=7, n_threads=2)


@pytest.mark.parametrize(
    "cluster,partitions,shards",
    [("one_thread_worker", 3, None), ("two_processes", 4, None), ("two_processes", 7, 5),
     ("three_thread_workers", 5, None), ("three_thread_workers", 2, 11)],
)  # fmt: skip
def test_fit_is_byte_identical_to_one_machine(frame, cluster, partitions, shards, request):
    client = request.getfixturevalue(cluster)
    ref = single(frame, **PARAMS)
    ddf = dd.from_pandas(frame, npartitions=partitions)
    m = mfkit.distributed.fit(
        mfkit.ALS(**PARAMS), ddf, client=client, shards=shards, timeout=FIT_TIMEOUT
    )
    assert_same_fit(m, ref)
    # the fitted model is an ordinary one: seen items, prediction, top-N
    assert np.array_equal(m._fitted.seen[0], ref._fitted.seen[0])
    assert np.array_equal(m._fitted.seen[1], ref._fitted.seen[1])
    users = ref.user_ids_[::97]
    ids, scores = m.recommend(users, n=5)
    ref_ids, ref_scores = ref.recommend(users, n=5)
    assert np.array_equal(ids, ref_ids) and scores.tobytes() == ref_scores.tobytes()
    pairs = frame.iloc[::501]
    assert np.array_equal(m.predict(pairs.user, pairs.item), ref.predict(pairs.user, pairs.item))


def test_model_fit_uses_the_current_client(frame, three_thread_workers):
    ref = single(frame, **PARAMS)
    ddf = dd.from_pandas(frame, npartitions=3)
    with three_thread_workers.as_current():
        m = mfkit.ALS(**PARAMS).fit(ddf)
    assert_same_fit(m, ref)


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="cg", cg_steps=2),
        dict(biases=False, weighted=False, dtype="float64"),
        dict(regularization=0.1, bias_regularization=0.01, init_std=0.3),
    ],
)
def test_solver_and_options_match_one_machine(params, three_thread_workers):
    df = rating_frame(3, n=40_000, string_items=False)
    p = dict(PARAMS, epochs=3, **params)
    ref = single(df, **p)
    m = mfkit.distributed.fit(
        mfkit.ALS(**p), dd.from_pandas(df, npartitions=4), client=three_thread_workers,
        timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert_same_fit(m, ref)


def test_prior_and_validation_match_one_machine(three_thread_workers):
    df = rating_frame(4, n=40_000)
    train, val = df.iloc[:35_000], df.iloc[35_000:]
    ref0 = single(train, **PARAMS)
    P0, Q0 = ref0.user_factors_ * 2, ref0.item_factors_ * 2
    p = dict(PARAMS, epochs=4, prior_regularization=0.2, patience=1, tol=0.5)
    ref = mfkit.ALS(**p).fit(train, val, init=(P0, Q0))
    m = mfkit.distributed.fit(
        mfkit.ALS(**p), dd.from_pandas(train, npartitions=3), dd.from_pandas(val, 2),
        init=(P0, Q0), client=three_thread_workers, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert_same_fit(m, ref)
    assert m.history_["val_rmse"] == ref.history_["val_rmse"]
    assert m.best_epoch_ == ref.best_epoch_ and m.stop_reason_ == "early_stopping"


def test_a_killed_worker_process_does_not_change_the_result(frame, two_processes):
    client = two_processes
    p = dict(PARAMS, epochs=4)
    ref = single(frame, **p)
    ddf = dd.from_pandas(frame, npartitions=4)
    pids = sorted(client.run(os.getpid).values())
    assert len(pids) == 2
    killed: list[int] = []

    def kill_during_next_epoch(model, record):
        if record["epoch"] == 1:
            # SIGKILL one worker process a moment into epoch 2 (its nanny restarts it):
            # the shards it held and its running half-step tasks are lost
            def kill() -> None:
                time.sleep(0.05)
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

            threading.Thread(target=kill, daemon=True).start()

    m = mfkit.distributed.fit(
        mfkit.ALS(**p), ddf, client=client, callback=kill_during_next_epoch,
        timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert killed == pids[:1]
    assert_same_fit(m, ref)
    client.wait_for_workers(2, timeout=30)
    assert pids[0] not in client.run(os.getpid).values()  # it was really replaced


def test_rating_files_read_by_the_workers(tmp_path: Path, three_thread_workers):
    df = rating_frame(5, n=30_000, string_items=False)
    paths = []
    for j, part in enumerate([df.iloc[:9000], df.iloc[9000:21000], df.iloc[21000:]]):
        path = tmp_path / f"ratings-{j}.csv"
        part.to_csv(path, index=False, header=False)
        paths.append(path)
    ddf = mfkit.distributed.read_ratings(paths, format="delimited", delimiter=",")
    p = dict(PARAMS, epochs=2)
    m = mfkit.distributed.fit(mfkit.ALS(**p), ddf, client=three_thread_workers, timeout=FIT_TIMEOUT)
    assert_same_fit(m, single(df, **p))

    # one malformed line in the second file: the loader's error, with file and line
    lines = paths[1].read_text().splitlines()
    lines[41] = "12,oops"
    paths[1].write_text("\n".join(lines) + "\n")
    ddf = mfkit.distributed.read_ratings(paths, format="delimited", delimiter=",")
    with pytest.raises(RatingFileError, match=r"ratings-1\.csv.*line 42"):
        mfkit.distributed.fit(mfkit.ALS(**p), ddf, client=three_thread_workers, timeout=FIT_TIMEOUT)


def test_bad_ratings_are_reported_with_their_partition(three_thread_workers):
    df = rating_frame(6, n=5_000)
    df.loc[3700, "rating"] = np.nan
    ddf = dd.from_pandas(df, npartitions=4)
    part = int(np.searchsorted(ddf.divisions, 3700, side="right") - 1)
    with pytest.raises(ValueError, match=rf"partition {part}: rating nan at row \d+ \(user"):
        mfkit.distributed.fit(mfkit.ALS(**PARAMS), ddf, client=three_thread_workers)
    dup = rating_frame(6, n=5_000)
    dup = pd.concat([dup, dup.iloc[[10]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"user shard \d+: duplicate rating for user"):
        mfkit.distributed.fit(
            mfkit.ALS(**PARAMS), dd.from_pandas(dup, npartitions=3), client=three_thread_workers
        )
    with pytest.raises(ValueError, match=r"no column\(s\) \['rating'\]"):
        mfkit.distributed.fit(
            mfkit.ALS(**PARAMS),
            dd.from_pandas(df.rename(columns={"rating": "stars"}), npartitions=2),
            client=three_thread_workers,
        )


def test_wrong_model_client_or_data_is_refused(frame, three_thread_workers):
    ddf = dd.from_pandas(frame.iloc[:100], npartitions=1)
    with pytest.raises(TypeError, match="SGD cannot be fitted on a Dask cluster"):
        mfkit.distributed.fit(mfkit.SGD(), ddf, client=three_thread_workers)
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        mfkit.distributed.fit(mfkit.ALS(regularization=0.05), ddf, client="tcp://127.0.0.1:1")
    with pytest.raises(TypeError, match="data must be a dask.dataframe.DataFrame"):
        mfkit.distributed.fit(mfkit.ALS(regularization=0.05), frame, client=three_thread_workers)
    with pytest.raises(ValueError, match="shards must be"):
        mfkit.distributed.fit(
            mfkit.ALS(regularization=0.05), ddf, client=three_thread_workers, shards=0
        )


def test_no_worker_left_fails_after_the_timeout(frame):
    cluster, client = make_client(0, False)
    try:
        ddf = dd.from_pandas(frame.iloc[:1000], npartitions=2)
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError, match=r"within 0\.5 s \(0 workers connected\)"):
            mfkit.distributed.fit(mfkit.ALS(regularization=0.05), ddf, client=client, timeout=0.5)
        assert time.perf_counter() - t0 < 10
    finally:
        client.close()
        cluster.close()


def test_balanced_bounds_cut_by_rating_count():
    counts = np.array([5, 1, 1, 1, 1, 1, 10, 0, 2])
    edges = mfkit.distributed.balanced_bounds(counts, 3)
    assert edges[0] == 0 and edges[-1] == len(counts) and np.all(np.diff(edges) > 0)
    sums = [counts[a:b].sum() for a, b in zip(edges[:-1], edges[1:], strict=True)]
    assert sum(sums) == counts.sum() and max(sums) <= 10 + 2
    assert np.array_equal(mfkit.distributed.balanced_bounds(np.ones(2), 5), [0, 1, 2])


def test_import_mfkit_imports_no_dask():
    code = (
        "import sys, mfkit, mfkit.distributed\n"
        "print(sorted(m for m in ('dask', 'distributed', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------- regularization='auto' on the cluster
AUTO = dict(factors=8, epochs=2, random_state=7, n_threads=2)


def assert_same_choice(a: mfkit.ALS, b: mfkit.ALS) -> None:
    assert a.regularization_ == b.regularization_
    assert a.regularization_scores_ == b.regularization_scores_
    assert_same_fit(a, b)


@pytest.mark.parametrize(
    "cluster,partitions,shards",
    [("two_processes", 3, None), ("two_processes", 4, 3), ("three_thread_workers", 2, None)],
)
def test_auto_regularization_matches_one_machine(cluster, partitions, shards, request):
    client = request.getfixturevalue(cluster)
    df = rating_frame(12, n=30_000)
    ref = single(df, **AUTO)
    assert ref.regularization_scores_  # the grid was walked
    m = mfkit.distributed.fit(
        mfkit.ALS(**AUTO), dd.from_pandas(df, npartitions=partitions), client=client,
        shards=shards, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert_same_choice(m, ref)


def test_auto_regularization_with_a_generator_that_cannot_advance(three_thread_workers):
    # MT19937 has no advance(): the client draws the mask slices and sends them
    df = rating_frame(13, n=12_000, string_items=False)
    p = dict(AUTO, weighted=False)  # the grid scaled by the mean ratings per row
    ref = single(df, **dict(p, random_state=np.random.Generator(np.random.MT19937(5))))
    m = mfkit.distributed.fit(
        mfkit.ALS(**dict(p, random_state=np.random.Generator(np.random.MT19937(5)))),
        dd.from_pandas(df, npartitions=3), client=three_thread_workers, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert ref.regularization_scores_
    assert_same_choice(m, ref)


def test_auto_regularization_with_too_few_ratings(three_thread_workers):
    df = pd.DataFrame({"user": [0, 1, 2], "item": [0, 1, 0], "rating": [1.0, 2.0, 3.0]})
    ddf = dd.from_pandas(df, npartitions=2)

    def held(seed: int) -> int:  # the rule's mask, drawn here with NumPy
        return int(np.sum(np.random.default_rng(seed).spawn(1)[0].random(3) < 0.1))

    # one seed holding out nothing (the starting value), one holding out a rating
    seeds = [next(s for s in range(100) if held(s) == 0), next(s for s in range(100) if held(s))]
    for seed in seeds:
        p = dict(AUTO, random_state=seed)
        ref = single(df, **p)
        m = mfkit.distributed.fit(mfkit.ALS(**p), ddf, client=three_thread_workers)
        assert (ref.regularization_scores_ == []) == (seed == seeds[0])
        assert_same_choice(m, ref)


@pytest.mark.parametrize("kind", [np.random.PCG64, np.random.PCG64DXSM])
def test_advance_skips_one_step_per_double(kind):
    from mfkit.distributed._heldout import ADVANCING, held_slice

    assert kind in ADVANCING
    sel = np.random.Generator(kind(2024)).spawn(1)[0]
    state = sel.bit_generator.state
    whole = sel.random(50_001)
    for a, b in [(0, 0), (0, 17), (3, 4), (17, 12_345), (12_345, 50_001)]:
        assert np.array_equal(held_slice(kind, state, a, b - a), whole[a:b] < 0.1)
    # and the generator after the whole draw is where an advance by its length leaves it
    bits = kind()
    bits.state = state
    bits.advance(len(whole))
    assert np.random.Generator(bits).integers(2**63) == sel.integers(2**63)


def test_shard_splits_equal_the_whole_array_split():
    from mfkit.distributed._heldout import split_user_shard, train_item_shard

    df = rating_frame(14, n=5_000)
    X = mfkit.Ratings.from_dataframe(df)
    sel = np.random.default_rng(3)
    state = sel.bit_generator.state
    held = sel.random(X.nnz) < 0.1
    train, val = X.subset(~held), X.subset(held)
    user_edges = np.array([0, 100, 101, 2000, X.n_users])
    item_edges = np.array([0, 300, X.n_items])
    pieces, user_parts, held_parts = [], [], []
    for a, b in zip(user_edges[:-1], user_edges[1:], strict=True):
        lo, hi = X.indptr[a], X.indptr[b]
        shard = (X.indptr[a : b + 1] - lo, X.indices[lo:hi], X.values[lo:hi])
        spec = ("draw", np.random.PCG64, state, int(lo))
        tr, h, p, _ = split_user_shard(shard, spec, int(a), item_edges)
        bits = ("bits", np.packbits(held[lo:hi]))
        tr2, h2, _, _ = split_user_shard(shard, bits, int(a), item_edges)
        assert all(np.array_equal(x, y) for x, y in zip(tr + h, tr2 + h2, strict=True))
        user_parts.append(tr)
        held_parts.append(h)
        pieces.append(p)
    # the training rows are train's CSR rows, the held ratings val's, in CSR order
    assert np.array_equal(np.concatenate([t[1] for t in user_parts]), train.indices)
    assert np.array_equal(np.concatenate([t[2] for t in user_parts]), train.values)
    u, i, r = (np.concatenate([h[j] for h in held_parts]) for j in range(3))
    assert np.array_equal(u, val.user_index()) and np.array_equal(i, val.indices)
    assert np.array_equal(r, val.values)
    # the item shards without the held pairs are train's CSC rows (scipy builds the CSC)
    sp = pytest.importorskip("scipy.sparse")
    ref = sp.csr_matrix((train.values, train.indices, train.indptr), shape=X.shape).tocsc()
    full = sp.csr_matrix((X.values, X.indices, X.indptr), shape=X.shape).tocsc()
    ref.sort_indices()
    full.sort_indices()
    for t, (a, b) in enumerate(zip(item_edges[:-1], item_edges[1:], strict=True)):
        lo, hi = full.indptr[a], full.indptr[b]
        shard = (full.indptr[a : b + 1] - lo, full.indices[lo:hi], full.data[lo:hi])
        (ptr, idx, vals), counts = train_item_shard(
            shard, int(a), X.n_users, *[p[t] for p in pieces]
        )
        rlo, rhi = ref.indptr[a], ref.indptr[b]
        assert np.array_equal(ptr, ref.indptr[a : b + 1] - rlo)
        assert np.array_equal(idx, ref.indices[rlo:rhi])
        assert np.array_equal(vals, ref.data[rlo:rhi])
        assert np.array_equal(counts, np.diff(ref.indptr[a : b + 1]))


def test_auto_regularization_with_keep_on_cluster_matches_one_machine(two_processes):
    # the grid fits keep their factors on the workers and are scored there
    client = two_processes
    df = rating_frame(18, n=8_000)
    ref = single(df, **AUTO)
    assert ref.regularization_scores_
    cm = mfkit.distributed.fit(
        mfkit.ALS(**AUTO), dd.from_pandas(df, npartitions=3), client=client, shards=3,
        keep_on_cluster=True, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert cm.extras["regularization_scores"] == ref.regularization_scores_
    assert_same_choice(cm.to_model(), ref)
    cm.release()


# ---------------------------------------------------------------- scoring on the cluster
@pytest.fixture(scope="module")
def fitted(frame) -> mfkit.ALS:
    return single(frame, **PARAMS)


@pytest.mark.parametrize("cluster", ["three_thread_workers", "two_processes"])
def test_distributed_predict_equals_one_machine(frame, fitted, cluster, request, tmp_path):
    client = request.getfixturevalue(cluster)
    pairs = frame[["user", "item"]].iloc[::7].copy()
    pairs["tag"] = np.arange(len(pairs))  # other columns are kept
    ddf = dd.from_pandas(pairs, npartitions=5)
    with client.as_current():
        out = mfkit.distributed.predict(fitted, ddf)
        assert out.npartitions == 5 and list(out.columns) == ["user", "item", "tag", "prediction"]
        got = out.compute()
        # written partition by partition from the workers, read back equal
        out.to_parquet(tmp_path / "pred", write_index=False)
    ref = fitted.predict(pairs.user.to_numpy(), pairs.item.to_numpy())
    assert got.prediction.to_numpy().tobytes() == ref.tobytes()
    assert np.array_equal(got.tag.to_numpy(), pairs.tag.to_numpy())
    back = pd.read_parquet(tmp_path / "pred").sort_values("tag")
    assert back.prediction.to_numpy().tobytes() == ref.tobytes()
    # against the model's equation in plain NumPy
    u = np.searchsorted(fitted.user_ids_, pairs.user.to_numpy())
    i = np.searchsorted(fitted.item_ids_, pairs.item.to_numpy())
    P, Q = fitted.user_factors_.astype(np.float64), fitted.item_factors_.astype(np.float64)
    eq = fitted.global_mean_ + fitted.user_biases_[u] + fitted.item_biases_[i]
    eq = eq + np.einsum("ij,ij->i", P[u], Q[i])
    np.testing.assert_allclose(got.prediction.to_numpy(), eq, rtol=1e-5, atol=1e-5)


def test_distributed_predict_unknown_ids_and_bad_input(frame, fitted, three_thread_workers):
    pairs = pd.DataFrame({"user": frame.user.iloc[:40].to_numpy(), "item": frame.item.iloc[:40]})
    pairs.loc[33, "item"] = "no-such-movie"
    ddf = dd.from_pandas(pairs, npartitions=4)
    part = int(np.searchsorted(ddf.divisions, 33, side="right") - 1)
    with three_thread_workers.as_current():
        with pytest.raises(ValueError, match=rf"partition {part}: items contain ids not seen"):
            mfkit.distributed.predict(fitted, ddf).compute()
        got = mfkit.distributed.predict(fitted, ddf, unknown="baseline", clip=True).compute()
    ref = fitted.predict(pairs.user, pairs.item, unknown="baseline", clip=True)
    assert got.prediction.to_numpy().tobytes() == ref.tobytes()
    with pytest.raises(TypeError, match="pairs must be a dask.dataframe.DataFrame"):
        mfkit.distributed.predict(fitted, pairs)
    with pytest.raises(ValueError, match=r"no column\(s\) \['item'\]"):
        mfkit.distributed.predict(fitted, ddf.rename(columns={"item": "movie"}))
    with pytest.raises(ValueError, match="already has a column 'user'"):
        mfkit.distributed.predict(fitted, ddf, column="user")
    with pytest.raises(ValueError, match="unknown"):
        mfkit.distributed.predict(fitted, ddf, unknown="skip")
    with pytest.raises(mfkit.exceptions.NotFittedError):
        mfkit.distributed.predict(mfkit.ALS(), ddf)


@pytest.mark.parametrize(
    "cluster,options",
    [("three_thread_workers", dict(users_per_partition=700)),
     ("two_processes", dict(users_per_partition=1500, exclude_seen=False, n=3))],
)  # fmt: skip
def test_recommend_all_equals_one_machine(fitted, cluster, options, request, tmp_path):
    client = request.getfixturevalue(cluster)
    n = options.pop("n", 5)
    with client.as_current():
        out = mfkit.distributed.recommend_all(fitted, n, **options)
        assert out.npartitions == -(-fitted.n_users // options["users_per_partition"])
        got = out.compute()
        out.to_parquet(tmp_path / "top", write_index=False)
    ref = fitted.recommend(fitted.user_ids_, n, options.get("exclude_seen", True), as_frame=True)
    assert list(got.columns) == ["user", "rank", "item", "score"]
    got = got.reset_index(drop=True)
    for col in ("user", "rank", "item"):
        assert np.array_equal(got[col].to_numpy(), ref[col].to_numpy()), col
    assert got.score.to_numpy().tobytes() == ref.score.to_numpy().tobytes()
    back = pd.read_parquet(tmp_path / "top").sort_values(["user", "rank"])
    assert (
        back.score.to_numpy().tobytes()
        == ref.sort_values(["user", "rank"]).score.to_numpy().tobytes()
    )
    # the top item of a few users against a plain NumPy ranking of all unseen items
    Pf, Qf = fitted.user_factors_.astype(np.float64), fitted.item_factors_.astype(np.float64)
    seen_ptr, seen_idx = fitted._fitted.seen
    for u in range(0, fitted.n_users, 401):
        s = fitted.global_mean_ + fitted.user_biases_[u] + fitted.item_biases_ + Qf @ Pf[u]
        if options.get("exclude_seen", True):
            s[seen_idx[seen_ptr[u] : seen_ptr[u + 1]]] = -np.inf
        best = got[(got.user == fitted.user_ids_[u]) & (got["rank"] == 1)]
        assert best.item.iloc[0] == fitted.item_ids_[int(np.argmax(s))]
        assert abs(best.score.iloc[0] - s.max()) < 1e-4


def test_recommend_all_checks_its_arguments(fitted):
    with pytest.raises(ValueError, match="users_per_partition"):
        mfkit.distributed.recommend_all(fitted, users_per_partition=0)
    with pytest.raises(ValueError, match="n must be"):
        mfkit.distributed.recommend_all(fitted, 0)
    with pytest.raises(ValueError, match="items contain ids not seen"):
        mfkit.distributed.recommend_all(fitted, items=["nope"])
    with pytest.raises(TypeError, match="model must be a fitted mfkit model"):
        mfkit.distributed.recommend_all("model")


# ------------------------------------------------------- factors kept on the cluster
def test_keep_on_cluster_fit_save_and_load_equal_one_machine(
    frame, fitted, two_processes, tmp_path
):
    cm = mfkit.distributed.fit(
        mfkit.ALS(**PARAMS), dd.from_pandas(frame, npartitions=4), client=two_processes,
        keep_on_cluster=True, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert isinstance(cm, mfkit.distributed.ClusterModel)
    assert (cm.n_users, cm.n_items) == (fitted.n_users, fitted.n_items)
    assert cm.history_["train_rmse"] == fitted.history_["train_rmse"]
    # the factors as Dask arrays, chunked by shard
    with two_processes.as_current():
        P = cm.user_factors_
        assert len(P.chunks[0]) == len(cm.parts[0]) and P.shape == fitted.user_factors_.shape
        assert P.compute().tobytes() == fitted.user_factors_.tobytes()
        assert cm.item_biases_.compute().tobytes() == fitted.item_biases_.tobytes()
        top = cm.recommend_all(4).compute().reset_index(drop=True)
        # predictions from the shards' rows that each partition's pairs name
        pairs = frame[["user", "item"]].iloc[::5].reset_index(drop=True)
        pairs.loc[7, "user"] = -99  # not seen in training: the baseline
        pred = cm.predict(dd.from_pandas(pairs, npartitions=3), unknown="baseline", clip=True)
        pred = pred.compute()
        with pytest.raises(ValueError, match=r"partition 0: users contain ids not seen"):
            cm.predict(dd.from_pandas(pairs, npartitions=3)).compute()
    ref_top = fitted.recommend(fitted.user_ids_, 4, as_frame=True)
    assert top.equals(ref_top)
    ref_pred = fitted.predict(pairs.user, pairs.item, unknown="baseline", clip=True)
    assert pred.prediction.to_numpy().tobytes() == ref_pred.tobytes()
    # saved shard by shard from the workers, read back into an ordinary model
    folder = tmp_path / "model"
    cm.save(folder)
    cm.save(folder)  # again into the same folder: the first save's files go
    names = sorted(os.listdir(folder))
    assert names[0] == "manifest.json" and len(names) == 2 and names[1].startswith("shards-")
    loaded = mfkit.load(folder)
    assert_same_fit(loaded, fitted)
    assert np.array_equal(loaded._fitted.seen[1], fitted._fitted.seen[1])
    ids, scores = loaded.recommend(fitted.user_ids_[:50], 5)
    ref_ids, ref_scores = fitted.recommend(fitted.user_ids_[:50], 5)
    assert np.array_equal(ids, ref_ids) and scores.tobytes() == ref_scores.tobytes()
    assert cm.to_model() is cm.model
    assert_same_fit(cm.model, fitted)
    cm.release()


@pytest.fixture(scope="module")
def saved_folder(three_thread_workers, tmp_path_factory):
    df = rating_frame(8, n=6_000)
    cm = mfkit.distributed.fit(
        mfkit.ALS(**PARAMS), dd.from_pandas(df, npartitions=2), client=three_thread_workers,
        keep_on_cluster=True, shards=3, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("sharded") / "model"
    cm.save(folder, seen=False)
    cm.release()
    return folder, single(df, **PARAMS)


def _copy(folder: Path, tmp_path: Path) -> tuple[Path, dict]:
    dst = tmp_path / "copy"
    shutil.copytree(folder, dst)
    return dst, json.loads((dst / "manifest.json").read_text())


def test_sharded_model_damage_is_named(saved_folder, tmp_path):
    folder, ref = saved_folder
    loaded = mfkit.load(folder)
    assert_same_fit(loaded, ref)
    assert loaded._fitted.seen is None  # saved with seen=False
    dst, meta = _copy(folder, tmp_path)
    entry = meta["shards"]["item"][1]["factors"]
    target = dst / entry["file"]
    blob = bytearray(target.read_bytes())
    blob[-3] ^= 0x40
    target.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=rf"{entry['file']} was altered or damaged"):
        mfkit.load(dst)
    target.unlink()
    with pytest.raises(ValueError, match=rf"shard file {entry['file']} is missing"):
        mfkit.load(dst)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda m: m["shards"]["user"][0]["factors"].update(file="../../etc/passwd.npy"),
         "not a plain file name"),
        (lambda m: m["shards"]["user"][1].update(rows=[5, 9]), r"user shard 1 holds rows 5\.\.9"),
        (lambda m: m["shards"]["item"][0]["biases"].update(shape=[3]), r"has shape \[3\]"),
        (lambda m: m["shards"]["item"][0]["factors"].update(dtype="|O"), "has dtype '|O'"),
        (lambda m: m["shards"]["user"].pop(), r"the user shards hold \d+ rows, the model has"),
        (lambda m: m.update(format_version=99), "format version 99 is newer"),
        (lambda m: m["shards"]["item"][2].update(extra={}), "unknown array 'extra'"),
        (lambda m: m.update(params=[1, 2]), "entry 'params' is missing or malformed"),
    ],
)  # fmt: skip
def test_sharded_manifest_is_checked_before_any_file(saved_folder, tmp_path, change, message):
    folder, _ = saved_folder
    dst, meta = _copy(folder, tmp_path)
    change(meta)
    (dst / "manifest.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message) as err:
        mfkit.load(dst)
    assert str(dst) in str(err.value)
    (dst / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json is damaged"):
        mfkit.load(dst)


@pytest.mark.parametrize(
    "params",
    [dict(solver="cg", cg_steps=2), dict(biases=False, dtype="float64")],
)
def test_keep_on_cluster_options_match_one_machine(params, three_thread_workers):
    df = rating_frame(9, n=8_000, string_items=False)
    p = dict(PARAMS, epochs=3, **params)
    ref = single(df, **p)
    cm = mfkit.distributed.fit(
        mfkit.ALS(**p), dd.from_pandas(df, npartitions=3), client=three_thread_workers,
        keep_on_cluster=True, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert_same_fit(cm.to_model(), ref)


def test_keep_on_cluster_with_a_prior_and_a_callback(three_thread_workers):
    df = rating_frame(10, n=20_000)
    base = single(df, **PARAMS)
    P0, Q0 = base.user_factors_ * 2, base.item_factors_ * 2
    p = dict(PARAMS, epochs=4, prior_regularization=0.2)
    ref = mfkit.ALS(**p).fit(df, init=(P0, Q0), callback=lambda m, r: r["epoch"] < 3)
    seen: list[float] = []

    def stop_after_three(cm, record):
        seen.append(record["train_rmse"])
        return record["epoch"] < 3

    cm = mfkit.distributed.fit(
        mfkit.ALS(**p), dd.from_pandas(df, npartitions=2), init=(P0, Q0),
        callback=stop_after_three, client=three_thread_workers, keep_on_cluster=True,
        timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert cm.stop_reason_ == "callback" and seen == ref.history_["train_rmse"]
    assert_same_fit(cm.to_model(), ref)
    ddf = dd.from_pandas(df, npartitions=2)
    with pytest.raises(TypeError, match="keep_on_cluster must be True or False"):
        mfkit.distributed.fit(
            mfkit.ALS(**PARAMS), ddf, client=three_thread_workers, keep_on_cluster="yes"
        )


@pytest.mark.parametrize(
    "cluster,partitions,shards,p",
    [("two_processes", 3, None, dict(patience=1, tol=0.02, epochs=6)),
     ("two_processes", 2, 3, dict(patience=2, tol=0.0, epochs=4, biases=False)),
     ("three_thread_workers", 4, 5, dict(epochs=3, solver="cg"))],
)  # fmt: skip
def test_keep_on_cluster_validation_and_patience_match_one_machine(
    cluster, partitions, shards, p, request
):
    client = request.getfixturevalue(cluster)
    df = rating_frame(15, n=24_000)
    # validation with users and items not seen in training (predicted by the baseline)
    train, val = df.iloc[:21_000], df.iloc[21_000:].copy()
    val.loc[val.index[:5], "user"] = -1
    val.loc[val.index[5:9], "item"] = "movie-unseen"
    val = val.drop_duplicates(["user", "item"])
    params = dict(PARAMS, **p)
    ref = mfkit.ALS(**params).fit(train, val)
    if "patience" in p:
        assert ref.best_epoch_ is not None
    cm = mfkit.distributed.fit(
        mfkit.ALS(**params), dd.from_pandas(train, npartitions=partitions),
        dd.from_pandas(val, npartitions=3), client=client, shards=shards,
        keep_on_cluster=True, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    for key in ("train_rmse", "val_rmse", "val_mae"):
        assert cm.history_[key] == ref.history_[key], key
    assert cm.best_epoch_ == ref.best_epoch_ and cm.stop_reason_ == ref.stop_reason_
    m = cm.to_model()
    assert_same_fit(m, ref)
    assert m.best_epoch_ == ref.best_epoch_
    cm.release()


def test_keep_on_cluster_validation_as_pandas_or_refused(three_thread_workers):
    df = rating_frame(17, n=6_000)
    train, val = df.iloc[:5_000], df.iloc[5_000:]
    p = dict(PARAMS, epochs=2)
    ref = mfkit.ALS(**p).fit(train, val)
    ddf = dd.from_pandas(train, npartitions=2)
    cm = mfkit.distributed.fit(
        mfkit.ALS(**p), ddf, val, client=three_thread_workers, keep_on_cluster=True,
        timeout=FIT_TIMEOUT,
    )  # fmt: skip
    assert cm.history_["val_rmse"] == ref.history_["val_rmse"]
    assert cm.history_["val_mae"] == ref.history_["val_mae"]
    cm.release()
    with pytest.raises(TypeError, match="validation must be a Dask or pandas DataFrame"):
        mfkit.distributed.fit(
            mfkit.ALS(**p), ddf, (1, 2, 3), client=three_thread_workers, keep_on_cluster=True
        )
    with pytest.raises(ValueError, match=r"validation has no column\(s\) \['rating'\]"):
        mfkit.distributed.fit(
            mfkit.ALS(**p), ddf, val.rename(columns={"rating": "r"}),
            client=three_thread_workers, keep_on_cluster=True,
        )  # fmt: skip


def test_pairwise_plan_gives_numpy_sums():
    from mfkit.distributed._validate import answer, pairwise_plan, pairwise_total

    rng = np.random.default_rng(16)
    for n in [1, 7, 8, 9, 127, 128, 129, 1000, 8193, 70_001]:
        a = rng.standard_normal(n) ** 2 * rng.choice([1.0, 1e9, 1e-9], n)
        for k in (0, 1, 4):
            cuts = np.unique(np.concatenate(([0, n], rng.integers(1, max(n, 2), k)))).astype(
                np.int64
            )
            cuts = cuts[cuts <= n]
            plan = pairwise_plan(cuts)
            got = [answer(a[cuts[s] : cuts[s + 1]], plan[s]) for s in range(len(cuts) - 1)]
            total = pairwise_total(cuts, got)
            assert total == float(np.sum(a)) and total / n == float(np.mean(a)), (n, cuts)


def test_keep_on_cluster_survives_a_killed_worker(frame, two_processes):
    client = two_processes
    client.wait_for_workers(2, timeout=30)
    p = dict(PARAMS, epochs=4)
    ref = single(frame, **p)
    pids = sorted(client.run(os.getpid).values())
    killed: list[int] = []
    threads: list[threading.Thread] = []

    def kill_during_next_epoch(cm, record):
        if record["epoch"] == 2:
            # SIGKILL the other worker process a moment into epoch 3: the parts and shards
            # it held are lost, their backups on the surviving worker take their place

            def kill() -> None:
                time.sleep(0.05)
                os.kill(pids[1], signal.SIGKILL)
                killed.append(pids[1])

            threads.append(threading.Thread(target=kill, daemon=True))
            threads[-1].start()

    cm = mfkit.distributed.fit(
        mfkit.ALS(**p), dd.from_pandas(frame, npartitions=4), client=client,
        callback=kill_during_next_epoch, keep_on_cluster=True, timeout=FIT_TIMEOUT,
    )  # fmt: skip
    for t in threads:
        t.join()
    assert killed == pids[1:]
    assert_same_fit(cm.to_model(), ref)
    client.wait_for_workers(2, timeout=30)


def test_workers_run_the_clients_kernel_path(two_processes):
    # the worker processes would pick their own (best) path; the fit passes the client's
    df = rating_frame(11, n=10_000)
    for isa in mfkit.available_isas():
        with mfkit.use_isa(isa):
            ref = single(df, **PARAMS)
            m = mfkit.distributed.fit(
                mfkit.ALS(**PARAMS), dd.from_pandas(df, npartitions=2), client=two_processes,
                timeout=FIT_TIMEOUT,
            )  # fmt: skip
        assert m.isa_ == ref.isa_ == isa
        assert_same_fit(m, ref)
