"""Price intervals with a stated coverage: conformal calibration shipped inside the model.

The calibration is fitted at training time (valuation.calibration) on out-of-fold residuals in log
price, r = log(actual) - log(predicted), so every residual comes from a model that never saw the
row. A conformity score is r / sigma(x), where sigma is an error model's estimate of |r| for the
row ("normalized" conformal; sigma = 1 is plain split-conformal with one width in log price). For
a level L the interval is

    [price * exp(sigma * q_lo), price * exp(sigma * q_hi)]

with q_lo, q_hi the (1-L)/2 and (1+L)/2 conformal quantiles of the stored scores (finite-sample
corrected), taken per sector ("Mondrian") when the method says so and the sector had enough
calibration rows. Signed quantiles let the interval lean where the model is biased.

Stored as JSON + npz + the error model as LightGBM text: no pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fitted import FittedModel, PriceParts

METHODS = ("constant", "mondrian", "normalized", "normalized_mondrian")
CALIBRATION_FILE = "calibration.json"
SCORES_FILE = "scores.npz"
ERROR_MODEL_FILE = "error_model.txt"
GLOBAL_SCORES = "global"
MIN_LEVEL, MAX_LEVEL = 0.5, 0.99
# Error-model inputs added to the estimator's matrix: how far the estimator and the similar
# listings disagree, how far the nearest training listing is, and the price level.
ERROR_EXTRA_FEATURES = ("blend_disagreement", "nearest_listing_distance", "log_price")


def error_features(fitted: FittedModel, columns: Mapping[str, np.ndarray], parts: PriceParts) -> np.ndarray:
    """The error model's matrix for these rows (the same at calibration and at inference)."""
    n_rows = len(parts.log_price)
    extra = np.zeros((n_rows, len(ERROR_EXTRA_FEATURES)), dtype=np.float64)
    similar = fitted.encoder.similar
    if parts.similar_log_price is not None and similar is not None:
        extra[:, 0] = np.abs(parts.model_log_price - parts.similar_log_price)
        extra[:, 1] = similar.nearest_distance(columns)
    extra[:, 2] = parts.log_price
    return np.hstack([parts.matrix, extra])


def check_level(level: float) -> float:
    level = float(level)
    if not (MIN_LEVEL <= level <= MAX_LEVEL) or math.isnan(level):
        raise ValueError(f"interval level must be between {MIN_LEVEL} and {MAX_LEVEL}, got {level}")
    return level


def conformal_quantiles(sorted_scores: np.ndarray, level: float) -> tuple[float, float]:
    """(q_lo, q_hi) of sorted scores for a central interval of `level`, with the (n + 1)
    finite-sample correction of split conformal prediction (each tail gets (1 - level) / 2)."""
    n = len(sorted_scores)
    tail = (1.0 - level) / 2.0
    hi = min(n - 1, math.ceil((n + 1) * (1.0 - tail)) - 1)
    lo = max(0, math.floor((n + 1) * tail) - 1)
    return float(sorted_scores[lo]), float(sorted_scores[hi])


@dataclass
class IntervalCalibration:
    """Sorted conformity scores (global, and per sector for Mondrian methods), the error model
    (a lightgbm.Booster, for normalized methods) and the floor put under its sigma."""

    method: str
    scores: np.ndarray
    sector_scores: dict[str, np.ndarray] = field(default_factory=dict)
    error_model: object | None = None
    sigma_floor: float = 1e-3
    # Plain split-conformal scores (raw log residuals), kept so that evaluation can show what the
    # adaptive method gains over one constant width.
    baseline_scores: np.ndarray | None = None
    report: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown interval method {self.method!r}; known: {', '.join(METHODS)}")
        if self.method.startswith("normalized") and self.error_model is None:
            raise ValueError(f"interval method {self.method!r} needs an error model")

    def sigma(self, fitted: FittedModel, columns: Mapping[str, np.ndarray], parts: PriceParts) -> np.ndarray:
        if not self.method.startswith("normalized"):
            return np.ones(len(parts.log_price))
        features = error_features(fitted, columns, parts)
        estimate = self.error_model.predict(features, num_threads=1 if len(features) <= 512 else 0)
        return np.maximum(np.asarray(estimate, dtype=np.float64), self.sigma_floor)

    def bounds(self, fitted: FittedModel, columns: Mapping[str, np.ndarray], parts: PriceParts,
               level: float) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) in UF for each row; the point price always lies inside."""
        level = check_level(level)
        sigma = self.sigma(fitted, columns, parts)
        q_lo = np.empty(len(sigma))
        q_hi = np.empty(len(sigma))
        overall = conformal_quantiles(self.scores, level)
        if self.sector_scores:
            cache: dict[str, tuple[float, float]] = {}
            for row, sector in enumerate(columns["sector"].tolist()):
                if sector not in cache:
                    scores = self.sector_scores.get(sector)
                    cache[sector] = conformal_quantiles(scores, level) if scores is not None else overall
                q_lo[row], q_hi[row] = cache[sector]
        else:
            q_lo[:], q_hi[:] = overall
        log_price = parts.log_price
        lower = np.exp(log_price + sigma * np.minimum(q_lo, 0.0))
        upper = np.exp(log_price + sigma * np.maximum(q_hi, 0.0))
        return lower, upper

    # --- storage ---------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {GLOBAL_SCORES: self.scores,
                  **{f"sector:{name}": values for name, values in self.sector_scores.items()}}
        if self.baseline_scores is not None:
            arrays["baseline"] = self.baseline_scores
        np.savez(directory / SCORES_FILE, **arrays)
        if self.error_model is not None:
            booster = getattr(self.error_model, "booster_", self.error_model)
            booster.save_model(str(directory / ERROR_MODEL_FILE))
        meta = {"method": self.method, "sigma_floor": self.sigma_floor,
                "sectors": sorted(self.sector_scores), "error_model": self.error_model is not None,
                "error_features": list(ERROR_EXTRA_FEATURES), "report": self.report}
        (directory / CALIBRATION_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> IntervalCalibration:
        meta = json.loads((directory / CALIBRATION_FILE).read_text())
        with np.load(directory / SCORES_FILE, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        error_model = None
        if meta["error_model"]:
            import lightgbm

            error_model = lightgbm.Booster(model_file=str(directory / ERROR_MODEL_FILE))
        return cls(
            method=meta["method"],
            scores=arrays[GLOBAL_SCORES],
            sector_scores={name: arrays[f"sector:{name}"] for name in meta["sectors"]},
            error_model=error_model,
            sigma_floor=float(meta["sigma_floor"]),
            baseline_scores=arrays.get("baseline"),
            report=meta.get("report", {}),
        )
