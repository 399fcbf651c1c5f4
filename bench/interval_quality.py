"""The price intervals' part of `bench.quality`: coverage at 50/80/90 % on the whole test.csv,
overall and worst sector, relative widths, against plain split-conformal with one constant width
in log price (the targets of issue 12). Aggregates only, never a row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from valuation import interval_report
from valuation.model_runtime.schema import TARGET

LEVELS = (0.5, 0.8, 0.9)
TARGET_LEVEL = 0.8
COVERAGE_BAND = (0.78, 0.82)  # overall, at 80 %
SECTOR_BAND = 0.05  # every sector within this of 80 %
WIDTH_GAIN = 0.10  # at least this much narrower than the constant width


def measure(pyfunc, test: pd.DataFrame) -> dict[str, Any] | None:
    """Coverage and width figures of the model's intervals on `test`, or None without calibration."""
    if not interval_report.has_intervals(pyfunc):
        return None
    truth = test[TARGET].to_numpy(dtype=np.float64)
    bounds = [interval_report.model_bounds(pyfunc, test, level) for level in LEVELS]
    table = interval_report.coverage_table(test, truth, bounds)
    figures: dict[str, Any] = {"method": pyfunc.unwrap_python_model().calibration.method}
    for found in bounds:
        figures.update(interval_report.summary(table, found.level))
        baseline = interval_report.baseline_bounds(pyfunc, found.price, found.level)
        figures.update(interval_report.summary(
            interval_report.coverage_table(test, truth, [baseline]), found.level, "baseline"))
    at = table[(table["level"] == TARGET_LEVEL) & (table["group"] != "overall")]
    figures["groups_at_80"] = at[["group", "value", "rows", "coverage",
                                  "mean_relative_width"]].to_dict("records")
    return figures


def markdown(model: str, figures: dict[str, Any]) -> list[str]:
    lines = [f"### {model}: price intervals (method `{figures['method']}`)", "",
             "| level | coverage | worst sector off by | mean rel. width | median rel. width "
             "| constant-width coverage | constant-width mean rel. width |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for level in LEVELS:
        tag, base = f"interval_{round(level * 100)}", f"baseline_{round(level * 100)}"
        lines.append(
            f"| {level:.0%} | {figures[f'{tag}_coverage']:.1%} "
            f"| {figures[f'{tag}_max_sector_deviation'] * 100:.1f} pts "
            f"| {figures[f'{tag}_mean_relative_width']:.3f} | {figures[f'{tag}_median_relative_width']:.3f} "
            f"| {figures[f'{base}_coverage']:.1%} | {figures[f'{base}_mean_relative_width']:.3f} |")
    coverage = figures["interval_80_coverage"]
    worst = figures["interval_80_max_sector_deviation"]
    gain = 1.0 - figures["interval_80_mean_relative_width"] / figures["baseline_80_mean_relative_width"]
    verdict = [
        f"80 % coverage {coverage:.1%} (target {COVERAGE_BAND[0]:.0%}-{COVERAGE_BAND[1]:.0%}): "
        f"{'met' if COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1] else 'NOT met'}",
        f"worst sector {worst * 100:.1f} points from 80 % (target <= {SECTOR_BAND * 100:.0f}, sectors "
        f"with >= {interval_report.MIN_SECTOR_ROWS} test rows): "
        f"{'met' if worst <= SECTOR_BAND else 'NOT met'}",
        f"mean relative width {gain:.1%} narrower than one constant width in log price "
        f"(target >= {WIDTH_GAIN:.0%}): {'met' if gain >= WIDTH_GAIN else 'NOT met'}",
    ]
    lines += ["", *(f"- {line}" for line in verdict), "",
              "Coverage at 80 % per group (relative width = (upper - lower) / predicted price):", "",
              "| group | value | rows | coverage | mean rel. width |", "|---|---|---:|---:|---:|"]
    for row in figures["groups_at_80"]:
        lines.append(f"| {row['group']} | {row['value']} | {row['rows']} | {row['coverage']:.1%} "
                     f"| {row['mean_relative_width']:.3f} |")
    return lines
