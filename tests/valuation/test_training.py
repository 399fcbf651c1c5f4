"""fit_model / FittedModel / cross_validate on synthetic listings."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.valuation.model_configs import small_lgbm_config
from valuation.estimators import EstimatorNotAllowed
from valuation.metrics import METRIC_NAMES, regression_metrics
from valuation.model_runtime.features import frame_columns
from valuation.model_runtime.fitted import FittedModel
from valuation.model_runtime.schema import FEATURES, TARGET
from valuation.synthetic import generate_frame
from valuation.training import cross_validate, fit_model


@pytest.fixture(scope="module")
def holdout():
    frame = generate_frame(300, seed=11)
    return frame_columns(frame[list(FEATURES)]), frame[TARGET].to_numpy(dtype=np.float64)


@pytest.mark.parametrize(
    "cfg",
    [
        small_lgbm_config(),
        small_lgbm_config(feature_params={"similar_weight": 0.4}),
        small_lgbm_config(target_transform="sqrt"),
        {"name": "b", "estimator": "gbr", "features": "raw", "target_transform": "none",
         "params": {"n_estimators": 60, "max_depth": 3, "loss": "absolute_error", "random_state": 0}},
        {"name": "g", "estimator": "gbr", "features": "engineered", "target_transform": "log",
         "feature_params": {"unknown_value": -1.0, "similar_weight": 0.4},
         "params": {"n_estimators": 60, "max_depth": 3, "random_state": 0}},
        {"name": "h", "estimator": "hgb", "features": "engineered", "target_transform": "log",
         "params": {"max_iter": 60, "random_state": 0}},
    ],
    ids=["lgbm-log", "lgbm-similar", "lgbm-sqrt", "gbr-raw", "gbr-engineered", "hgb"],
)
def test_fitted_model_beats_the_mean(cfg, features, prices, holdout):
    fitted = fit_model(OmegaConf.create(cfg), features, prices)
    assert isinstance(fitted, FittedModel)
    columns, truth = holdout
    predicted = fitted.predict_columns(columns)
    assert predicted.shape == truth.shape and np.isfinite(predicted).all()
    assert (predicted >= 0).all()
    mean_rmse = regression_metrics(truth, np.full_like(truth, prices.mean()))["rmse"]
    assert regression_metrics(truth, predicted)["rmse"] < 0.8 * mean_rmse


def test_predictions_are_clipped_at_zero(features, prices):
    cfg = {"name": "r", "estimator": "lightgbm", "features": "engineered",
           "target_transform": "none", "params": {"n_estimators": 5, "verbose": -1}}
    fitted = fit_model(cfg, features, prices)

    class Negative:  # an estimator that predicts below zero, as a raw-target model can
        def predict(self, matrix):
            return np.full(len(matrix), -50.0)

    fitted.estimator = Negative()
    assert (fitted.predict_columns(frame_columns(features.iloc[:3])) == 0).all()


def test_cross_validate_reports_every_fold(features, prices):
    calls = []
    folds = cross_validate(small_lgbm_config(), features, prices, folds=3, seed=0,
                           on_fold=lambda i, k, m: calls.append((i, k, m["rmse"])))
    assert len(folds) == 3
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    for fold, call in zip(folds, calls, strict=True):
        assert set(fold) == set(METRIC_NAMES)
        assert all(np.isfinite(v) for v in fold.values())
        assert fold["rmse"] == call[2]


def test_config_errors_are_clear(features, prices):
    with pytest.raises(ValueError, match="target_transform"):
        fit_model(small_lgbm_config(target_transform="cube"), features, prices)
    with pytest.raises(EstimatorNotAllowed):
        fit_model(small_lgbm_config(estimator="sklearn.svm.SVR"), features, prices)
    with pytest.raises(ValueError, match="positive prices"):
        fit_model(small_lgbm_config(), features, np.where(prices > 0, prices, 1.0) * 0.0)
    with pytest.raises(ValueError, match="at least 2 folds"):
        cross_validate(small_lgbm_config(), features, prices, folds=1, seed=0)


def test_similar_listings_blend_is_geometric(features, prices, holdout):
    fitted = fit_model(small_lgbm_config(feature_params={"similar_weight": 0.4}), features, prices)
    columns, _ = holdout
    estimator_price = np.exp(fitted.estimator.predict(fitted.encoder.transform(columns)))
    neighbour_price = np.exp(fitted.encoder.similar_log_price(columns))
    np.testing.assert_allclose(fitted.predict_columns(columns),
                               estimator_price**0.6 * neighbour_price**0.4, rtol=1e-9)
