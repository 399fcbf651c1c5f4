"""The estimator allowlist: nothing outside it is built, imported or loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from valuation.estimators import (
    ESTIMATORS,
    EstimatorNotAllowed,
    InvalidEstimatorParams,
    allowed_params,
    build_estimator,
    resolve_estimator,
)
from valuation.model_runtime.storage import STORED_ESTIMATOR_KEYS, load_estimator, save_estimator


@pytest.mark.parametrize(
    ("module", "class_name"),
    [
        ("os", "system"),
        ("subprocess", "Popen"),
        ("builtins", "eval"),
        ("sklearn.ensemble.os", "system"),
        ("sklearn.ensemble", "os.system"),
        ("sklearn.ensemble", "__class__"),
        ("sklearn.linear_model", "LinearRegression"),  # a real regressor, but not on the list
    ],
)
def test_module_class_pairs_outside_the_allowlist_are_refused(module: str, class_name: str) -> None:
    with pytest.raises(EstimatorNotAllowed, match="not allowed"):
        resolve_estimator(module, class_name)


def test_the_specs_example_resolves_to_the_gbr_group() -> None:
    spec = resolve_estimator("sklearn.ensemble", "GradientBoostingRegressor")
    assert spec.key == "gbr"
    assert spec.model_group == "gbr"


def test_unknown_key_is_refused() -> None:
    with pytest.raises(EstimatorNotAllowed, match="'xgboost' is not allowed"):
        build_estimator("xgboost", {})


@pytest.mark.parametrize(
    "params",
    [
        {"init": "zero"},  # an object-valued parameter
        {"no_such_param": 1},
        {"learning_rate": print},
        {"learning_rate": {"nested": 1}},
        {"learning_rate": [0.1]},
        {"learning_rate": float("nan")},
    ],
)
def test_bad_params_are_refused(params: dict) -> None:
    with pytest.raises(InvalidEstimatorParams):
        build_estimator("gbr", params)


def test_params_are_applied() -> None:
    estimator = build_estimator("gbr", {"learning_rate": 0.05, "n_estimators": 7, "loss": "absolute_error"})
    assert estimator.get_params()["n_estimators"] == 7
    assert estimator.get_params()["loss"] == "absolute_error"
    assert "init" not in allowed_params("gbr")


@pytest.mark.parametrize("key", sorted(ESTIMATORS))
def test_storage_round_trip_gives_identical_predictions(key: str, tmp_path) -> None:
    rng = np.random.default_rng(0)
    features = rng.random((120, 3))
    target = features @ np.array([3.0, 1.0, 2.0]) + rng.normal(0, 0.1, 120)
    params = {"n_estimators": 10} if key != "hgb" else {"max_iter": 10}
    if key == "lightgbm":
        params["verbose"] = -1
    estimator = build_estimator(key, params).fit(features, target)
    save_estimator(estimator, tmp_path, key)
    assert not list(tmp_path.glob("*.pkl"))
    loaded = load_estimator(tmp_path)
    np.testing.assert_allclose(loaded.predict(features), estimator.predict(features))


def test_a_stored_estimator_with_a_key_outside_the_allowlist_is_not_loaded(tmp_path) -> None:
    (tmp_path / "estimator.json").write_text(json.dumps({"key": "evil", "format": "skops"}))
    with pytest.raises(ValueError, match="unknown estimator 'evil'"):
        load_estimator(tmp_path)


def test_the_model_package_loads_every_allowlisted_estimator() -> None:
    assert set(ESTIMATORS) == STORED_ESTIMATOR_KEYS


def test_small_lightgbm_batches_predict_the_same_on_one_thread(tmp_path) -> None:
    from valuation.model_runtime.fitted import SINGLE_THREAD_MAX_ROWS, _predict_small_batches_single_threaded

    rng = np.random.default_rng(1)
    features = rng.random((SINGLE_THREAD_MAX_ROWS + 10, 3))
    target = features.sum(axis=1)
    model = build_estimator("lightgbm", {"n_estimators": 20, "verbose": -1}).fit(features, target)
    save_estimator(model, tmp_path, "lightgbm")
    booster = load_estimator(tmp_path)
    for rows in (1, SINGLE_THREAD_MAX_ROWS, SINGLE_THREAD_MAX_ROWS + 10):
        np.testing.assert_allclose(
            _predict_small_batches_single_threaded(booster, features[:rows]), booster.predict(features[:rows])
        )


class _Canary:
    """Stands for a class an attacker slips into a stored estimator: skops would rebuild it with
    `__setstate__`, so a call recorded here means the file's content was executed."""

    rebuilt: list[dict] = []

    def __setstate__(self, state: dict) -> None:
        _Canary.rebuilt.append(state)
        self.__dict__.update(state)


def test_a_stored_estimator_holding_untrusted_types_is_refused_unloaded(tmp_path) -> None:
    import os

    import skops.io as sio

    rng = np.random.default_rng(0)
    estimator = build_estimator("gbr", {"n_estimators": 3}).fit(rng.random((30, 2)), rng.random(30))
    estimator.smuggled = _Canary()
    estimator.smuggled.marker = "rebuilt"
    estimator.hook = os.system  # a function outside the trusted modules (posix.system)
    estimator.opener = open  # io.open (builtins.open): a function, not a tree structure
    save_estimator(estimator, tmp_path, "gbr")
    path = tmp_path / "model.skops"
    canary_type = f"{_Canary.__module__}.{_Canary.__qualname__}"
    assert canary_type in sio.get_untrusted_types(file=path)
    _Canary.rebuilt.clear()

    with pytest.raises(ValueError, match="refusing to load untrusted types") as refused:
        load_estimator(tmp_path)

    message = str(refused.value)
    assert canary_type in message and f"{os.system.__module__}.system" in message
    assert f"{open.__module__}.open" in message
    assert str(path) in message
    assert "sklearn." not in message  # the estimator's own classes are not the problem
    assert _Canary.rebuilt == []  # refused before anything in the file was rebuilt
    # The canary is live: loading the same file with everything trusted does rebuild it.
    sio.load(path, trusted=sio.get_untrusted_types(file=path))
    assert _Canary.rebuilt == [{"marker": "rebuilt"}]
