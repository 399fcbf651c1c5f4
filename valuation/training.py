"""Fit a configured model (features + allowlisted estimator + target transform) and cross-validate it.

`model_cfg` is the Hydra `model` group node (conf/model/*.yaml): `name`, `estimator` (an allowlist
key of valuation.estimators), `features` ("raw" | "engineered"), `target_transform`
("none" | "log" | "sqrt"), `params` (estimator keyword arguments) and the optional
`feature_params` (see valuation.features.EngineeredSettings: e.g. `similar_weight`, the share of
the similar-listings k-NN price in the final log-space blend).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from valuation.estimators import build_estimator
from valuation.features import FeatureEncoder, frame_columns
from valuation.metrics import regression_metrics

# Forward and inverse maps of the price the estimator learns. A log target fits relative errors,
# which suits prices spanning two orders of magnitude; sqrt sits between log and raw.
TARGET_TRANSFORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray],
                                   Callable[[np.ndarray], np.ndarray]]] = {
    "none": (lambda y: y, lambda z: z),
    "log": (np.log, np.exp),
    "sqrt": (np.sqrt, lambda z: np.square(np.maximum(z, 0.0))),
}


# A raw-target estimator may predict <= 0; the log-space blend needs a positive price (1 UF).
MIN_PRICE_FOR_BLEND = 1.0


def _check_transform(name: str) -> None:
    if name not in TARGET_TRANSFORMS:
        raise ValueError(
            f"unknown target_transform {name!r}; choose one of {', '.join(TARGET_TRANSFORMS)}"
        )


@dataclass
class FittedModel:
    """Everything needed to price validated rows; saved by valuation.pyfunc without pickle."""

    encoder: FeatureEncoder
    estimator: Any  # a fitted allowlisted estimator, or a lightgbm.Booster after loading
    target_transform: str

    def __post_init__(self) -> None:
        _check_transform(self.target_transform)

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Prices in UF (>= 0) for validated columns (see ValidationRules.validate_frame)."""
        matrix = self.encoder.transform(columns)
        raw = np.asarray(self._estimate(matrix), dtype=np.float64).reshape(-1)
        prices = TARGET_TRANSFORMS[self.target_transform][1](raw)
        weight = self.encoder.similar_weight
        if weight > 0:
            # Geometric blend with the similar listings' k-NN price: errors of the two are
            # partly independent, so the blend beats either (weight chosen by CV).
            log_price = np.log(np.maximum(prices, MIN_PRICE_FOR_BLEND))
            prices = np.exp((1.0 - weight) * log_price + weight * self.encoder.similar_log_price(columns))
        return np.clip(prices, 0.0, None)

    def _estimate(self, matrix: np.ndarray) -> np.ndarray:
        return _predict_small_batches_single_threaded(self.estimator, matrix)


SINGLE_THREAD_MAX_ROWS = 512


def _predict_small_batches_single_threaded(estimator: Any, matrix: np.ndarray) -> np.ndarray:
    # LightGBM's thread pool costs more than it saves on a few rows, and far more when the CPU is
    # shared (measured: single-row p50 10 ms -> 1.5 ms under load); large batches keep all threads.
    if hasattr(estimator, "feature_importance") and len(matrix) <= SINGLE_THREAD_MAX_ROWS:
        return estimator.predict(matrix, num_threads=1)
    return estimator.predict(matrix)


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
    _check_transform(transform)
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
