"""A per-sector price index from recent sales: how far each sector's market has moved from the
prices the served version gives.

Why: a retraining that only appends a few hundred recent sales to thousands of older training
rows barely moves a sector's prices after the market moved there (the older rows outvote them).
Appraisers time-adjust older comparable sales by a market index instead; the retraining does the
same. For each sector, the latest `recent_rows` observed prices are compared with the served
version's prices of the same rows; the index is the median ratio, shrunk towards 1 by
n / (n + shrink_rows) so a sector with few sales moves little. Sectors with fewer than
`min_rows` observations keep 1. The factors are bounded, so a burst of typos cannot restate a
sector's prices wildly.

`sector_index` estimates it (the monitoring job, from the prediction store), `read_index` checks a
stored one, `restate_prices` applies it to a training or test table (ingest).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from valuation.data_checks import DataError
from valuation.model_runtime.schema import TARGET
from valuation.model_runtime.validation import normalize_category

LOWEST_FACTOR, HIGHEST_FACTOR = 0.5, 2.0


@dataclass(frozen=True)
class IndexRule:
    recent_rows: int = 30  # the latest observations per sector the median is taken over
    shrink_rows: float = 10.0  # shrinkage towards 1: weight n / (n + shrink_rows)
    min_rows: int = 10  # fewer observations in a sector: its factor stays 1

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> IndexRule:
        rule = cls(**{k: values[k] for k in ("recent_rows", "shrink_rows", "min_rows") if k in values})
        if rule.recent_rows < 1 or rule.min_rows < 1 or rule.shrink_rows < 0:
            raise ValueError(f"market index rule out of range: {rule}")
        return rule


def sector_index(labelled: pd.DataFrame, rule: IndexRule) -> dict[str, dict[str, float]]:
    """{sector: {factor, rows, median_ratio}} from rows with `sector`, `price` (the served
    version's), `observed_price` and `observed_at`; only sectors with at least `min_rows`."""
    if labelled.empty:
        return {}
    frame = labelled.assign(
        _sector=labelled["sector"].astype(str).map(normalize_category),
        _log_ratio=np.log(labelled["observed_price"].to_numpy(dtype=float)
                          / labelled["price"].to_numpy(dtype=float)))
    frame = frame[np.isfinite(frame["_log_ratio"])].sort_values("observed_at", kind="stable")
    index: dict[str, dict[str, float]] = {}
    for sector, rows in frame.groupby("_sector", sort=True):
        recent = rows.tail(rule.recent_rows)
        n = len(recent)
        if n < rule.min_rows:
            continue
        median = float(np.median(recent["_log_ratio"]))
        factor = math.exp(median * n / (n + rule.shrink_rows))
        index[str(sector)] = {"factor": min(max(factor, LOWEST_FACTOR), HIGHEST_FACTOR),
                              "rows": n, "median_ratio": math.exp(median)}
    return index


def rounded_factors(index: Mapping[str, Mapping[str, float]] | None) -> dict[str, float]:
    """{sector: factor} of an estimated index, as a log line or a summary shows it."""
    return {sector: round(entry["factor"], 4) for sector, entry in (index or {}).items()}


def read_index(values: Any, source: str) -> dict[str, float]:
    """{sector: factor} from a stored index (the mapping `sector_index` gives, or plain
    factors). Raises IndexError_ naming `source` and what is wrong."""
    if not isinstance(values, Mapping) or not values:
        raise DataError(f"{source}: a market index is a non-empty mapping of sector to factor",
                        source)
    factors: dict[str, float] = {}
    for sector, entry in values.items():
        factor = entry.get("factor") if isinstance(entry, Mapping) else entry
        if isinstance(factor, bool) or not isinstance(factor, int | float) \
                or not math.isfinite(factor) or not LOWEST_FACTOR <= factor <= HIGHEST_FACTOR:
            raise DataError(f"{source}: sector {sector!r}: factor {factor!r} is not a number "
                            f"from {LOWEST_FACTOR} to {HIGHEST_FACTOR}", source)
        factors[normalize_category(str(sector))] = float(factor)
    return factors


def restate_prices(table: pd.DataFrame, factors: Mapping[str, float]) -> pd.DataFrame:
    """`table` with each row's price multiplied by its sector's factor (1 for the others)."""
    sectors = table["sector"].astype(str).map(normalize_category)
    scale = sectors.map(dict(factors)).fillna(1.0).to_numpy(dtype=float)
    return table.assign(**{TARGET: table[TARGET].to_numpy(dtype=float) * scale})
