"""The contract every mfkit estimator keeps (scikit-learn's estimator checks, mfkit's own).

A new model joins by adding one line to ``MODELS``: its class and the (fast) settings the checks
fit it with. Every check runs for every model; the few that judge predicted ratings ask the
model's ``predicts_ratings`` (False for ImplicitALS and BPR, which score preferences) and check a
preference model's own equivalent instead."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mfkit
from mfkit.model_selection import clone
from mfkit.models import FactorModel
from tests.conftest import awkward_ratings, hidden_low_rank

#: (model class, settings for a quick fit); add a line per estimator
MODELS: list[tuple[type[FactorModel], dict[str, Any]]] = [
    (mfkit.SGD, {"factors": 4, "epochs": 4}),
    (mfkit.SGD, {"factors": 4, "epochs": 4, "blocks": 4}),  # the block-parallel path
    (mfkit.SGD, {"factors": 4, "epochs": 4, "order": "rows"}),  # each user's ratings in a row
    (mfkit.SGD, {"factors": 4, "epochs": 4, "order": "rows", "blocks": 4}),
    (mfkit.ALS, {"factors": 4, "epochs": 3}),
    (mfkit.ALS, {"factors": 4, "epochs": 3, "solver": "cg"}),
    (mfkit.SGD, {"factors": 4, "epochs": 4, "implicit_feedback": True}),  # SVD++
    (mfkit.SGD, {"factors": 4, "epochs": 4, "regularization": 0.05}),  # a fixed weight
    (mfkit.ALS, {"factors": 4, "epochs": 3, "regularization": 0.05}),
    (mfkit.ImplicitALS, {"factors": 4, "epochs": 3}),
    (mfkit.ImplicitALS, {"factors": 4, "epochs": 3, "solver": "cholesky"}),
    (mfkit.BPR, {"factors": 4, "epochs": 3}),
    (mfkit.BPR, {"factors": 4, "epochs": 3, "blocks": 3}),  # the block-parallel path
    (mfkit.BayesianMF, {"factors": 4, "epochs": 6}),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for cls, kw in MODELS]
parametrize = pytest.mark.parametrize("cls,settings", MODELS, ids=IDS)


def models_with(param: str) -> Any:
    """The MODELS whose constructor has ``param`` (a check of early stopping runs for the
    models that offer it; a Gibbs sampler has no patience)."""
    chosen = [(m, i) for m, i in zip(MODELS, IDS, strict=True) if param in m[0]._get_param_names()]
    return pytest.mark.parametrize(
        "cls,settings", [m for m, _ in chosen], ids=[i for _, i in chosen]
    )


def make(cls: type[FactorModel], settings: dict[str, Any], **more: Any) -> FactorModel:
    return cls(**{**settings, "random_state": 0, **more})


def data(seed: int = 0, n_users: int = 60, n_items: int = 40) -> mfkit.Ratings:
    u, i, r, _ = hidden_low_rank(seed, n_users, n_items, 900)
    users = np.array([f"u{j:03d}" for j in u])  # string ids, so maps are exercised
    return mfkit.Ratings.from_triplets(users, i + 100, np.clip(r, 1, 5))


def public_fitted_attributes(model: FactorModel) -> dict[str, Any]:
    """Every public attribute that ends in ``_`` (the learned state) and can be read."""
    out = {}
    for name in dir(model):
        if name.endswith("_") and not name.startswith("_"):
            out[name] = getattr(model, name)
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if a is None or b is None:
            return a is b
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(a == b)


# ----------------------------------------------------------------------------- parameters
@parametrize
def test_constructor_stores_parameters_unchanged(cls: type, settings: dict) -> None:
    sig = inspect.signature(cls.__init__)
    defaults = {p.name: p.default for p in sig.parameters.values() if p.name != "self"}
    m = cls()
    assert m.get_params() == defaults
    # odd values are stored as given: checking happens in fit, as in scikit-learn
    odd = {name: object() for name in defaults}
    m = cls(**odd)
    assert all(m.get_params()[name] is odd[name] for name in defaults)


@parametrize
def test_get_set_params_and_clone(cls: type, settings: dict) -> None:
    m = make(cls, settings)
    assert m.set_params(factors=3) is m and m.get_params()["factors"] == 3
    with pytest.raises(ValueError, match="no parameter 'no_such'"):
        m.set_params(no_such=1)
    fitted = m.fit(data())
    c = clone(fitted)
    assert type(c) is cls and c.get_params() == fitted.get_params() and c is not fitted
    assert not hasattr(c, "user_factors_")
    assert repr(cls()) == f"{cls.__name__}()"
    assert "factors=3" in repr(m)


@parametrize
def test_not_fitted_errors(cls: type, settings: dict, tmp_path: Path) -> None:
    m = make(cls, settings)
    calls = [
        lambda: m.predict([0], [0]),
        lambda: m.recommend(0),
        lambda: m.similar_items(0),
        lambda: m.fold_in(data()),
        lambda: m.save(tmp_path / "m.npz"),
        lambda: m.user_factors_,
        lambda: m.history_,
        lambda: m.n_users,
    ]
    for call in calls:
        with pytest.raises(mfkit.NotFittedError, match="not fitted yet"):
            call()
    assert not hasattr(m, "user_factors")  # NotFittedError is an AttributeError


BAD_PARAMETERS = [
    ({"factors": 0}, ValueError, "factors"),
    ({"factors": 2.5}, TypeError, "factors"),
    ({"epochs": -1}, ValueError, "epochs"),
    ({"regularization": -1.0}, ValueError, "regularization"),
    ({"dtype": "int8"}, (TypeError, ValueError), "dtype"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"random_state": "seed"}, TypeError, "random_state"),
    ({"biases": "yes"}, TypeError, "biases"),
    ({"patience": 0}, ValueError, "patience"),
]


@pytest.mark.parametrize(
    "cls,settings,bad,exc,words",
    [
        (cls, settings, *case)
        for cls, settings in MODELS
        for case in BAD_PARAMETERS
        if set(case[0]) <= set(cls._get_param_names())  # each model's own parameters
    ],
)
def test_bad_parameters_are_named(
    cls: type, settings: dict, bad: dict, exc: type | tuple, words: str
) -> None:
    (name,) = bad
    if name not in cls._get_param_names():  # e.g. ImplicitALS has no biases
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
            make(cls, settings, **bad)
        return
    with pytest.raises(exc, match=words):
        make(cls, settings, **bad).fit(data())


# ----------------------------------------------------------------------------- prediction
@parametrize
def test_unknown_ids_under_each_mode(cls: type, settings: dict) -> None:
    m = make(cls, settings).fit(data())
    known_u, known_i = m.user_ids_[0], m.item_ids_[0]
    with pytest.raises(ValueError, match="not seen in training"):
        m.predict(["nobody"], [known_i])
    with pytest.raises(ValueError, match="not seen in training"):
        m.predict([known_u], [-5])
    base = m.predict(["nobody", known_u, "nobody"], [known_i, -5, -5], unknown="baseline")
    mu = m.global_mean_
    np.testing.assert_allclose(base[0], mu + float(m.item_biases_[0]), rtol=1e-6)
    np.testing.assert_allclose(base[1], mu + float(m.user_biases_[0]), rtol=1e-6)
    assert base[2] == mu
    nan = m.predict(["nobody", known_u], [known_i, known_i], unknown="nan")
    assert math.isnan(nan[0]) and nan[1] == m.predict(known_u, known_i)
    with pytest.raises(ValueError, match="unknown"):
        m.predict([known_u], [known_i], unknown="zero")


@parametrize
def test_recommend_scores_equal_predict(cls: type, settings: dict) -> None:
    X = data()
    m = make(cls, settings).fit(X)
    users = m.user_ids_[:5]
    items, scores = m.recommend(users, n=7)
    for row, u in enumerate(users):
        ok = items[row] != ""
        got = m.predict(np.repeat(u, ok.sum()), items[row][ok])
        assert got.tobytes() == scores[row][ok].tobytes()
        assert np.all(np.diff(scores[row][ok]) <= 0)


# ----------------------------------------------------------------------------- training
@models_with("patience")
def test_early_stopping_restores_the_best_epoch(cls: type, settings: dict) -> None:
    X = data(1)
    train = X.subset(np.arange(X.nnz) % 5 != 0)
    val = X.subset(np.arange(X.nnz) % 5 == 0)
    snapshots: dict[int, bytes] = {}

    def keep(model: FactorModel, record: dict) -> None:
        snapshots[int(record["epoch"])] = model.user_factors_.tobytes()

    # tol larger than any gain: the first epoch stays best, the fit stops after patience more
    m = make(cls, settings, epochs=10, patience=2, tol=100.0)
    m.fit(train, validation=val, callback=keep)
    assert m.stop_reason_ == "early_stopping" and m.best_epoch_ == 1
    assert len(m.history_["epoch"]) == 3
    assert m.user_factors_.tobytes() == snapshots[1]
    # running out of epochs with patience set also ends on the best epoch (a regression test:
    # best_epoch_ used to name an epoch that was never restored)
    m = make(cls, settings, epochs=3, patience=5, tol=100.0)
    snapshots.clear()
    m.fit(train, validation=val, callback=keep)
    assert m.stop_reason_ == "epochs" and m.best_epoch_ == 1
    assert m.user_factors_.tobytes() == snapshots[1]
    # and so does a callback that stops training
    snapshots.clear()
    m = make(cls, settings, epochs=6, patience=5, tol=100.0)
    m.fit(train, validation=val, callback=lambda mm, r: keep(mm, r) or r["epoch"] < 3)
    assert m.stop_reason_ == "callback" and m.best_epoch_ == 1
    assert m.user_factors_.tobytes() == snapshots[1]
    # without patience nothing is chosen on validation
    m = make(cls, settings).fit(train, validation=val)
    assert m.best_epoch_ is None and m.stop_reason_ == "epochs"


@parametrize
def test_divergence_keeps_the_last_good_state(
    cls: type, settings: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cls._trainer
    snapshots: dict[int, bytes] = {}

    def poisoned(self: FactorModel, *args: Any) -> Any:
        trainer = real(self, *args)
        run = trainer.run_epoch

        def run_epoch(epoch: int) -> tuple[float, bool]:
            out = run(epoch)
            if epoch == 3:
                trainer.state.P[0, 0] = np.nan  # a factor turns NaN in epoch 3
            return out

        trainer.run_epoch = run_epoch
        return trainer

    monkeypatch.setattr(cls, "_trainer", poisoned)
    m = make(cls, settings, epochs=5)
    with pytest.raises(mfkit.DivergenceError, match="epoch 3"):
        m.fit(
            data(),
            callback=lambda mm, r: snapshots.update({int(r["epoch"]): mm.user_factors_.tobytes()}),
        )
    assert m.stop_reason_ == "diverged" and len(m.history_["epoch"]) == 2
    assert m.user_factors_.tobytes() == snapshots[2]
    assert np.all(np.isfinite(m.predict(m.user_ids_[:3], m.item_ids_[:3])))


@parametrize
def test_bit_identical_for_any_thread_count(cls: type, settings: dict) -> None:
    X = awkward_ratings(3)
    runs = [make(cls, settings, n_threads=t).fit(X) for t in (1, 2, 3)]
    for m in runs[1:]:
        for name in ("user_factors_", "item_factors_", "user_biases_", "item_biases_"):
            assert getattr(m, name).tobytes() == getattr(runs[0], name).tobytes(), name
        for key, values in runs[0].history_.items():
            if key != "seconds":
                assert same(m.history_[key], values), key


@parametrize
def test_float32_and_float64(cls: type, settings: dict) -> None:
    X = data(2)
    m32 = make(cls, settings, dtype="float32").fit(X)
    m64 = make(cls, settings, dtype=np.float64).fit(X)
    assert m32.user_factors_.dtype == np.float32 and m64.user_factors_.dtype == np.float64
    u, i, r = X.to_triplets(original_ids=True)
    p32, p64 = m32.predict(u, i), m64.predict(u, i)
    assert p32.dtype == p64.dtype == np.float64
    if not cls.predicts_ratings:
        # preference scores: both lower the training objective, to about the same value
        key = cls._train_key
        l32, l64 = m32.history_[key], m64.history_[key]
        assert l32[-1] < l32[0] and l64[-1] < l64[0]
        assert abs(l32[-1] - l64[-1]) < 0.1 * l64[-1]
        return
    # both learn (the initial draws differ by dtype, so the fits are alike, not equal)
    rmse32, rmse64 = (float(np.sqrt(np.mean((p - r) ** 2))) for p in (p32, p64))
    assert max(rmse32, rmse64) < 0.9 * float(np.std(r))
    assert abs(rmse32 - rmse64) < 0.1 * rmse64


# ----------------------------------------------------------------------------- persistence
@parametrize
def test_save_load_restores_every_public_attribute(
    cls: type, settings: dict, tmp_path: Path
) -> None:
    X = data(4)
    val = data(5)
    # with early stopping where the model has it, so best_epoch_ is set and round-trips
    stopping = {"patience": 1, "tol": 100.0} if "patience" in cls._get_param_names() else {}
    m = make(cls, settings, epochs=6, **stopping).fit(X, validation=val)
    m.save(tmp_path / "m.npz")
    loaded = mfkit.load(tmp_path / "m.npz")
    assert type(loaded) is cls and loaded.get_params() == m.get_params()
    want, got = public_fitted_attributes(m), public_fitted_attributes(loaded)
    assert want.keys() == got.keys()
    for name, value in want.items():
        assert same(got[name], value), name
    u, i, _ = X.to_triplets(original_ids=True)
    assert loaded.predict(u, i).tobytes() == m.predict(u, i).tobytes()
    a, b = m.recommend(m.user_ids_[:4], n=5), loaded.recommend(m.user_ids_[:4], n=5)
    assert np.array_equal(a[0], b[0]) and a[1].tobytes() == b[1].tobytes()
