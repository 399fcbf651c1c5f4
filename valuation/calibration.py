"""Fit the interval calibration (valuation.model_runtime.intervals) out of sample, and choose its
method by cross-validation on the training data.

1. K-fold: every training row is priced by a model (encoder, similar listings and estimator)
   fitted on the other folds; its log residual r and its error-model features are kept.
2. The error model (LightGBM on those features, target |r|) is itself cross-fitted, so each row's
   sigma comes from an error model that never saw it; the shipped error model is fitted on all rows.
3. Candidate methods (constant, mondrian, normalized, normalized_mondrian) are compared by
   calibrating on one half of the rows and measuring on the other, both ways: the narrowest
   method whose coverage at `select_level` is within `coverage_tolerance` overall and within
   `sector_tolerance` in every sector with enough rows wins (else the one closest per sector).
4. The chosen method's scores are computed on every row and stored, sorted.

MAPIE is not used: its split and cross conformal regressors would refit our estimator per fold
inside MAPIE's own loop but cannot see the similar-listings blend, which prices each row from its
neighbours among the *fit* rows only; and its normalised score fits the residual model on part of
the calibration set instead of cross-fitting it. The same arithmetic is a few lines here, and
nothing of it is needed at inference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from valuation.model_runtime.features import frame_columns
from valuation.model_runtime.intervals import (
    METHODS,
    IntervalCalibration,
    conformal_quantiles,
    error_features,
)
from valuation.training import fit_model

# Mondrian groups smaller than this use the overall scores (too few rows for a stable quantile).
MIN_SECTOR_ROWS = 100
# Sectors smaller than this in a selection half are not judged (their coverage is noise).
MIN_SECTOR_ROWS_TO_JUDGE = 50


@dataclass(frozen=True)
class OutOfFold:
    """Per training row: log residual, error-model features, log price, sector."""

    residual: np.ndarray
    features: np.ndarray
    log_price: np.ndarray
    sector: np.ndarray


def out_of_fold(model_cfg: Mapping[str, Any], frame: pd.DataFrame, y: np.ndarray, folds: int,
                seed: int, on_fold: Callable[[int, int], None] | None = None) -> OutOfFold:
    frame = frame.reset_index(drop=True)
    y = np.asarray(y, dtype=np.float64)
    residual = np.empty(len(y))
    log_price = np.empty(len(y))
    features: np.ndarray | None = None
    for index, (fit_idx, held_idx) in enumerate(
            KFold(n_splits=folds, shuffle=True, random_state=seed).split(frame), start=1):
        fitted = fit_model(model_cfg, frame.iloc[fit_idx], y[fit_idx])
        columns = frame_columns(frame.iloc[held_idx])
        parts = fitted.price_parts(columns)
        held_features = error_features(fitted, columns, parts)
        if features is None:
            features = np.empty((len(y), held_features.shape[1]))
        features[held_idx] = held_features
        log_price[held_idx] = parts.log_price
        residual[held_idx] = np.log(y[held_idx]) - parts.log_price
        if on_fold is not None:
            on_fold(index, folds)
    return OutOfFold(residual, features, log_price, frame_columns(frame)["sector"])


def _error_model(params: Mapping[str, Any], seed: int):
    import lightgbm

    return lightgbm.LGBMRegressor(**{"verbose": -1, "random_state": seed, **dict(params)})


def cross_fitted_sigma(oof: OutOfFold, params: Mapping[str, Any], folds: int, seed: int) -> np.ndarray:
    """Each row's error-model estimate of |r| from an error model fitted without it."""
    sigma = np.empty(len(oof.residual))
    target = np.abs(oof.residual)
    for fit_idx, held_idx in KFold(n_splits=folds, shuffle=True, random_state=seed + 1).split(target):
        model = _error_model(params, seed).fit(oof.features[fit_idx], target[fit_idx])
        sigma[held_idx] = model.predict(oof.features[held_idx])
    return sigma


def _calibration(method: str, scores: np.ndarray, sector: np.ndarray, **extra: Any) -> IntervalCalibration:
    sector_scores = {}
    if method.endswith("mondrian"):
        for name in np.unique(sector).tolist():
            chosen = scores[sector == name]
            if len(chosen) >= MIN_SECTOR_ROWS:
                sector_scores[name] = np.sort(chosen)
    return IntervalCalibration(method=method, scores=np.sort(scores), sector_scores=sector_scores,
                               **extra)


def _scores(method: str, oof: OutOfFold, sigma: np.ndarray) -> np.ndarray:
    return oof.residual / sigma if method.startswith("normalized") else oof.residual.copy()


def _judge(method: str, oof: OutOfFold, sigma: np.ndarray, calibrate: np.ndarray, measure: np.ndarray,
           level: float) -> dict[str, float]:
    """Calibrate `method` on rows `calibrate`, measure coverage and width on rows `measure`."""
    scores = _scores(method, oof, sigma)
    normalized = method.startswith("normalized")
    spread = sigma[measure] if normalized else np.ones(len(measure))
    overall = conformal_quantiles(np.sort(scores[calibrate]), level)
    q_lo = np.full(len(measure), min(overall[0], 0.0))
    q_hi = np.full(len(measure), max(overall[1], 0.0))
    if method.endswith("mondrian"):
        for name in np.unique(oof.sector[measure]).tolist():
            chosen = scores[calibrate][oof.sector[calibrate] == name]
            if len(chosen) >= MIN_SECTOR_ROWS // 2:
                lo, hi = conformal_quantiles(np.sort(chosen), level)
                rows = oof.sector[measure] == name
                q_lo[rows], q_hi[rows] = min(lo, 0.0), max(hi, 0.0)
    residual = oof.residual[measure]
    covered = (residual >= spread * q_lo) & (residual <= spread * q_hi)
    width = np.exp(spread * q_hi) - np.exp(spread * q_lo)  # relative to the predicted price
    deviations = [abs(covered[oof.sector[measure] == name].mean() - level)
                  for name in np.unique(oof.sector[measure]).tolist()
                  if (oof.sector[measure] == name).sum() >= MIN_SECTOR_ROWS_TO_JUDGE]
    return {"coverage": float(covered.mean()), "mean_relative_width": float(width.mean()),
            "max_sector_deviation": float(max(deviations, default=0.0))}


def select_method(oof: OutOfFold, sigma: np.ndarray, settings: Mapping[str, Any], seed: int
                  ) -> tuple[str, dict[str, dict[str, float]]]:
    level = float(settings["select_level"])
    order = np.random.default_rng(seed).permutation(len(oof.residual))
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    results: dict[str, dict[str, float]] = {}
    for method in settings["methods"]:
        if method not in METHODS:
            raise ValueError(f"intervals.methods: unknown method {method!r}; known: {', '.join(METHODS)}")
        both = [_judge(method, oof, sigma, a, b, level) for a, b in (halves, halves[::-1])]
        results[method] = {key: float(np.mean([r[key] for r in both])) for key in both[0]}
    fit = [m for m, r in results.items()
           if abs(r["coverage"] - level) <= settings["coverage_tolerance"]
           and r["max_sector_deviation"] <= settings["sector_tolerance"]]
    if fit:
        return min(fit, key=lambda m: results[m]["mean_relative_width"]), results
    return min(results, key=lambda m: results[m]["max_sector_deviation"]), results


def fit_calibration(model_cfg: Mapping[str, Any], frame: pd.DataFrame, y: np.ndarray,
                    settings: Mapping[str, Any], seed: int,
                    on_fold: Callable[[int, int], None] | None = None) -> IntervalCalibration:
    """The calibration to ship with a model fitted by `fit_model(model_cfg, frame, y)`."""
    folds = int(settings["folds"])
    if folds < 2 or len(frame) < 2 * folds:
        raise ValueError(f"interval calibration needs at least 2 folds of 2 rows; got {folds} folds "
                         f"for {len(frame)} rows (intervals.folds)")
    oof = out_of_fold(model_cfg, frame, y, folds, seed, on_fold)
    params = dict(settings["error_model"])
    sigma = cross_fitted_sigma(oof, params, folds, seed)
    floor = float(max(np.quantile(np.abs(oof.residual), 0.02), 1e-3))
    sigma = np.maximum(sigma, floor)
    method, results = select_method(oof, sigma, settings, seed)
    error_model = None
    if method.startswith("normalized"):
        error_model = _error_model(params, seed).fit(oof.features, np.abs(oof.residual)).booster_
    report = {"chosen": method, "select_level": float(settings["select_level"]),
              "rows": len(oof.residual), "candidates": results}
    return _calibration(method, _scores(method, oof, sigma), oof.sector, error_model=error_model,
                        sigma_floor=floor, baseline_scores=np.sort(oof.residual), report=report)
