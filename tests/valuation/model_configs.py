"""Model configurations for the training tests."""

from __future__ import annotations


def small_lgbm_config(**overrides) -> dict:
    """A quick LightGBM model config in the shape of conf/model/*.yaml."""
    cfg = {
        "name": "test-lgbm",
        "estimator": "lightgbm",
        "features": "engineered",
        "target_transform": "log",
        "params": {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 15,
                   "min_child_samples": 5, "n_jobs": 1, "verbose": -1, "random_state": 0},
    }
    cfg.update(overrides)
    return cfg
