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
    load_estimator,
    resolve_estimator,
    save_estimator,
)


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
    with pytest.raises(EstimatorNotAllowed):
        load_estimator(tmp_path)


def test_small_lightgbm_batches_predict_the_same_on_one_thread(tmp_path) -> None:
    from valuation.training import SINGLE_THREAD_MAX_ROWS, _predict_small_batches_single_threaded

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
