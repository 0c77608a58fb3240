"""Splits, cross-validation, search, estimator conventions, predict(unknown=), and the CLI."""

from __future__ import annotations

import copy
import pathlib
import sys
from collections import Counter

import numpy as np
import pytest

import mfkit
from mfkit import SGD, Ratings
from mfkit.cli import main
from mfkit.model_selection import (
    KFold,
    clone,
    cross_validate,
    grid_search,
    per_user_split,
    temporal_split,
    train_test_split,
)


def triplets(X: Ratings) -> Counter[tuple[int, int, float, int]]:
    u, i, r = X.to_triplets()
    ts = X.timestamps if X.timestamps is not None else np.zeros(X.nnz, dtype=np.int64)
    return Counter(zip(u.tolist(), i.tolist(), r.tolist(), ts.tolist(), strict=True))


def assert_partition(X: Ratings, train: Ratings, test: Ratings) -> None:
    """Disjoint and complete, with the shape and id maps of X."""
    assert train.shape == test.shape == X.shape
    assert train.user_map.same_as(X.user_map) and test.item_map.same_as(X.item_map)
    a, b = triplets(train), triplets(test)
    assert not (set(a) & set(b))
    assert a + b == triplets(X)


@pytest.fixture(scope="module")
def data() -> Ratings:
    return mfkit.datasets.synthetic("ml-100k", timestamps=True, random_state=30)


def test_train_test_split_partitions(data: Ratings) -> None:
    train, test = train_test_split(data, 0.25, random_state=1)
    assert_partition(data, train, test)
    assert test.nnz == round(0.25 * data.nnz)


@pytest.mark.parametrize("n_test,min_train", [(1, 1), (3, 2), (10, 5)])
def test_per_user_leave_k_out(data: Ratings, n_test: int, min_train: int) -> None:
    train, test = per_user_split(data, n_test=n_test, min_train=min_train, random_state=2)
    assert_partition(data, train, test)
    counts = data.user_counts()
    eligible = counts >= n_test + min_train
    np.testing.assert_array_equal(test.user_counts(), np.where(eligible, n_test, 0))
    np.testing.assert_array_equal(train.user_counts(), counts - test.user_counts())
    again, _ = per_user_split(data, n_test=n_test, min_train=min_train, random_state=2)
    np.testing.assert_array_equal(again.indices, train.indices)
    other, _ = per_user_split(data, n_test=n_test, min_train=min_train, random_state=3)
    assert not np.array_equal(other.indices, train.indices)


def test_per_user_fraction(data: Ratings) -> None:
    train, test = per_user_split(data, test_size=0.2, min_train=2, random_state=4)
    assert_partition(data, train, test)
    counts = data.user_counts()
    want = np.minimum(np.floor(counts * 0.2 + 0.5), counts - 2).clip(0)
    np.testing.assert_array_equal(test.user_counts(), want)
    # the rule on a small fixture: 5 ratings -> 1 held out, 2 -> 0 (round(0.4) = 0), 8 -> 2
    X = Ratings.from_dense(
        np.array(
            [[1, 2, 3, 4, 5, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 1, 2, 3]],
            dtype=float,
        ),
        missing=0,
    )
    _, t = per_user_split(X, test_size=0.25, random_state=0)
    assert t.user_counts().tolist() == [1, 1, 2]  # round half up: 1.25->1, 0.5->1, 2->2
    with pytest.raises(ValueError, match="exactly one of test_size"):
        per_user_split(X, 0.2, n_test=1)
    with pytest.raises(ValueError, match="no rating in the test part"):
        per_user_split(X, n_test=9)


def test_temporal_split_rules(data: Ratings) -> None:
    ts = data.timestamps
    assert ts is not None
    cut = int(np.quantile(ts, 0.8))
    train, test = temporal_split(data, cut)
    assert_partition(data, train, test)
    assert train.timestamps.max() < cut <= test.timestamps.min()  # type: ignore[union-attr]
    # global fraction: nothing in training is later (time, then position) than the test part
    train, test = temporal_split(data, test_size=0.1)
    assert_partition(data, train, test)
    assert test.nnz == round(0.1 * data.nnz)
    assert train.timestamps.max() <= test.timestamps.min()  # type: ignore[union-attr]
    # per user: each eligible user's last 2 ratings in time are the test part
    train, test = temporal_split(data, n_test=2, per_user=True, min_train=3)
    assert_partition(data, train, test)
    for u in range(data.n_users):
        a, b = data.indptr[u], data.indptr[u + 1]
        t_u = ts[a:b]
        n_u = b - a
        te = test.timestamps[test.indptr[u] : test.indptr[u + 1]]  # type: ignore[index]
        tr = train.timestamps[train.indptr[u] : train.indptr[u + 1]]  # type: ignore[index]
        if n_u < 5:
            assert len(te) == 0
        else:
            assert len(te) == 2
            assert sorted(te.tolist()) == sorted(t_u.tolist())[-2:]
            assert tr.max() <= te.min()


def test_temporal_split_ties_and_fixture() -> None:
    # user 0: times 5, 1, 5, 3 on items 0..3; user 1: one rating
    X = Ratings.from_triplets(
        np.array([0, 0, 0, 0, 1]),
        np.array([0, 1, 2, 3, 0]),
        np.array([1.0, 2, 3, 4, 5]),
        timestamps=np.array([5, 1, 5, 3, 9]),
    )
    train, test = temporal_split(X, n_test=1, per_user=True)
    # tie at time 5 between items 0 and 2: the later position (item 2) is the later one
    assert test.to_triplets()[1].tolist() == [2]
    train, test = temporal_split(X, n_test=2, per_user=True)
    assert sorted(test.to_triplets()[1].tolist()) == [0, 2]
    train, test = temporal_split(X, cutoff=np.datetime64(5, "s"))
    assert sorted(test.to_triplets()[0].tolist()) == [0, 0, 1]
    with pytest.raises(ValueError, match="needs timestamps"):
        temporal_split(Ratings.from_dense(np.eye(3)), test_size=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        temporal_split(X, 4, test_size=0.2)
    with pytest.raises(ValueError, match="per_user=True"):
        temporal_split(X, n_test=1)


def test_kfold_partitions(data: Ratings) -> None:
    kf = KFold(4, random_state=5)
    folds = list(kf.split(data))
    assert len(folds) == kf.get_n_splits() == 4
    seen: Counter[tuple[int, int, float, int]] = Counter()
    sizes = []
    for train, test in folds:
        assert_partition(data, train, test)
        seen += triplets(test)
        sizes.append(test.nnz)
    assert seen == triplets(data)
    assert max(sizes) - min(sizes) <= 1
    again = [t.indices.tolist() for _, t in KFold(4, random_state=5).split(data)]
    assert again == [t.indices.tolist() for _, t in folds]
    with pytest.raises(ValueError, match="n_splits must be >= 2"):
        list(KFold(1).split(data))


def test_cross_validate_reproducible_and_equal_to_manual_loop() -> None:
    X = mfkit.datasets.synthetic("toy", random_state=6)
    model = SGD(factors=4, epochs=3, random_state=6)
    metrics = ["rmse", "mae", "ndcg@5"]
    a = cross_validate(model, X, cv=3, metrics=metrics, random_state=7)
    b = cross_validate(model, X, cv=3, metrics=metrics, random_state=7)
    for key in ("test_rmse", "test_mae", "test_ndcg@5"):
        assert a[key].shape == (3,)
        np.testing.assert_array_equal(a[key], b[key])
    assert a["fit_time"].shape == a["score_time"].shape == (3,)
    for j, (train, test) in enumerate(KFold(3, random_state=7).split(X)):
        m = SGD(factors=4, epochs=3, random_state=6).fit(train)
        u, i, r = test.to_triplets()
        p = m.predict(u, i, unknown="baseline")
        assert a["test_rmse"][j] == pytest.approx(float(np.sqrt(np.mean((p - r) ** 2))))
    assert not hasattr(model, "user_factors_")  # the given model is not fitted
    c = cross_validate(model, X, cv=list(KFold(3, random_state=8).split(X)), return_models=True)
    assert len(c["models"]) == 3 and all(hasattr(m, "user_factors_") for m in c["models"])


def test_grid_search_picks_the_best_mean() -> None:
    X = mfkit.datasets.synthetic("toy", random_state=9)
    model = SGD(factors=3, epochs=4, random_state=9)
    grid = {"regularization": [0.0, 0.1, 1.0], "learning_rate": [0.005, 0.02]}
    res = grid_search(model, grid, X, cv=2, random_state=10)
    assert len(res["params"]) == 6
    folds = list(KFold(2, random_state=10).split(X))
    means = [
        cross_validate(clone(model).set_params(**p), X, folds)["test_rmse"].mean()
        for p in res["params"]
    ]
    np.testing.assert_allclose(res["mean_score"], means)
    assert res["best_index"] == int(np.argmin(means))
    best = res["best_model"]
    assert best.get_params() == {**model.get_params(), **res["best_params"]}
    with pytest.raises(ValueError, match="no parameter 'alpha'"):
        grid_search(model, {"alpha": [1]}, X)


# ---------------------------------------------------------------------- estimator conventions
def test_clone_contract_and_params_round_trip() -> None:
    rng = np.random.default_rng(0)
    model = SGD(factors=7, regularization=0.05, dtype=np.float64, random_state=rng, patience=3)
    params = model.get_params(deep=False)
    again = type(model)(**params)
    for name, value in again.get_params(deep=False).items():
        assert value is params[name], name  # stored unchanged, not copied or converted
    # scikit-learn's clone deep-copies each parameter and checks the constructor keeps it
    copies = {name: copy.deepcopy(value) for name, value in params.items()}
    rebuilt = type(model)(**copies).get_params(deep=False)
    for name, value in copies.items():
        assert rebuilt[name] is value, name
    c = clone(model)
    assert c.get_params() == params and c is not model and not hasattr(c, "user_factors_")
    assert model.set_params(factors=9) is model and model.factors == 9
    with pytest.raises(ValueError, match="no parameter 'k'"):
        model.set_params(k=3)
    X = mfkit.datasets.synthetic("toy", random_state=1)
    assert model.set_params(epochs=1).fit(X) is model


def test_sklearn_clone_works() -> None:
    from sklearn.base import clone as sk_clone

    model = SGD(factors=5, epochs=2, regularization=0.1, random_state=3, dtype="float64")
    X = mfkit.datasets.synthetic("toy", random_state=2)
    model.fit(X)
    c = sk_clone(model)
    assert type(c) is SGD and c.get_params() == model.get_params()
    assert not hasattr(c, "user_factors_")
    c.fit(X)
    np.testing.assert_array_equal(c.user_factors, model.user_factors)


def test_predict_unknown_modes() -> None:
    X = Ratings.from_triplets(
        np.array([10, 10, 20]), np.array([1, 2, 2]), np.array([4.0, 2.0, 3.0])
    )
    m = SGD(factors=2, epochs=3, random_state=4, dtype="float64").fit(X)
    m.user_biases[:] = [0.5, -0.25]
    m.item_biases[:] = [1.0, -1.0]
    mu = m.global_mean
    assert mu == pytest.approx(3.0)
    users = np.array([10, 99, 10, 99])
    items = np.array([7, 1, 2, 7])  # known user/unknown item, unknown user/known item, ...
    base = m.predict(users, items, unknown="baseline")
    assert base[0] == mu + 0.5
    assert base[1] == mu + 1.0
    assert base[3] == mu
    assert base[2] == m.predict(10, 2)
    nan = m.predict(users, items, unknown="nan")
    assert np.isnan(nan[[0, 1, 3]]).all() and nan[2] == base[2]
    with pytest.raises(ValueError, match="not seen in training"):
        m.predict(users, items)
    with pytest.raises(ValueError, match="unknown must be one of"):
        m.predict(users, items, unknown="zero")
    nob = SGD(factors=2, epochs=1, biases=False, random_state=4).fit(X)
    assert nob.predict(99, 7, unknown="baseline") == 0.0


def test_validation_with_other_id_kind_names_the_argument() -> None:
    X = Ratings.from_triplets(np.array(["a", "b"]), np.array(["x", "y"]), np.array([4.0, 2.0]))
    V = Ratings.from_triplets(np.array([1]), np.array([2]), np.array([3.0]))
    with pytest.raises(TypeError, match="validation user ids must be strings"):
        mfkit.ALS(factors=2, epochs=1, random_state=0).fit(X, validation=V)


def test_init_model_with_other_ids_is_refused() -> None:
    users, items = np.array(["a", "a", "b"]), np.array(["x", "y", "y"])
    X = Ratings.from_triplets(users, items, np.array([4.0, 2.0, 3.0]))
    Y = Ratings.from_triplets(np.array(["c", "c", "d"]), items, np.array([4.0, 2.0, 3.0]))
    a = mfkit.ALS(factors=2, epochs=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match="other user ids than data"):
        mfkit.ALS(factors=2, epochs=1).fit(Y, init=a)
    # same ids: accepted, and (P0, Q0) arrays are taken as aligned by position
    mfkit.ALS(factors=2, epochs=1).fit(X, init=a)
    mfkit.ALS(factors=2, epochs=1).fit(Y, init=(a.user_factors, a.item_factors))


# ---------------------------------------------------------------------- CLI
def test_cli_train_evaluate_recommend_cv(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.npz"
    plot = tmp_path / "curve.png"
    args = ["--preset", "toy", "--factors", "4", "--epochs", "3", "--quiet"]
    assert main(["train", *args, "--out", str(out), "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["evaluate", str(out), "--preset", "toy", "--metrics", "rmse,ndcg@5"]) == 0
    text = capsys.readouterr().out
    model = mfkit.load(out)
    data = mfkit.datasets.synthetic("toy", random_state=0)
    _, test = train_test_split(data, 0.1, random_state=0)
    ref = mfkit.metrics.evaluate(model, test, ["rmse", "ndcg@5"])
    assert f"rmse          {ref['rmse']:.4f}" in text
    assert f"ndcg@5        {ref['ndcg@5']:.4f}" in text
    # metric names are case-insensitive and a bare ranking name means @10
    argv = ["evaluate", str(out), "--preset", "toy", "--metrics", "RMSE, Hit_Rate"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    ref = mfkit.metrics.evaluate(model, test, ["rmse", "hit_rate@10"])
    assert f"rmse          {ref['rmse']:.4f}" in text
    assert f"hit_rate@10   {ref['hit_rate@10']:.4f}" in text
    assert main(["recommend", str(out), "--user", "3", "-n", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    items, scores = model.recommend(3, n=4)
    assert [int(line.split()[1]) for line in lines[1:]] == items.tolist()
    assert (
        main(
            [
                "cv",
                "--preset",
                "toy",
                "--factors",
                "3",
                "--epochs",
                "2",
                "--folds",
                "3",
                "--quiet",
                "--metrics",
                "rmse,precision@5",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "precision@5" in table and table.count("\n") == 6
    # a rating file goes through the loaders
    csv = tmp_path / "ratings.csv"
    toy = mfkit.datasets.synthetic("toy", random_state=0)
    tu, ti, tr = toy.to_triplets()
    rows = "".join(f"{a},{b},{c:.1f},0\n" for a, b, c in zip(tu, ti, tr, strict=True))
    csv.write_text("userId,movieId,rating,timestamp\n" + rows)
    argv = ["cv", str(csv), "--factors", "3", "--epochs", "2", "--folds", "2", "--quiet"]
    assert main(argv) == 0
    assert "rmse" in capsys.readouterr().out
    assert main(["cv", str(tmp_path / "missing.csv")]) == 2
    assert "no such rating file" in capsys.readouterr().err
    assert main(["recommend", str(out), "--user", "9999"]) == 2
    assert "fold_in" in capsys.readouterr().err


def test_cli_plot_without_matplotlib(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit, match="--plot needs matplotlib"):
        main(["train", "--preset", "toy", "--epochs", "1", "--plot", str(tmp_path / "c.png")])
    assert not (tmp_path / "c.png").exists()


def test_cross_validate_names_a_bad_cv() -> None:
    # a regression test: cv="x" failed inside str.split
    X = mfkit.datasets.synthetic("toy", random_state=1)
    for cv in ("x", 2.5, None):
        with pytest.raises(TypeError, match="cv must be an int"):
            cross_validate(SGD(epochs=1), X, cv=cv)
