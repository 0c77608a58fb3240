"""regularization='auto': the choice is the documented rule re-run by hand, reproducible for
any thread count and dtype, equal to fitting the chosen value directly, and it finds the
right weight on data where the right weight is known."""

from __future__ import annotations

import numpy as np
import pytest

import mfkit
from mfkit.models import _autoreg
from tests.conftest import hidden_low_rank


def ratings(seed: int = 0, n_users: int = 150, n_items: int = 100, n: int = 4000, noise=0.5):
    u, i, r, _ = hidden_low_rank(seed, n_users, n_items, n, noise=noise)
    return mfkit.Ratings.from_triplets(u, i, r, shape=(n_users, n_items), map_ids=False)


def rule_by_hand(cls, settings: dict, X: mfkit.Ratings, seed: int):
    """The rule of mfkit.models._autoreg written out with public pieces only."""
    sel = np.random.default_rng(seed).spawn(1)[0]
    held = sel.random(X.nnz) < 0.1
    train, val = X.subset(~held), X.subset(held)
    sub_seed = int(sel.integers(2**63))
    u, i, r = val.to_triplets()
    grid = (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
    scores: dict[float, float] = {}

    def score(lam: float) -> float:
        if lam not in scores:
            m = cls(**settings, regularization=lam, dtype="float32", random_state=sub_seed)
            m.fit(train)
            scores[lam] = float(np.sqrt(np.mean((m.predict(u, i, unknown="baseline") - r) ** 2)))
        return scores[lam]

    j = grid.index(0.05)
    step = 1 if score(grid[j + 1]) < score(grid[j]) else -1
    j += step == 1
    while 0 <= j + step < len(grid) and score(grid[j + step]) < score(grid[j]):
        j += step
    return grid[j], scores


@pytest.mark.parametrize(
    ("cls", "settings"),
    [
        (mfkit.SGD, {"factors": 6, "epochs": 12}),
        (mfkit.SGD, {"factors": 6, "epochs": 12, "implicit_feedback": True}),
        (mfkit.ALS, {"factors": 6, "epochs": 6}),
    ],
)
def test_choice_is_the_documented_rule(cls, settings) -> None:
    X = ratings(1)
    model = cls(**settings, random_state=7).fit(X)
    lam, scores = rule_by_hand(cls, settings, X, 7)
    assert model.regularization_ == lam
    assert len(model.regularization_scores_) == len(scores)
    for a, sa in model.regularization_scores_:
        assert sa == pytest.approx(scores[a], rel=1e-9)
    # the fit after the choice is the fit given the chosen value
    direct = cls(**settings, regularization=lam, random_state=7).fit(X)
    assert np.array_equal(direct.user_factors_, model.user_factors_)
    assert np.array_equal(direct.item_biases_, model.item_biases_)
    assert direct.regularization_ == lam and direct.regularization_scores_ is None


@pytest.mark.parametrize("cls", [mfkit.SGD, mfkit.ALS])
def test_choice_reproducible_for_any_threads_and_dtype(cls) -> None:
    X = ratings(2)
    fits = [
        cls(factors=6, epochs=6, random_state=3, n_threads=t, dtype=dt).fit(X)
        for t, dt in ((1, "float32"), (2, "float32"), (3, "float32"), (2, "float64"))
    ]
    for m in fits[1:]:
        assert m.regularization_ == fits[0].regularization_
        assert m.regularization_scores_ == fits[0].regularization_scores_
    for m in fits[1:3]:
        assert np.array_equal(m.user_factors_, fits[0].user_factors_)
    gen = [
        cls(factors=6, epochs=6, random_state=np.random.default_rng(3)).fit(X).regularization_
        for _ in range(2)
    ]
    assert gen[0] == gen[1]


@pytest.mark.parametrize("cls", [mfkit.SGD, mfkit.ALS])
def test_more_noise_asks_for_more_regularization(cls) -> None:
    """Known answer by construction: the same low-rank truth observed with little and with
    much noise; the weight that predicts held-out ratings best grows with the noise, and the
    rule follows (and beats the fixed 0.05 where 0.05 is far off)."""
    chosen = {}
    for noise in (0.1, 1.5):
        X = ratings(4, 300, 200, 12_000, noise=noise)
        chosen[noise] = cls(factors=8, epochs=15, random_state=0).fit(X).regularization_
    assert chosen[1.5] > chosen[0.1]


def test_loaded_model_keeps_the_choice(tmp_path) -> None:
    X = ratings(5)
    m = mfkit.ALS(factors=4, epochs=4, random_state=0).fit(X)
    m.save(tmp_path / "m.npz")
    back = mfkit.load(tmp_path / "m.npz")
    assert back.regularization == "auto" and back.regularization_ == m.regularization_
    assert back.regularization_scores_ == [list(s) for s in m.regularization_scores_]
    new = X.subset(np.arange(30))
    a, b = m.fold_in(new), back.fold_in(new)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)


def test_prior_regularization_fits_every_value_from_the_prior() -> None:
    X = ratings(6)
    base = mfkit.SGD(factors=4, epochs=5, regularization=0.05, random_state=0).fit(X)
    m = mfkit.SGD(factors=4, epochs=5, prior_regularization=0.1, random_state=0)
    m.fit(X, init=base)
    assert m.regularization_ in [lam for lam, _ in m.regularization_scores_]
    with pytest.raises(ValueError, match="needs prior factors"):
        mfkit.SGD(factors=4, epochs=2, prior_regularization=0.1).fit(X)


@pytest.mark.parametrize("cls", [mfkit.SGD, mfkit.ALS])
def test_bad_values_named(cls) -> None:
    X = ratings(7)
    with pytest.raises(ValueError, match="regularization"):
        cls(regularization="best").fit(X)
    with pytest.raises(ValueError, match="regularization"):
        cls(regularization=-1.0).fit(X)


def test_grid_constants_are_documented_values() -> None:
    assert _autoreg.AUTO_GRID == tuple(sorted(_autoreg.AUTO_GRID))
    assert 0.05 in _autoreg.AUTO_GRID  # the old fixed default stays a candidate


def test_float32_and_float64_fits_start_from_the_same_draws() -> None:
    """The initial factors are float64 normal draws (in blocks of rows, one stream) cast to
    the dtype: checked against NumPy's own draw, over more rows than one block."""
    from mfkit.models import _state

    X = ratings(8, n_users=_state.DRAW_ROWS + 5, n_items=30, n=_state.DRAW_ROWS + 5)
    starts = [
        mfkit.SGD(factors=3, epochs=0, regularization=0.05, random_state=4, dtype=dt).fit(X)
        for dt in ("float32", "float64")
    ]
    g = np.random.default_rng(4)
    P = g.standard_normal((X.n_users, 3)) * 0.1
    P[np.diff(X.indptr) == 0] = 0
    np.testing.assert_array_equal(starts[1].user_factors_, P)
    np.testing.assert_array_equal(
        starts[0].user_factors_, (P / 0.1).astype(np.float32) * np.float32(0.1)
    )


def test_ctrl_c_during_the_choice_stops_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    X = ratings(9)
    real = mfkit.ALS._score_arrays
    calls = {"n": 0}

    def score(self, *a):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *a)

    monkeypatch.setattr(mfkit.ALS, "_score_arrays", score)
    m = mfkit.ALS(factors=3, epochs=3, random_state=0)
    with pytest.warns(UserWarning, match="interrupted"), pytest.raises(KeyboardInterrupt):
        m.fit(X)
    with pytest.raises(mfkit.NotFittedError):
        m.predict(0, 0)
