"""Live error: the served version's predictions against the prices observed later (feedback),
overall, per sector and over time, set beside the version's test-set figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from valuation.monitoring.profile import (
    ErrorFigures,
    ReferenceProfile,
    error_figures,
    figures_by_group,
)

LIVE_METRICS = ("mae", "medape", "ppe10", "rmse")
HIGHER_IS_BETTER = {"ppe10"}
# Columns a frame of labelled rows must have (one row per prediction with feedback).
LABELLED_COLUMNS = ("sector", "price", "observed_price", "observed_at")


@dataclass(frozen=True)
class LiveError:
    overall: ErrorFigures
    by_sector: dict[str, ErrorFigures]
    test: ErrorFigures  # the version's test-set figures, for comparison
    # live / test for each metric (> 1 means worse for every metric but ppe10, where < 1 is worse)
    ratio_to_test: dict[str, float]
    over_time: list[dict[str, Any]]  # {"period": ISO start, **ErrorFigures}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def live_error(labelled: pd.DataFrame, profile: ReferenceProfile, period: str = "1D") -> LiveError:
    """Error figures of the labelled rows (see LABELLED_COLUMNS), per `period` of `observed_at`
    (a pandas offset alias, e.g. "1D", "6h")."""
    missing = [c for c in LABELLED_COLUMNS if c not in labelled.columns]
    if missing:
        raise ValueError(f"labelled rows lack column(s) {', '.join(missing)}")
    truth = labelled["observed_price"].to_numpy(dtype=float)
    predicted = labelled["price"].to_numpy(dtype=float)
    overall = error_figures(truth, predicted)
    test = profile.test_figures
    ratio = {m: _ratio(getattr(overall, m), getattr(test, m)) for m in LIVE_METRICS}
    return LiveError(
        overall=overall,
        by_sector=figures_by_group(labelled["sector"].astype(str).to_numpy(), truth, predicted)
        if len(labelled) else {},
        test=test,
        ratio_to_test=ratio,
        over_time=_over_time(labelled, period),
    )


def _ratio(live: float, test: float) -> float:
    if not np.isfinite(live) or not np.isfinite(test) or test == 0:
        return float("nan")
    return float(live / test)


def _over_time(labelled: pd.DataFrame, period: str) -> list[dict[str, Any]]:
    if labelled.empty:
        return []
    moments = pd.to_datetime(labelled["observed_at"], utc=True)
    buckets = []
    for start, index in labelled.groupby(moments.dt.floor(period)).indices.items():
        rows = labelled.iloc[index]
        figures = error_figures(rows["observed_price"].to_numpy(dtype=float),
                                rows["price"].to_numpy(dtype=float))
        buckets.append({"period": pd.Timestamp(start).isoformat(), **asdict(figures)})
    return sorted(buckets, key=lambda bucket: bucket["period"])


def worse_than_test(live: LiveError, metric: str, margin: float) -> bool:
    """Whether the live `metric` is worse than the test figure by more than `margin` (0.1 = 10%)."""
    if metric not in LIVE_METRICS:
        raise ValueError(f"unknown live metric {metric!r}: expected one of {', '.join(LIVE_METRICS)}")
    ratio = live.ratio_to_test[metric]
    if not np.isfinite(ratio):
        return False
    return ratio < 1 - margin if metric in HIGHER_IS_BETTER else ratio > 1 + margin
