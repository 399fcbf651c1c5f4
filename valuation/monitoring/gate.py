"""The promotion gate as a pure judgement: on the same labelled rows, is the challenger better
than the champion by the configured margin? Reading the rows from the prediction store and
moving the alias live on the serving side (serving/monitoring/gate.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from valuation.monitoring.live_error import HIGHER_IS_BETTER, LIVE_METRICS
from valuation.monitoring.profile import error_figures

# Columns of the paired rows: one row per labelled request row, with both versions' prices.
PAIRED_COLUMNS = ("observed_price", "champion_price", "challenger_price")


@dataclass(frozen=True)
class GateRule:
    metric: str = "medape"
    min_rows: int = 200
    margin: float = 0.05  # the challenger must be better by at least this share of the champion's figure

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> GateRule:
        rule = cls(metric=str(values.get("metric", cls.metric)),
                   min_rows=int(values.get("min_rows", cls.min_rows)),
                   margin=float(values.get("margin", cls.margin)))
        if rule.metric not in LIVE_METRICS:
            raise ValueError(f"promotion_gate.metric={rule.metric!r}: expected one of "
                             f"{', '.join(LIVE_METRICS)}")
        if rule.min_rows < 1 or not 0 <= rule.margin < 1:
            raise ValueError(f"promotion_gate: min_rows must be >= 1 (got {rule.min_rows}) and "
                             f"margin from 0 to below 1 (got {rule.margin})")
        return rule


@dataclass(frozen=True)
class GateResult:
    champion_version: str | None
    challenger_version: str | None
    metric: str
    rows: int  # labelled rows priced by both versions
    champion_figure: float | None
    challenger_figure: float | None
    improvement: float | None  # share by which the challenger beats the champion (< 0: worse)
    margin: float
    min_rows: int
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def comparison(self) -> dict[str, Any]:
        """What the alias history keeps of it."""
        return {"metric": self.metric, "rows": self.rows,
                "champion_version": self.champion_version,
                "champion_figure": _finite(self.champion_figure),
                "challenger_version": self.challenger_version,
                "challenger_figure": _finite(self.challenger_figure),
                "margin": self.margin, "passed": self.passed}


def refused(rule: GateRule, champion: str | None, challenger: str | None, reason: str,
            rows: int = 0) -> GateResult:
    """A gate that could not compare (no challenger, too few rows...)."""
    return GateResult(champion, challenger, rule.metric, rows, None, None, None, rule.margin,
                      rule.min_rows, False, reason)


def judge(paired: pd.DataFrame, rule: GateRule, champion: str, challenger: str) -> GateResult:
    """Compare both versions on `paired` (see PAIRED_COLUMNS) by `rule`."""
    missing = [c for c in PAIRED_COLUMNS if c not in paired.columns]
    if missing:
        raise ValueError(f"paired rows lack column(s) {', '.join(missing)}")
    rows = len(paired)
    truth = paired["observed_price"].to_numpy(dtype=np.float64)
    champion_figure = getattr(error_figures(truth, paired["champion_price"].to_numpy(float)),
                              rule.metric) if rows else None
    challenger_figure = getattr(error_figures(truth, paired["challenger_price"].to_numpy(float)),
                                rule.metric) if rows else None
    names = f"challenger v{challenger} vs champion v{champion}"
    if rows < rule.min_rows:
        so_far = _figures(rule, champion_figure, challenger_figure)
        return GateResult(champion, challenger, rule.metric, rows, champion_figure,
                          challenger_figure, None, rule.margin, rule.min_rows, False,
                          f"{names}: {rows} labelled rows priced by both, the gate needs "
                          f"{rule.min_rows} (promotion_gate.min_rows){so_far}")
    improvement = _improvement(rule.metric, champion_figure, challenger_figure)
    figures = (f"{rule.metric} {challenger_figure:.4g} vs {champion_figure:.4g} on {rows} "
               f"labelled rows")
    if improvement is None:
        return GateResult(champion, challenger, rule.metric, rows, champion_figure,
                          challenger_figure, None, rule.margin, rule.min_rows, False,
                          f"{names}: {figures}: no finite comparison")
    passed = improvement >= rule.margin
    verdict = (f"better by {improvement:.2%}, at least the margin {rule.margin:.1%}" if passed
               else f"{'better' if improvement > 0 else 'worse'} by {abs(improvement):.2%}, "
                    f"the gate needs better by {rule.margin:.1%}")
    return GateResult(champion, challenger, rule.metric, rows, champion_figure,
                      challenger_figure, improvement, rule.margin, rule.min_rows, passed,
                      f"{names}: {figures}: {verdict}")


def _improvement(metric: str, champion: float, challenger: float) -> float | None:
    if not (math.isfinite(champion) and math.isfinite(challenger)) or champion == 0:
        return None
    gain = challenger - champion if metric in HIGHER_IS_BETTER else champion - challenger
    return float(gain / abs(champion))


def _figures(rule: GateRule, champion: float | None, challenger: float | None) -> str:
    if champion is None or challenger is None:
        return ""
    return f" ({rule.metric} so far {challenger:.4g} vs {champion:.4g})"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
