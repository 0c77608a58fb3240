"""Rating and ranking metrics: hand-computed examples and plain-Python references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

import mfkit
from mfkit import SGD, Ratings, metrics


def test_rmse_mae_hand_example() -> None:
    y = [1.0, 2.0, 3.0, 4.0]
    p = [2.0, 2.0, 1.0, 4.0]
    # errors 1, 0, -2, 0
    assert metrics.rmse(y, p) == pytest.approx(math.sqrt(5 / 4))
    assert metrics.mae(y, p) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="same length"):
        metrics.rmse([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        metrics.mae([1.0], [float("nan")])
    with pytest.raises(ValueError, match="empty"):
        metrics.rmse([], [])


REC = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 1, -1, -1]])
REL = [[2, 4, 9], [10], []]  # the third user has nothing relevant: left out


def test_ranking_hand_example() -> None:
    res = metrics.ranking_metrics(REC, REL, k=4, n_items=20)
    # user 0: hits at ranks 2 and 4 of 4; |R| = 3. user 1: no hit.
    p0, p1 = 2 / 4, 0.0
    r0, r1 = 2 / 3, 0.0
    ap0 = (1 / 2 + 2 / 4) / 3
    ndcg0 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert res["precision@4"] == pytest.approx((p0 + p1) / 2)
    assert res["recall@4"] == pytest.approx((r0 + r1) / 2)
    assert res["map@4"] == pytest.approx(ap0 / 2)
    assert res["ndcg@4"] == pytest.approx(ndcg0 / 2)
    assert res["hit_rate@4"] == pytest.approx(0.5)
    assert res["users"] == 2
    # items 1..9 appear (padding -1 is not an item): 9 of 20
    assert res["coverage@4"] == pytest.approx(9 / 20)
    assert metrics.precision_at_k(REC, REL, k=4) == pytest.approx(0.25)
    assert metrics.recall_at_k(REC, REL, k=4) == pytest.approx(1 / 3)
    assert metrics.map_at_k(REC, REL, k=4) == pytest.approx(ap0 / 2)
    assert metrics.ndcg_at_k(REC, REL, k=4) == pytest.approx(ndcg0 / 2)
    assert metrics.hit_rate(REC, REL, k=4) == pytest.approx(0.5)
    # k = 1: only the first entries count
    res1 = metrics.ranking_metrics(REC, REL, k=1)
    assert res1["precision@1"] == 0.0 and res1["ndcg@1"] == 0.0
    # AP divides by min(k, |R|): one relevant item found at rank 1
    assert metrics.map_at_k([[7, 1]], [[7, 8, 9]], k=1) == pytest.approx(1.0)
    assert metrics.ndcg_at_k([[8, 7]], [[7]], k=2) == pytest.approx(1 / math.log2(3))


def py_metrics(rec: list[list[int]], rel: list[set[int]], k: int) -> dict[str, float]:
    """Plain-Python reference, written from the definitions."""
    tot = {"precision": 0.0, "recall": 0.0, "map": 0.0, "ndcg": 0.0, "hit_rate": 0.0}
    n = 0
    for lst, R in zip(rec, rel, strict=True):
        if not R:
            continue
        n += 1
        hits = 0
        ap = 0.0
        dcg = 0.0
        for j, item in enumerate(lst[:k]):
            if item in R:
                hits += 1
                ap += hits / (j + 1)
                dcg += 1 / math.log2(j + 2)
        idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(R))))
        tot["precision"] += hits / k
        tot["recall"] += hits / len(R)
        tot["map"] += ap / min(k, len(R))
        tot["ndcg"] += dcg / idcg
        tot["hit_rate"] += 1.0 if hits else 0.0
    return {f"{key}@{k}": v / n for key, v in tot.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_against_plain_python(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, width = 300, 60, 12
    rec = np.array([rng.choice(n_items, width, replace=False) for _ in range(n_users)])
    rec[rng.random(rec.shape) < 0.05] = -1  # sprinkle padding (never a hit)
    for row in rec:  # padding only at the end of a row, as recommend writes it
        row[:] = np.concatenate((row[row >= 0], row[row < 0]))
    rel = [set(rng.choice(n_items, rng.integers(0, 15), replace=False).tolist()) for _ in rec]
    for k in (1, 5, 12):
        got = metrics.ranking_metrics(rec, [sorted(r) for r in rel], k=k)
        ref = py_metrics(rec.tolist(), rel, k)
        for key, v in ref.items():
            assert got[key] == pytest.approx(v, rel=1e-12), key
        cov = len({x for row in rec[:, :k].tolist() for x in row if x >= 0}) / n_items
        assert metrics.coverage(rec, n_items, k) == pytest.approx(cov)


def test_relevant_as_ratings_with_threshold_and_string_ids() -> None:
    users = np.array(["a", "a", "a", "b", "b", "c"])
    items = np.array(["x", "y", "z", "x", "w", "y"])
    ratings = np.array([5.0, 2.0, 4.0, 1.0, 4.5, 3.0])
    R = Ratings.from_triplets(users, items, ratings)  # rows a, b, c
    rec = np.array([["z", "y", "x"], ["x", "q", ""], ["w", "x", "y"]])
    res = metrics.ranking_metrics(rec, R, k=3, threshold=4.0)
    # relevant: a -> {x, z}, b -> {w}, c -> {} (left out)
    ref = py_metrics(rec.tolist(), [{"x", "z"}, {"w"}, set()], 3)  # type: ignore[list-item]
    for key, v in ref.items():
        assert res[key] == pytest.approx(v)
    assert res["users"] == 2
    # without a threshold every held-out rating is relevant
    res_all = metrics.ranking_metrics(rec, R, k=3)
    ref_all = py_metrics(rec.tolist(), [{"x", "y", "z"}, {"x", "w"}, {"y"}], 3)  # type: ignore[list-item]
    for key, v in ref_all.items():
        assert res_all[key] == pytest.approx(v)
    # a scipy matrix: columns are item indices
    M = sp.csr_array(np.array([[0, 3.0, 0, 5.0], [1.0, 0, 0, 0]]))
    assert metrics.precision_at_k(np.array([[3, 0], [0, 1]]), M, k=2) == pytest.approx(0.5)


def test_ranking_input_errors() -> None:
    with pytest.raises(ValueError, match="2-d"):
        metrics.ranking_metrics(np.array([1, 2, 3]), [[1]], k=1)
    with pytest.raises(ValueError, match="longer than the lists"):
        metrics.ranking_metrics(REC, REL, k=5)
    with pytest.raises(ValueError, match="repeats an item"):
        metrics.ranking_metrics(np.array([[2, 2]]), [[2]], k=2)
    with pytest.raises(ValueError, match="one collection of item ids per row"):
        metrics.ranking_metrics(REC, [[1]], k=2)
    with pytest.raises(ValueError, match="no user has a relevant"):
        metrics.ranking_metrics(REC, [[], [], []], k=2)
    with pytest.raises(ValueError, match="threshold needs ratings"):
        metrics.ranking_metrics(REC, REL, k=2, threshold=3.0)
    with pytest.raises(TypeError, match="both be integers or strings"):
        metrics.ranking_metrics(REC, [["a"], ["b"], []], k=2)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.parse_metric("auc")
    assert metrics.parse_metric("NDCG@5") == ("ndcg", 5)
    assert metrics.parse_metric("recall") == ("recall", 10)


def test_evaluate_matches_its_definition() -> None:
    X = mfkit.datasets.synthetic("ml-100k", random_state=20)
    train, test = mfkit.model_selection.train_test_split(X, 0.2, random_state=20)
    m = SGD(factors=8, epochs=4, random_state=20).fit(train)
    res = metrics.evaluate(m, test, ["rmse", "mae", "ndcg@5", "precision@10", "coverage@10"])
    u, i, r = test.to_triplets()
    pred = m.predict(u, i, unknown="baseline")
    assert res["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - r) ** 2))))
    assert res["mae"] == pytest.approx(float(np.mean(np.abs(pred - r))))
    users = np.unique(u)
    rec, _ = m.recommend(users, n=10)
    rel = [set(test.indices[test.indptr[x] : test.indptr[x + 1]].tolist()) for x in users]
    ref10 = py_metrics(rec.tolist(), rel, 10)
    ref5 = py_metrics(rec.tolist(), rel, 5)
    assert res["precision@10"] == pytest.approx(ref10["precision@10"])
    assert res["ndcg@5"] == pytest.approx(ref5["ndcg@5"])
    cov = len({x for row in rec.tolist() for x in row if x >= 0}) / X.n_items
    assert res["coverage@10"] == pytest.approx(cov)
    assert res["ranking_users"] == len(users)
