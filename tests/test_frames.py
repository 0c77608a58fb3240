"""pandas DataFrames in and out: every as_frame output equals the array output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mfkit
from mfkit.metrics import evaluate
from mfkit.model_selection import cross_validate, per_user_split


@pytest.fixture(scope="module")
def fitted() -> tuple[mfkit.SGD, mfkit.Ratings, mfkit.Ratings]:
    data = mfkit.datasets.synthetic("toy", random_state=0)
    u, i, r = data.to_triplets()
    # original ids that are not indices, so a mix-up would show
    R = mfkit.Ratings.from_triplets(u + 100, i * 10 + 7, r)
    train, test = per_user_split(R, n_test=2, random_state=0)
    model = mfkit.SGD(factors=4, epochs=3, random_state=0).fit(train)
    return model, train, test


def test_recommend_frame_equals_arrays(fitted: tuple) -> None:
    model, _, _ = fitted
    users = [100, 105, 142]
    ids, scores = model.recommend(users, n=5)
    df = model.recommend(users, n=5, as_frame=True)
    assert list(df.columns) == ["user", "rank", "item", "score"]
    assert len(df) == 15
    for row, user in enumerate(users):
        part = df[df["user"] == user].sort_values("rank")
        assert part["rank"].tolist() == [1, 2, 3, 4, 5]
        np.testing.assert_array_equal(part["item"].to_numpy(), ids[row])
        np.testing.assert_array_equal(part["score"].to_numpy(), scores[row])
    one = model.recommend(105, n=3, as_frame=True)
    i1, s1 = model.recommend(105, n=3)
    assert one["user"].tolist() == [105] * 3
    np.testing.assert_array_equal(one["item"].to_numpy(), i1)
    np.testing.assert_array_equal(one["score"].to_numpy(), s1)


def test_recommend_frame_drops_empty_places_and_joins_items(fitted: tuple) -> None:
    model, train, _ = fitted
    u, i, _ = train.to_triplets(original_ids=True)
    rated = i[u == 100]
    unrated = np.setdiff1d(model.item_ids, rated)
    cand = np.concatenate((rated[:2], unrated[:2]))  # user 100 has seen two of the four
    ids, scores = model.recommend([100, 101], n=4, items=cand)
    assert np.isnan(scores[0]).sum() >= 2  # empty places
    df = model.recommend([100, 101], n=4, items=cand, as_frame=True)
    assert len(df) == int((~np.isnan(scores)).sum())
    assert df[df["user"] == 100]["item"].tolist() == ids[0][~np.isnan(scores[0])].tolist()
    titles = pd.DataFrame({"item": cand, "title": [f"t{k}" for k in range(4)]})
    joined = df.merge(titles, on="item", how="left")
    assert joined["title"].notna().all()


def test_recommend_frame_for_folded_users(fitted: tuple) -> None:
    model, _, _ = fitted
    items = model.item_ids[:4]
    new = model.fold_in(([9001, 9001, 9002], [items[0], items[1], items[2]], [5.0, 2.0, 4.0]))
    ids, scores = model.recommend(new, n=4)
    df = model.recommend(new, n=4, as_frame=True)
    assert sorted(set(df["user"].tolist())) == [9001, 9002]
    np.testing.assert_array_equal(
        df[df["user"] == 9002].sort_values("rank")["item"].to_numpy(), ids[1]
    )


def test_predict_takes_a_frame_of_pairs(fitted: tuple) -> None:
    model, _, test = fitted
    u, i, _ = test.to_triplets(original_ids=True)
    pairs = pd.DataFrame({"item": i, "user": u, "other": 0})
    np.testing.assert_array_equal(model.predict(pairs), model.predict(u, i))
    with pytest.raises(ValueError, match="no \\['user'\\] column"):
        model.predict(pairs.rename(columns={"user": "uid"}))
    with pytest.raises(TypeError, match="not both"):
        model.predict(pairs, i)
    with pytest.raises(TypeError, match="needs items"):
        model.predict(u)


def test_evaluate_frame_equals_dict(fitted: tuple) -> None:
    model, _, test = fitted
    names = ["rmse", "mae", "ndcg@5"]
    d = evaluate(model, test, names)
    df = evaluate(model, test, names, as_frame=True)
    assert len(df) == 1 and list(df.columns) == list(d)
    for k, v in d.items():
        assert df[k].iloc[0] == v
    with pytest.raises(TypeError, match="as_frame"):
        evaluate(model, test, names, as_frame="yes")  # type: ignore[arg-type]


def test_cross_validate_frame_equals_dict(fitted: tuple) -> None:
    _, train, _ = fitted
    est = mfkit.SGD(factors=4, epochs=2, random_state=0)
    d = cross_validate(est, train, cv=3, random_state=0)
    df = cross_validate(est, train, cv=3, random_state=0, as_frame=True, return_models=True)
    assert df["fold"].tolist() == [0, 1, 2]
    for key in ("test_rmse", "test_mae"):
        np.testing.assert_array_equal(df[key].to_numpy(), d[key])
    assert all(isinstance(m, mfkit.SGD) for m in df["model"])
    assert set(d) - {"fit_time", "score_time"} <= set(df.columns)


def test_is_frame_does_not_mistake_arrays() -> None:
    from mfkit._core.frames import is_frame

    assert is_frame(pd.DataFrame({"a": [1]}))
    assert not is_frame(np.zeros(3)) and not is_frame({"user": [1]})
