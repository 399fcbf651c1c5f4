"""The PNGs a monitoring run logs: the drifted features (and the predicted price) against their
reference, and the live error over time against the version's test figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on workers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from valuation.monitoring.drift import DriftResult, category_shares  # noqa: E402
from valuation.monitoring.live_error import LiveError  # noqa: E402
from valuation.monitoring.profile import PREDICTION, NumericReference, ReferenceProfile  # noqa: E402


def drift_plot(path: Path, profile: ReferenceProfile, window: pd.DataFrame,
               predicted: np.ndarray, drift: DriftResult) -> Path:
    """Reference against window shares for every drifted feature, and for the predicted price."""
    shown = [*drift.drifted_features, PREDICTION]
    fig, axes = plt.subplots(len(shown), 1, figsize=(8, 2.8 * len(shown)), squeeze=False)
    for ax, name in zip(axes[:, 0], shown, strict=True):
        if name == PREDICTION:
            _numeric_panel(ax, profile.prediction, predicted)
            result = drift.prediction
        elif name in profile.categorical:
            _categorical_panel(ax, profile.categorical[name].shares, window[name].to_numpy())
            result = drift.features[name]
        else:
            _numeric_panel(ax, profile.numeric[name], window[name].to_numpy(dtype=float))
            result = drift.features[name]
        verdict = "drifted" if result and result.drifted else "no drift"
        figure = f"{result.method} {result.statistics[result.method]:.3g}" if result else ""
        ax.set_title(f"{name}: {verdict} ({figure}; PSI {result.statistics['psi']:.3g})"
                     if result else name)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _numeric_panel(ax, reference: NumericReference, values: np.ndarray) -> None:
    counts = np.bincount(reference.bin_index(values), minlength=len(reference.bin_shares))
    edges = [f"{edge:.4g}" for edge in reference.bin_edges]
    labels = [f"< {edges[0]}" if edges else "all"] + [f">= {edge}" for edge in edges]
    positions = np.arange(len(labels))
    ax.bar(positions - 0.2, reference.bin_shares, width=0.4, label="reference")
    ax.bar(positions + 0.2, counts / max(len(values), 1), width=0.4, label="window")
    ax.set_xticks(positions, labels, rotation=30, fontsize=7)
    ax.set_ylabel("share of rows")


def _categorical_panel(ax, reference: dict[str, float], values: np.ndarray) -> None:
    current = category_shares(values)
    names = sorted(set(reference) | set(current), key=lambda n: -reference.get(n, 0.0))
    positions = np.arange(len(names))
    ax.bar(positions - 0.2, [reference.get(n, 0.0) for n in names], width=0.4, label="reference")
    ax.bar(positions + 0.2, [current.get(n, 0.0) for n in names], width=0.4, label="window")
    ax.set_xticks(positions, names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of rows")


def live_error_plot(path: Path, live: LiveError, period: str) -> Path:
    """MdAPE and PPE10 per period of the observation date, with the test figures as lines."""
    periods = pd.to_datetime([bucket["period"] for bucket in live.over_time])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for ax, metric, label in ((top, "medape", "MdAPE"), (bottom, "ppe10", "PPE10 (share within 10%)")):
        values = [bucket[metric] for bucket in live.over_time]
        ax.plot(periods, values, marker="o", label=f"live, per {period}")
        ax.axhline(getattr(live.test, metric), color="black", linestyle="--", label="test set")
        ax.set_ylabel(label)
        ax.legend()
    rows = sum(bucket["rows"] for bucket in live.over_time)
    top.set_title(f"Live error on {rows} predictions with feedback")
    bottom.set_xlabel("observed at (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
