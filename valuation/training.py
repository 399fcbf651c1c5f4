"""Fit a configured model (features + allowlisted estimator + target transform) and cross-validate it.

`model_cfg` is the Hydra `model` group node (conf/model/*.yaml): `name`, `estimator` (an allowlist
key of valuation.estimators), `features` ("raw" | "engineered"), `target_transform`
("none" | "log" | "sqrt"), `params` (estimator keyword arguments) and the optional
`feature_params` (see valuation.model_runtime.features.EngineeredSettings: e.g. `similar_weight`, the share of
the similar-listings k-NN price in the final log-space blend).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from valuation.estimators import build_estimator
from valuation.metrics import regression_metrics
from valuation.model_runtime.features import FeatureEncoder, frame_columns
from valuation.model_runtime.fitted import TARGET_TRANSFORMS, FittedModel, check_transform


def _plain(node: Any) -> dict[str, Any]:
    """A DictConfig or mapping as a plain dict (None -> {})."""
    if node is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            return dict(OmegaConf.to_container(node, resolve=True))
    except ImportError:  # omegaconf is a dependency; plain mappings work without it
        pass
    return dict(node)


def fit_model(model_cfg: Mapping[str, Any], frame: pd.DataFrame, y: np.ndarray) -> FittedModel:
    """Fit encoder and estimator on cleaned training rows `frame` (8 features) and prices `y`."""
    cfg = _plain(model_cfg)
    for key in ("estimator", "features", "target_transform"):
        if key not in cfg:
            raise ValueError(f"model config is missing '{key}'")
    transform = str(cfg["target_transform"])
    check_transform(transform)
    y = np.asarray(y, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("prices must be finite")
    if transform in ("log", "sqrt") and np.any(y <= 0):
        raise ValueError(f"target_transform '{transform}' needs positive prices; clean the data first")
    encoder = FeatureEncoder(str(cfg["features"]), _plain(cfg.get("feature_params")))
    estimator = build_estimator(str(cfg["estimator"]), _plain(cfg.get("params")))
    matrix = encoder.fit_transform(frame.reset_index(drop=True), y)
    estimator.fit(matrix, TARGET_TRANSFORMS[transform][0](y))
    return FittedModel(encoder=encoder, estimator=estimator, target_transform=transform)


def cross_validate(
    model_cfg: Mapping[str, Any],
    frame: pd.DataFrame,
    y: np.ndarray,
    folds: int,
    seed: int,
    on_fold: Callable[[int, int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """K-fold CV: per fold, fit everything (encoder included) on the other folds and score the
    held-out one. Calls ``on_fold(i, k, metrics)`` after fold i (1-based) of k."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    y = np.asarray(y, dtype=np.float64)
    frame = frame.reset_index(drop=True)
    if len(frame) < folds:
        raise ValueError(f"{len(frame)} rows cannot be split into {folds} folds")
    results: list[dict[str, float]] = []
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    for index, (fit_idx, held_idx) in enumerate(splitter.split(frame), start=1):
        fitted = fit_model(model_cfg, frame.iloc[fit_idx], y[fit_idx])
        predicted = fitted.predict_columns(frame_columns(frame.iloc[held_idx]))
        metrics = regression_metrics(y[held_idx], predicted)
        results.append(metrics)
        if on_fold is not None:
            on_fold(index, folds, metrics)
    return results
