from __future__ import annotations

import numpy as np
import pytest

from valuation.metrics import regression_metrics


def test_metrics_on_known_values() -> None:
    truth = np.array([100.0, 200.0, 400.0, 1000.0])
    predicted = np.array([110.0, 150.0, 400.0, 1300.0])
    metrics = regression_metrics(truth, predicted)
    assert metrics["mae"] == pytest.approx((10 + 50 + 0 + 300) / 4)
    assert metrics["mse"] == pytest.approx((100 + 2500 + 0 + 90000) / 4)
    assert metrics["rmse"] == pytest.approx(np.sqrt(metrics["mse"]))
    # MAPE divides by the TRUE price (the original notebook swapped the arguments).
    assert metrics["mape"] == pytest.approx((0.1 + 0.25 + 0 + 0.3) / 4)
    assert metrics["medape"] == pytest.approx((0.1 + 0.25) / 2)
    assert metrics["within_10pct"] == pytest.approx(0.5)
    assert metrics["within_20pct"] == pytest.approx(0.5)
    assert metrics["r2"] < 1


def test_a_zero_price_counts_as_a_miss_not_a_crash() -> None:
    metrics = regression_metrics(np.array([0.0, 100.0]), np.array([5.0, 100.0]))
    assert metrics["within_10pct"] == pytest.approx(0.5)
    assert np.isfinite(metrics["rmse"])
