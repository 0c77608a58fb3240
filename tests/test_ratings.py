"""The rating container: construction from every input kind, validation, views."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mfkit
from mfkit import Ratings, as_ratings
from tests.conftest import dense_of


def test_from_dense_with_markers() -> None:
    A = np.array([[5, 3, 0, 1], [4, 0, 0, 1], [1, 1, 0, 5], [1, 0, 0, 4], [0, 1, 5, 4]])
    r = Ratings.from_dense(A, missing=0)
    assert r.shape == (5, 4)
    assert r.nnz == int((A != 0).sum())
    np.testing.assert_array_equal(dense_of(r, 0), A)
    B = np.array([[3, 1, -1], [1, -1, 4]])
    rb = Ratings.from_dense(B, missing=-1)
    assert rb.nnz == 4
    C = np.array([[1.0, np.nan], [np.nan, 2.5]])
    rc = as_ratings(C)
    np.testing.assert_array_equal(rc.values, [1.0, 2.5])
    assert rc.indices.dtype == np.int32 and rc.values.dtype == np.float32
    assert rc.indptr.dtype == np.int64


def test_from_scipy_every_format_keeps_explicit_zero() -> None:
    rows = np.array([0, 2, 2, 3])
    cols = np.array([1, 0, 3, 2])
    vals = np.array([4.0, 0.0, 2.5, 1.0])
    coo = sp.coo_array((vals, (rows, cols)), shape=(4, 5))
    for X in (coo, coo.tocsr(), coo.tocsc(), sp.csr_matrix(coo), coo.todok(), coo.tolil()):
        r = as_ratings(X)
        assert r.shape == (4, 5)
        assert r.nnz == 4  # the stored zero is a rating
        np.testing.assert_array_equal(r.to_scipy().toarray(), coo.toarray())


def test_from_triplets_maps_arbitrary_ids() -> None:
    users = ["bob", "alice", "bob", "carol"]
    items = [10**12, 7, 7, -3]
    r = Ratings.from_triplets(users, items, [1.0, 2.0, 3.0, 4.0])
    assert r.shape == (3, 3)
    assert r.user_ids.tolist() == ["alice", "bob", "carol"]
    assert r.item_ids.tolist() == [-3, 7, 10**12]
    u, i, v = r.to_triplets(original_ids=True)
    got = sorted(zip(u.tolist(), i.tolist(), v.tolist(), strict=True))
    assert got == sorted(zip(users, items, [1.0, 2.0, 3.0, 4.0], strict=True))


def test_duplicates_error_and_policies() -> None:
    u = [0, 1, 0, 0]
    i = [2, 2, 2, 1]
    v = [1.0, 5.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="duplicate rating for user 0, item 2"):
        Ratings.from_triplets(u, i, v)
    mean = dense_of(Ratings.from_triplets(u, i, v, duplicates="mean"))
    last = dense_of(Ratings.from_triplets(u, i, v, duplicates="last"))
    total = dense_of(Ratings.from_triplets(u, i, v, duplicates="sum"))
    assert mean[0, 1] == 2.0 and last[0, 1] == 3.0 and total[0, 1] == 4.0
    assert mean[0, 0] == 4.0 and last[1, 1] == 5.0  # item ids 1, 2 map to indices 0, 1
    with pytest.raises(ValueError, match="duplicate"):
        as_ratings(sp.coo_array(([1.0, 2.0], ([0, 0], [1, 1])), shape=(2, 2)))


def test_dataframe_input() -> None:
    import pandas as pd

    df = pd.DataFrame({"user": ["a", "b", "a"], "item": [3, 3, 4], "rating": [1.0, 2.0, 3.0]})
    r = as_ratings(df)
    assert r.user_ids.tolist() == ["a", "b"] and r.item_ids.tolist() == [3, 4]
    df2 = df.rename(columns={"user": "uid"})
    with pytest.raises(ValueError, match="user_col"):
        as_ratings(df2)
    r2 = Ratings.from_dataframe(df2, user_col="uid")
    np.testing.assert_array_equal(r2.values, r.values)


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: Ratings.from_triplets([0, 1], [0, 1], [1.0, np.nan]), ValueError, "NaN or inf"),
        (lambda: Ratings.from_triplets([0, 1], [0, 1], [1.0, np.inf]), ValueError, "NaN or inf"),
        (
            lambda: Ratings.from_triplets([0, -1], [0, 1], [1.0, 2.0], map_ids=False),
            ValueError,
            "negative",
        ),
        (
            lambda: Ratings.from_triplets([0, 5], [0, 1], [1.0, 2.0], map_ids=False, shape=(3, 3)),
            ValueError,
            "out of range",
        ),
        (lambda: Ratings.from_triplets([0, 1], [0], [1.0, 2.0]), ValueError, "same length"),
        (lambda: Ratings.from_triplets([], [], []), ValueError, "empty"),
        (lambda: Ratings.from_triplets([0], [0], ["x"]), TypeError, "numbers"),
        (lambda: as_ratings(np.zeros(3)), ValueError, "2-d"),
        (lambda: as_ratings("ratings.csv"), TypeError, "data must be"),
        (lambda: as_ratings(np.array([[1.0, np.inf]])), ValueError, "non-finite"),
        (lambda: Ratings.from_triplets([0.5], [0], [1.0]), TypeError, "users"),
        (lambda: Ratings.from_triplets([0], [0], [1.0], duplicates="max"), ValueError, "dupl"),
    ],
)
def test_bad_input_is_named(call, exc, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=words):
        call()


def test_raw_constructor_checks() -> None:
    with pytest.raises(ValueError, match="sorted"):
        Ratings([0, 2], [1, 0], [1.0, 2.0], (1, 2))
    with pytest.raises(ValueError, match="duplicate"):
        Ratings([0, 2], [1, 1], [1.0, 2.0], (1, 2))
    with pytest.raises(ValueError, match="item indices"):
        Ratings([0, 1], [3], [1.0], (1, 2))
    with pytest.raises(ValueError, match="indptr"):
        Ratings([0, 3], [0], [1.0], (1, 2))


def test_immutable_and_views() -> None:
    r = mfkit.datasets.synthetic("toy", random_state=3)
    with pytest.raises(ValueError):
        r.values[0] = 1.0
    indptr, users, vals, pos = r.csc()
    assert r.csc()[0] is indptr  # cached
    dense = dense_of(r)
    for i in range(r.n_items):
        s = slice(indptr[i], indptr[i + 1])
        np.testing.assert_array_equal(dense[users[s], i], vals[s])
        np.testing.assert_array_equal(r.values[pos[s]], vals[s])
    sub = r.subset(r.values >= 4)
    assert sub.shape == r.shape and np.all(sub.values >= 4)
    assert sub.nnz == int((r.values >= 4).sum())


def test_idmap_lookup_unsorted_ids() -> None:
    m = mfkit.ratings.IdMap(np.array([30, 10, 20]), 3)
    np.testing.assert_array_equal(m.lookup([20, 30, 99, 10], "users"), [2, 0, -1, 1])
    ident = mfkit.ratings.IdMap(None, 4)
    np.testing.assert_array_equal(ident.lookup([0, 3, 4, -1], "users"), [0, 3, -1, -1])
    with pytest.raises(TypeError):
        ident.lookup(["a"], "users")


def test_idmap_lookup_of_large_ids_in_other_integer_dtypes() -> None:
    # ids above 2**53 must not be compared through float64 (2**62 and 2**62 + 1 would merge)
    big = 2**62
    m = mfkit.ratings.IdMap(np.array([-5, big, big + 1], dtype=np.int64), 3)
    keys = np.array([big + 1, big, 2**64 - 1, 3], dtype=np.uint64)
    np.testing.assert_array_equal(m.lookup(keys, "users"), [2, 1, -1, -1])
    np.testing.assert_array_equal(m.lookup(np.array([-5.0, 1e30]), "users"), [0, -1])
    ident = mfkit.ratings.IdMap(None, 4)
    np.testing.assert_array_equal(ident.lookup(np.array([2**64 - 1, 3], np.uint64), "u"), [-1, 3])
    with pytest.raises(TypeError, match="users holds non-integer floats"):
        m.lookup([1.5], "users")
    X = Ratings.from_triplets(np.array([big, big + 1]), np.array([1, 2]), np.array([1.0, 5.0]))
    model = mfkit.ALS(factors=1, epochs=2, random_state=0, dtype="float64").fit(X)
    as_u64 = model.predict(np.array([big + 1, big], np.uint64), [2, 1])
    np.testing.assert_array_equal(as_u64, model.predict([big + 1, big], [2, 1]))


def test_subset_positions_are_checked() -> None:
    X = Ratings.from_dense(np.array([[1.0, 2.0], [3.0, 4.0]]))
    # positions in any order select the same ratings as the mask
    got = X.subset(np.array([3, 0]))
    assert [a.tolist() for a in got.to_triplets()] == [[0, 1], [0, 1], [1.0, 4.0]]
    for bad, exc, words in (
        ([-1, 0], ValueError, r"\[0, 4\)"),
        ([4], ValueError, r"\[0, 4\)"),
        ([0, 0], ValueError, "repeat"),
        (np.array([0.0, 1.7]), TypeError, "integer positions"),
    ):
        with pytest.raises(exc, match=words):
            X.subset(bad)
    assert X.subset(np.array([], dtype=np.int64)).nnz == 0


def test_constructor_refuses_repeated_ids_and_fractional_timestamps() -> None:
    args = ([0, 1, 2], [0, 0], [1.0, 2.0], (2, 1))
    with pytest.raises(ValueError, match="user_ids must be distinct; 'a'"):
        Ratings(*args, user_ids=["a", "a"])
    with pytest.raises(ValueError, match="item_ids must be distinct; 7"):
        Ratings([0, 2], [0, 1], [1.0, 2.0], (1, 2), item_ids=[7, 7])
    with pytest.raises(TypeError, match="timestamps must be integers"):
        Ratings(*args, timestamps=[1.7, 2.0])
    X = Ratings(
        *args,
        user_ids=["b", "a"],
        timestamps=np.array(["1970-01-02", "1970-01-03"], dtype="datetime64[D]"),
    )
    assert X.user_map.lookup(["a", "b"], "u").tolist() == [1, 0]
    assert X.timestamps is not None and X.timestamps.tolist() == [86400, 172800]


def test_dataframe_missing_timestamp_column_is_named() -> None:
    import pandas as pd

    df = pd.DataFrame({"user": [1], "item": [2], "rating": [3.0]})
    with pytest.raises(ValueError, match=r"no column\(s\) \['when'\].*timestamp_col="):
        Ratings.from_dataframe(df, timestamp_col="when")


def test_finite_float64_beyond_float32_is_a_value_error_not_a_warning() -> None:
    # a regression test: the float32 cast ran outside np.errstate, so NumPy's RuntimeWarning
    # (an error under this suite's filterwarnings) came before mfkit's message
    with pytest.raises(ValueError, match="overflow float32"):
        Ratings([0, 1], [0], np.array([1e300]), (1, 1))


def test_csc_arrays_by_counting_sort_and_nothing_kept_per_rating() -> None:
    r = mfkit.datasets.synthetic("ml-100k", random_state=1)
    indptr, users, vals = r.csc_arrays()
    assert r.csc_arrays()[1] is users  # cached
    # an independent reference: scipy's CSC of the same matrix (sorted indices)
    ref = r.to_scipy().tocsc()
    ref.sort_indices()
    np.testing.assert_array_equal(indptr, ref.indptr)
    np.testing.assert_array_equal(users, ref.indices)
    np.testing.assert_array_equal(vals, ref.data)
    assert users.dtype == np.int32 and vals.dtype == np.float32 and indptr.dtype == np.int64
    # only the three arrays are cached (the order array used to stay alive: 8 bytes/rating)
    assert sum(a.nbytes for a in r._csc) == indptr.nbytes + users.nbytes + vals.nbytes
    *_, pos = r.csc()
    np.testing.assert_array_equal(r.values[pos], vals)
