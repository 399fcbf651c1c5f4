"""Drift of a window of traffic against a version's reference profile, one feature at a time.

Statistics (Evidently's definitions, computed with numpy and scipy):
- PSI: sum over the reference's quantile bins (categories for a categorical column) of
  (current - reference) * ln(current / reference), shares floored at 1e-4 as Evidently does;
- KS: the two-sample Kolmogorov-Smirnov statistic D between the reference (its sketch) and the
  window, and its p-value from scipy's `kstwo` distribution with the effective size
  n*m/(n+m) of the real row counts (scipy.stats.ks_2samp's asymptotic method);
- Wasserstein: `scipy.stats.wasserstein_distance` between the sketch and the window, divided by
  the reference's standard deviation;
- Jensen-Shannon: `scipy.spatial.distance.jensenshannon` of the category shares (natural log,
  as Evidently), with the categories new in the window and those of the reference it lacks.

Which statistic decides, as Evidently does by default: above `large_reference_rows` reference
rows, normalized Wasserstein for numbers and Jensen-Shannon for categories (both > 0.1 means
drift); at or below, the KS p-value for numbers (< 0.05 means drift) and Jensen-Shannon still
for categories (Evidently would use a chi-square test there; a reference that small gets no other
treatment here). PSI is reported with its usual reading (>= 0.1 moderate, >= 0.2 significant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import kstwo, wasserstein_distance

from valuation.monitoring.profile import (
    PREDICTION,
    CategoricalReference,
    NumericReference,
    ReferenceProfile,
)

PSI_FLOOR = 1e-4  # Evidently's floor for an empty bin: PSI stays finite


@dataclass(frozen=True)
class DriftThresholds:
    wasserstein: float = 0.1
    jensenshannon: float = 0.1
    ks_pvalue: float = 0.05
    psi_moderate: float = 0.1
    psi_significant: float = 0.2
    large_reference_rows: int = 1000

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DriftThresholds:
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown drift threshold(s) {', '.join(unknown)}: expected "
                             f"{', '.join(cls.__dataclass_fields__)}")
        return cls(**{k: type(getattr(cls, k))(v) for k, v in known.items()})


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical
    rows: int  # window rows compared
    statistics: dict[str, float]
    method: str  # the statistic that decides
    threshold: float
    drifted: bool
    psi_level: str  # none | moderate | significant
    new_categories: list[str] = field(default_factory=list)
    unseen_categories: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DriftResult:
    window_rows: int
    reference_rows: int
    features: dict[str, FeatureDrift]
    prediction: FeatureDrift | None

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, drift in self.features.items() if drift.drifted]

    @property
    def drift_share(self) -> float:
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_rows": self.window_rows,
            "reference_rows": self.reference_rows,
            "drifted_features": self.drifted_features,
            "drift_share": self.drift_share,
            "features": {name: asdict(drift) for name, drift in self.features.items()},
            "prediction": asdict(self.prediction) if self.prediction else None,
        }


def psi(reference_shares: Sequence[float], current_shares: Sequence[float]) -> float:
    ref = np.maximum(np.asarray(reference_shares, dtype=float), PSI_FLOOR)
    cur = np.maximum(np.asarray(current_shares, dtype=float), PSI_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def numeric_psi(reference: NumericReference, values: np.ndarray) -> float:
    counts = np.bincount(reference.bin_index(values), minlength=len(reference.bin_shares))
    return psi(reference.bin_shares, counts / len(values))


def ks_test(reference: NumericReference, values: np.ndarray) -> tuple[float, float]:
    """KS statistic and p-value of the window against the reference sketch (see module doc)."""
    current = np.sort(np.asarray(values, dtype=float))
    grid = np.union1d(np.asarray(reference.sketch, dtype=float), current)
    current_cdf = np.searchsorted(current, grid, side="right") / len(current)
    statistic = float(np.max(np.abs(reference.cdf(grid) - current_cdf)))
    n, m = float(reference.rows), float(len(current))
    effective = round(n * m / (n + m))
    return statistic, float(np.clip(kstwo.sf(statistic, max(effective, 1)), 0.0, 1.0))


def normalized_wasserstein(reference: NumericReference, values: np.ndarray) -> float:
    """Wasserstein distance in units of the reference's standard deviation. A constant reference
    column (std 0) is compared unscaled: any change of a constant is news."""
    distance = float(wasserstein_distance(reference.sketch, values))
    return distance / reference.std if reference.std > 0 else distance


def category_shares(values: Sequence[Any]) -> dict[str, float]:
    series = pd.Series(values, dtype=object).astype(str)
    return {str(k): float(v) for k, v in series.value_counts(normalize=True).items()}


def categorical_statistics(reference: CategoricalReference, values: Sequence[Any]
                           ) -> tuple[float, float, list[str], list[str]]:
    """Jensen-Shannon distance and PSI over the union of categories, the window's categories the
    reference never had, and the reference's categories absent from the window."""
    current = category_shares(values)
    names = sorted(set(reference.shares) | set(current))
    ref = np.array([reference.shares.get(n, 0.0) for n in names])
    cur = np.array([current.get(n, 0.0) for n in names])
    distance = float(jensenshannon(ref, cur))
    new = sorted(set(current) - set(reference.shares))
    unseen = sorted(set(reference.shares) - set(current))
    return distance, psi(ref, cur), new, unseen


def psi_level(value: float, thresholds: DriftThresholds) -> str:
    if value >= thresholds.psi_significant:
        return "significant"
    return "moderate" if value >= thresholds.psi_moderate else "none"


def numeric_drift(name: str, reference: NumericReference, values: np.ndarray,
                  thresholds: DriftThresholds) -> FeatureDrift:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ValueError(f"{name}: the window has no finite values")
    statistic, p_value = ks_test(reference, values)
    stats = {
        "psi": numeric_psi(reference, values),
        "ks_statistic": statistic,
        "ks_pvalue": p_value,
        "wasserstein_normalized": normalized_wasserstein(reference, values),
    }
    if reference.rows > thresholds.large_reference_rows:
        method, threshold = "wasserstein_normalized", thresholds.wasserstein
        drifted = stats[method] > threshold
    else:
        method, threshold = "ks_pvalue", thresholds.ks_pvalue
        drifted = stats[method] < threshold
    return FeatureDrift(feature=name, kind="numeric", rows=len(values), statistics=stats,
                        method=method, threshold=threshold, drifted=bool(drifted),
                        psi_level=psi_level(stats["psi"], thresholds))


def categorical_drift(name: str, reference: CategoricalReference, values: Sequence[Any],
                      thresholds: DriftThresholds) -> FeatureDrift:
    distance, psi_value, new, unseen = categorical_statistics(reference, values)
    return FeatureDrift(
        feature=name, kind="categorical", rows=len(values),
        statistics={"psi": psi_value, "jensenshannon": distance},
        method="jensenshannon", threshold=thresholds.jensenshannon,
        drifted=bool(distance > thresholds.jensenshannon),
        psi_level=psi_level(psi_value, thresholds),
        new_categories=new, unseen_categories=unseen,
    )


def compare(profile: ReferenceProfile, window: pd.DataFrame, predicted: np.ndarray | None,
            thresholds: DriftThresholds) -> DriftResult:
    """Every profiled feature of `window` (and its predicted prices) against the profile."""
    if len(window) == 0:
        raise ValueError("the window has no rows to compare")
    missing = [c for c in (*profile.categorical, *profile.numeric) if c not in window.columns]
    if missing:
        raise ValueError(f"the window lacks column(s) {', '.join(missing)}")
    features: dict[str, FeatureDrift] = {}
    for name, categories in profile.categorical.items():
        features[name] = categorical_drift(name, categories, window[name].to_numpy(), thresholds)
    for name, reference in profile.numeric.items():
        features[name] = numeric_drift(name, reference, window[name].to_numpy(), thresholds)
    prediction = None
    if predicted is not None and len(predicted):
        prediction = numeric_drift(PREDICTION, profile.prediction, predicted, thresholds)
    return DriftResult(window_rows=len(window), reference_rows=profile.rows, features=features,
                       prediction=prediction)
