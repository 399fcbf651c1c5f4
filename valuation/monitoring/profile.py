"""The reference profile of a model version: what "normal" traffic and error looked like when the
version was evaluated, as aggregates only (never a row), logged as JSON beside its evaluation.

Per numeric feature and for the predicted price: quantile bin edges with the reference share in
each bin (for PSI), a quantile sketch (for the KS statistic and the Wasserstein distance, which
need the reference distribution, not just bins), mean, standard deviation and row count. Per
categorical feature: the share of each category. Plus the version's test-set error figures
(overall and per sector) and how much each raw feature matters to the model.

Why a sketch is enough: KS and Wasserstein are functionals of the two distribution functions.
The sketch holds the reference quantiles at the levels (i + 0.5) / Q, i = 0..Q-1; read as an
equally weighted sample, its distribution function is within 1/Q of the reference's everywhere
(ties, e.g. a room count, stay ties), so a KS statistic computed from it is off by at most 1/Q,
and the Wasserstein distance (the area between the quantile functions) by the tail mass beyond
the outer levels. With Q = 200 that is 0.005, well under the statistics' thresholds. Each column
is summarised on its own: no value is linked to another column of its row, and interpolated
quantiles are mostly not values any row holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PROFILE_SCHEMA_VERSION = 1
PREDICTION = "prediction"  # the name of the predicted price in a profile and a report


class ProfileError(ValueError):
    """A profile that cannot be built or read; the message says what is wrong."""


@dataclass(frozen=True)
class NumericReference:
    """One numeric column of the reference."""

    rows: int
    mean: float
    std: float  # population standard deviation (ddof=0), Evidently's scale for Wasserstein
    bin_edges: list[float]  # interior edges; bins are (-inf, e0), [e0, e1), ..., [e_last, inf)
    bin_shares: list[float]  # len(bin_edges) + 1 shares summing to 1
    sketch: list[float]  # quantiles at levels (i + 0.5) / Q

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """The bin of each value (the same rule for the reference and the window)."""
        return np.searchsorted(np.asarray(self.bin_edges, dtype=float), values, side="right")

    def cdf(self, points: np.ndarray) -> np.ndarray:
        """The reference distribution function at `points`, read from the sketch."""
        sketch = np.asarray(self.sketch, dtype=float)
        return np.searchsorted(sketch, points, side="right") / len(sketch)


@dataclass(frozen=True)
class CategoricalReference:
    rows: int
    shares: dict[str, float]


@dataclass(frozen=True)
class ErrorFigures:
    """The live-error measures, on the test set or on rows with feedback."""

    rows: int
    mae: float
    medape: float
    ppe10: float  # share of predictions within 10% of the true price
    rmse: float


@dataclass(frozen=True)
class ReferenceProfile:
    rows: int
    numeric: dict[str, NumericReference]
    categorical: dict[str, CategoricalReference]
    prediction: NumericReference
    test_figures: ErrorFigures
    test_figures_by_sector: dict[str, ErrorFigures]
    # Mean absolute error added when a feature's values are shuffled (permutation importance on
    # the raw feature): which features the retraining policy watches.
    feature_importance: dict[str, float] = field(default_factory=dict)
    schema_version: int = PROFILE_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        try:
            version = int(data.get("schema_version", 0))
            if version != PROFILE_SCHEMA_VERSION:
                raise ProfileError(f"profile schema version {version}; this code reads "
                                   f"version {PROFILE_SCHEMA_VERSION}")
            return cls(
                rows=int(data["rows"]),
                numeric={k: NumericReference(**v) for k, v in data["numeric"].items()},
                categorical={k: CategoricalReference(**v) for k, v in data["categorical"].items()},
                prediction=NumericReference(**data["prediction"]),
                test_figures=ErrorFigures(**data["test_figures"]),
                test_figures_by_sector={k: ErrorFigures(**v)
                                        for k, v in data["test_figures_by_sector"].items()},
                feature_importance={k: float(v)
                                    for k, v in data.get("feature_importance", {}).items()},
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ProfileError(f"not a reference profile: {type(error).__name__}: {error}") from None

    def most_important(self, count: int) -> list[str]:
        """The `count` features the model leans on most (all features when none were measured)."""
        if not self.feature_importance:
            return [*self.categorical, *self.numeric]
        ranked = sorted(self.feature_importance.items(), key=lambda item: -item[1])
        return [name for name, _ in ranked[:count]]


def error_figures(truth: np.ndarray, predicted: np.ndarray) -> ErrorFigures:
    """MAE, median absolute percentage error, PPE10 and RMSE. A zero price has no percentage
    error: it counts as a miss (as in valuation.metrics)."""
    truth = np.asarray(truth, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if len(truth) == 0:
        return ErrorFigures(rows=0, mae=float("nan"), medape=float("nan"), ppe10=float("nan"),
                            rmse=float("nan"))
    error = predicted - truth
    with np.errstate(divide="ignore", invalid="ignore"):
        ape = np.where(truth != 0, np.abs(error) / np.abs(truth), np.inf)
    return ErrorFigures(
        rows=len(truth),
        mae=float(np.mean(np.abs(error))),
        medape=float(np.median(ape)),
        ppe10=float(np.mean(ape <= 0.10)),
        rmse=float(np.sqrt(np.mean(error**2))),
    )


def figures_by_group(groups: Sequence[str], truth: np.ndarray,
                     predicted: np.ndarray) -> dict[str, ErrorFigures]:
    """`error_figures` per value of `groups` (e.g. the sector of each row)."""
    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    indices = pd.Series(np.asarray(groups, dtype=object)).groupby(
        np.asarray(groups, dtype=object)).indices
    return {str(name): error_figures(truth[index], predicted[index])
            for name, index in sorted(indices.items())}


def numeric_reference(values: np.ndarray, bins: int, sketch_points: int,
                      name: str = "column") -> NumericReference:
    """The bins, shares and sketch of one numeric column (missing values are refused)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        raise ProfileError(f"{name}: no values to profile")
    if not np.all(np.isfinite(values)):
        raise ProfileError(f"{name}: {int(np.sum(~np.isfinite(values)))} missing or infinite "
                           "values; the profile is built from checked rows")
    if bins < 2 or sketch_points < 2:
        raise ProfileError(f"bins ({bins}) and sketch points ({sketch_points}) must be >= 2")
    # Quantile bins: equally filled on the reference unless ties merge some (a room count).
    interior = np.unique(np.quantile(values, np.arange(1, bins) / bins))
    counts = np.bincount(np.searchsorted(interior, values, side="right"),
                         minlength=len(interior) + 1)
    levels = (np.arange(sketch_points) + 0.5) / sketch_points
    return NumericReference(
        rows=len(values), mean=float(values.mean()), std=float(values.std()),
        bin_edges=[float(e) for e in interior],
        bin_shares=[float(c) for c in counts / len(values)],
        sketch=[float(q) for q in np.quantile(values, levels)],
    )


def categorical_reference(values: Sequence[Any]) -> CategoricalReference:
    series = pd.Series(values, dtype=object).astype(str)
    shares = series.value_counts(normalize=True, sort=False)
    return CategoricalReference(rows=len(series),
                                shares={str(k): float(v) for k, v in sorted(shares.items())})


def build_profile(
    features: pd.DataFrame,
    predicted: np.ndarray,
    truth: np.ndarray,
    *,
    categorical: Sequence[str],
    numeric: Sequence[str],
    bins: int,
    sketch_points: int,
    feature_importance: Mapping[str, float] | None = None,
    group_by: str = "sector",
) -> ReferenceProfile:
    """The profile of a version from its test rows, its predictions on them and the true prices."""
    if len(features) == 0:
        raise ProfileError("the reference table has no rows")
    if not len(features) == len(predicted) == len(truth):
        raise ProfileError(f"{len(features)} rows, {len(predicted)} predictions and "
                           f"{len(truth)} prices: they must match")
    missing = [c for c in (*categorical, *numeric, group_by) if c not in features.columns]
    if missing:
        raise ProfileError(f"the reference table lacks column(s) {', '.join(missing)}")
    return ReferenceProfile(
        rows=len(features),
        numeric={c: numeric_reference(features[c].to_numpy(), bins, sketch_points, c)
                 for c in numeric},
        categorical={c: categorical_reference(features[c].to_numpy()) for c in categorical},
        prediction=numeric_reference(predicted, bins, sketch_points, PREDICTION),
        test_figures=error_figures(truth, predicted),
        test_figures_by_sector=figures_by_group(features[group_by].astype(str).to_numpy(),
                                                truth, predicted),
        feature_importance={k: float(v) for k, v in (feature_importance or {}).items()},
    )


def permutation_importance(predict, features: pd.DataFrame, truth: np.ndarray,
                           columns: Sequence[str], seed: int) -> dict[str, float]:
    """How much the mean absolute error grows when one raw column is shuffled (one repeat per
    column): a model-agnostic ranking of the eight features a client sends, whatever the model
    engineers from them. `predict` takes a frame of the raw features and returns prices."""
    truth = np.asarray(truth, dtype=np.float64)
    baseline = float(np.mean(np.abs(np.asarray(predict(features), dtype=float) - truth)))
    rng = np.random.default_rng(seed)
    importance = {}
    for column in columns:
        shuffled = features.copy()
        shuffled[column] = rng.permutation(shuffled[column].to_numpy())
        error = float(np.mean(np.abs(np.asarray(predict(shuffled), dtype=float) - truth)))
        importance[column] = error - baseline
    return importance
