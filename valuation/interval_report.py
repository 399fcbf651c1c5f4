"""How good a model's price intervals are on a scored table: coverage at each level overall, per
sector, per type and per price decile; relative width; the same for plain split-conformal with one
constant width in log price (the baseline the adaptive method must beat); and the two plots.

Used by the `evaluate` step and by `bench.quality`. Relative width is (upper - lower) / the
predicted price (the price the client is shown; the actual price may be 0 in the test data).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from valuation.model_runtime.extras import METADATA_KEY
from valuation.model_runtime.intervals import conformal_quantiles
from valuation.model_runtime.schema import FEATURES

PLOT_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
# Sectors with fewer test rows are left out of the worst-sector figure (their coverage is noise).
MIN_SECTOR_ROWS = 30


@dataclass(frozen=True)
class Bounds:
    level: float
    price: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def covered(self, truth: np.ndarray) -> np.ndarray:
        return (truth >= self.lower) & (truth <= self.upper)

    def relative_width(self) -> np.ndarray:
        return (self.upper - self.lower) / np.maximum(self.price, 1.0)


def has_intervals(pyfunc) -> bool:
    """Whether a loaded pyfunc was logged with an interval calibration."""
    return "interval" in (pyfunc.metadata.metadata or {}).get(METADATA_KEY, [])


def model_bounds(pyfunc, features: pd.DataFrame, level: float) -> Bounds:
    """The model's own intervals at `level`, through its pyfunc `params` (as served)."""
    answers = pyfunc.predict(features[list(FEATURES)], params={"interval": float(level)})
    return Bounds(level,
                  np.array([a["price"] for a in answers], dtype=np.float64),
                  np.array([a["interval"]["lower"] for a in answers], dtype=np.float64),
                  np.array([a["interval"]["upper"] for a in answers], dtype=np.float64))


def baseline_bounds(pyfunc, price: np.ndarray, level: float) -> Bounds | None:
    """Plain split-conformal on the same out-of-fold residuals: one constant width in log price."""
    calibration = pyfunc.unwrap_python_model().calibration
    if calibration is None or calibration.baseline_scores is None:
        return None
    q_lo, q_hi = conformal_quantiles(calibration.baseline_scores, level)
    return Bounds(level, price, price * np.exp(min(q_lo, 0.0)), price * np.exp(max(q_hi, 0.0)))


def coverage_table(frame: pd.DataFrame, truth: np.ndarray, bounds: list[Bounds]) -> pd.DataFrame:
    """One row per (group, value, level): rows, coverage, mean and median relative width."""
    deciles = pd.qcut(pd.Series(truth).rank(method="first"), 10, labels=False).to_numpy()
    groups = {"overall": np.full(len(truth), "all", dtype=object),
              "sector": frame["sector"].to_numpy(), "type": frame["type"].to_numpy(),
              "price_decile": deciles + 1}
    rows = []
    for found in bounds:
        covered = found.covered(truth)
        width = found.relative_width()
        for group, labels in groups.items():
            for value in pd.unique(labels):
                mask = labels == value
                rows.append({"group": group, "value": str(value), "level": found.level,
                             "rows": int(mask.sum()), "coverage": float(covered[mask].mean()),
                             "mean_relative_width": float(width[mask].mean()),
                             "median_relative_width": float(np.median(width[mask]))})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, level: float, prefix: str = "interval") -> dict[str, float]:
    """Metrics of one level: overall coverage and widths, and the worst sector's deviation."""
    at = table[table["level"] == level]
    overall = at[at["group"] == "overall"].iloc[0]
    sectors = at[(at["group"] == "sector") & (at["rows"] >= MIN_SECTOR_ROWS)]
    tag = f"{prefix}_{round(level * 100)}"
    return {f"{tag}_coverage": float(overall["coverage"]),
            f"{tag}_mean_relative_width": float(overall["mean_relative_width"]),
            f"{tag}_median_relative_width": float(overall["median_relative_width"]),
            f"{tag}_max_sector_deviation": float((sectors["coverage"] - level).abs().max())}


def plot(directory: Path, truth: np.ndarray, curve: list[Bounds], at: Bounds) -> list[Path]:
    """coverage vs nominal level, and relative width vs predicted price at level `at`."""
    import matplotlib.pyplot as plt

    paths = [directory / "interval_coverage_vs_nominal.png", directory / "interval_width_vs_price.png"]
    fig, ax = plt.subplots(figsize=(5, 5))
    levels = [b.level for b in curve]
    ax.plot(levels, [b.covered(truth).mean() for b in curve], marker="o", label="empirical")
    ax.plot([0.45, 1.0], [0.45, 1.0], color="black", linewidth=1, label="nominal")
    ax.set(xlabel="nominal level", ylabel="test coverage", title="Interval coverage")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(at.price, at.relative_width(), s=4, alpha=0.4)
    ax.set(xscale="log", xlabel="predicted price (UF)", ylabel="(upper - lower) / price",
           title=f"Relative width of the {round(at.level * 100)} % interval")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths
