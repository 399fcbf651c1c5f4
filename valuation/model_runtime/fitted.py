"""A fitted model as the pyfunc runs it: feature encoder, estimator and target transform."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .features import FeatureEncoder

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


def check_transform(name: str) -> None:
    if name not in TARGET_TRANSFORMS:
        raise ValueError(
            f"unknown target_transform {name!r}; choose one of {', '.join(TARGET_TRANSFORMS)}"
        )


@dataclass(frozen=True)
class PriceParts:
    """How a price is made, per row: the estimator's matrix and raw output (`estimate`, in the
    target transform's space), its price in log UF, the similar listings' log price (None when the
    model does not blend) and the final log price (the blend; the price is exp of it, floored at
    MIN_PRICE_FOR_BLEND UF for a raw-target estimator that predicts <= 1 UF)."""

    matrix: np.ndarray
    estimate: np.ndarray
    model_log_price: np.ndarray
    similar_log_price: np.ndarray | None
    log_price: np.ndarray
    price: np.ndarray  # what predict_columns answers


@dataclass
class FittedModel:
    """Everything needed to price validated rows; stored by model_runtime.bundle without pickle."""

    encoder: FeatureEncoder
    estimator: Any  # a fitted allowlisted estimator, or a lightgbm.Booster after loading
    target_transform: str

    def __post_init__(self) -> None:
        check_transform(self.target_transform)

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

    def price_parts(self, columns: Mapping[str, np.ndarray]) -> PriceParts:
        """The parts `predict_columns` combines, kept apart for intervals and explanations (the
        plain path does not build them)."""
        matrix = self.encoder.transform(columns)
        raw = np.asarray(self._estimate(matrix), dtype=np.float64).reshape(-1)
        prices = TARGET_TRANSFORMS[self.target_transform][1](raw)
        model_log = np.log(np.maximum(prices, MIN_PRICE_FOR_BLEND))
        weight = self.encoder.similar_weight
        similar_log = self.encoder.similar_log_price(columns) if weight > 0 else None
        if similar_log is not None:
            log_price = (1.0 - weight) * model_log + weight * similar_log
            prices = np.exp(log_price)
        else:
            log_price = model_log
        return PriceParts(matrix=matrix, estimate=raw, model_log_price=model_log,
                          similar_log_price=similar_log, log_price=log_price,
                          price=np.clip(prices, 0.0, None))

    def _estimate(self, matrix: np.ndarray) -> np.ndarray:
        return _predict_small_batches_single_threaded(self.estimator, matrix)


SINGLE_THREAD_MAX_ROWS = 512


def _predict_small_batches_single_threaded(estimator: Any, matrix: np.ndarray) -> np.ndarray:
    # LightGBM's thread pool costs more than it saves on a few rows, and far more when the CPU is
    # shared (measured: single-row p50 10 ms -> 1.5 ms under load); large batches keep all threads.
    if hasattr(estimator, "feature_importance") and len(matrix) <= SINGLE_THREAD_MAX_ROWS:
        return estimator.predict(matrix, num_threads=1)
    return estimator.predict(matrix)
