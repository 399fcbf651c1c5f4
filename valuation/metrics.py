"""The measures a valuation model is judged by, computed one way for CV, evaluation and benchmarks."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
)

METRIC_NAMES = ("rmse", "mse", "mae", "mape", "r2", "medape", "within_10pct", "within_20pct")
LOWER_IS_BETTER = {"rmse": True, "mse": True, "mae": True, "mape": True, "medape": True,
                   "r2": False, "within_10pct": False, "within_20pct": False}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MSE, MAE, MAPE (y_true first: the notebook had them swapped), R², median APE,
    and the share of predictions within 10% and 20% of the true price."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    mse = float(mean_squared_error(y_true, y_pred))
    # Percentage errors are undefined at a zero price; those rows count as misses.
    with np.errstate(divide="ignore", invalid="ignore"):
        ape = np.where(y_true != 0, np.abs(y_pred - y_true) / np.abs(y_true), np.inf)
    return {
        "rmse": float(np.sqrt(mse)),
        "mse": mse,
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "mape": float(mean_absolute_percentage_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
        "medape": float(np.median(ape)),
        "within_10pct": float(np.mean(ape <= 0.10)),
        "within_20pct": float(np.mean(ape <= 0.20)),
    }
