"""Live error on rows with feedback, and the retraining policy's decision on it and on drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from valuation.model_runtime.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from valuation.monitoring.drift import DriftThresholds, compare
from valuation.monitoring.live_error import live_error, worse_than_test
from valuation.monitoring.policy import (
    REASON_BOTH,
    REASON_DRIFT,
    REASON_LIVE_ERROR,
    RetrainingPolicy,
    decide,
)
from valuation.monitoring.profile import ReferenceProfile, build_profile, error_figures
from valuation.synthetic import generate_frame


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    frame = generate_frame(3000, seed=11)
    prices = frame["price"].to_numpy()
    predicted = prices * np.random.default_rng(1).normal(1.0, 0.08, len(prices))
    importance = {"net_usable_area": 9.0, "sector": 5.0, "latitude": 3.0, "n_rooms": 0.1}
    return build_profile(frame, predicted, prices, categorical=CATEGORICAL_FEATURES,
                         numeric=NUMERIC_FEATURES, bins=10, sketch_points=100,
                         feature_importance=importance)


def _labelled(errors: list[float], sectors: list[str], days: list[int]) -> pd.DataFrame:
    observed = np.full(len(errors), 10_000.0)
    return pd.DataFrame({
        "sector": sectors, "observed_price": observed,
        "price": observed * (1 + np.asarray(errors)),
        "observed_at": [pd.Timestamp("2026-11-01", tz="UTC") + pd.Timedelta(days=d) for d in days],
    })


def test_error_figures_by_hand() -> None:
    figures = error_figures(np.array([100.0, 200.0, 400.0, 0.0]), np.array([110.0, 150.0, 400.0, 5.0]))
    assert figures.mae == pytest.approx((10 + 50 + 0 + 5) / 4)
    assert figures.rmse == pytest.approx(np.sqrt((100 + 2500 + 0 + 25) / 4))
    # APEs 0.1, 0.25, 0 and a miss (zero price): median of [0, 0.1, 0.25, inf] = 0.175
    assert figures.medape == pytest.approx(0.175)
    assert figures.ppe10 == pytest.approx(0.5)


def test_live_error_overall_per_sector_and_over_time(profile: ReferenceProfile) -> None:
    labelled = _labelled([0.05, -0.20, 0.30, 0.0], ["vitacura", "vitacura", "nunoa", "nunoa"],
                         [0, 0, 1, 1])
    live = live_error(labelled, profile)
    assert live.overall.rows == 4 and live.overall.medape == pytest.approx(0.125)
    assert live.by_sector["vitacura"].mae == pytest.approx(1250.0)
    assert live.by_sector["nunoa"].ppe10 == pytest.approx(0.5)
    assert [b["period"][:10] for b in live.over_time] == ["2026-11-01", "2026-11-02"]
    assert live.over_time[1]["mae"] == pytest.approx(1500.0)
    assert live.ratio_to_test["medape"] == pytest.approx(0.125 / profile.test_figures.medape)


def test_worse_than_test_by_a_margin(profile: ReferenceProfile) -> None:
    test_medape = profile.test_figures.medape
    slightly = live_error(_labelled([test_medape * 1.05] * 10, ["nunoa"] * 10, [0] * 10), profile)
    clearly = live_error(_labelled([test_medape * 1.3] * 10, ["nunoa"] * 10, [0] * 10), profile)
    assert not worse_than_test(slightly, "medape", 0.10)
    assert worse_than_test(clearly, "medape", 0.10)
    assert not worse_than_test(clearly, "ppe10", 0.10)  # every error is still within 10%
    outside = live_error(_labelled([0.15] * 10, ["nunoa"] * 10, [0] * 10), profile)
    assert worse_than_test(outside, "ppe10", 0.10)  # higher is better: none within 10% now
    with pytest.raises(ValueError, match="unknown live metric 'mape'"):
        worse_than_test(clearly, "mape", 0.1)


def _drift(profile: ReferenceProfile, shift_feature: str | None):
    window = generate_frame(1500, seed=12)
    if shift_feature:
        window[shift_feature] *= 1.6
    return compare(profile, window, None, DriftThresholds())


def test_policy_watches_the_most_important_features(profile: ReferenceProfile) -> None:
    policy = RetrainingPolicy(watched_features=2, min_feedback_rows=10)
    on_watched = decide(policy, profile, _drift(profile, "net_usable_area"), None, 50)
    assert on_watched.retrain and on_watched.reason == REASON_DRIFT
    assert on_watched.watched_features == ["net_usable_area", "sector"]
    assert "net_usable_area wasserstein_normalized" in on_watched.explanation
    on_minor = decide(policy, profile, _drift(profile, "n_bathroom"), None, 50)
    assert not on_minor.retrain and "n_bathroom" in on_minor.explanation


def test_policy_on_live_error_needs_feedback_rows_and_can_be_disabled(
        profile: ReferenceProfile) -> None:
    worse = live_error(_labelled([profile.test_figures.medape * 1.5] * 30, ["nunoa"] * 30,
                                 [0] * 30), profile)
    policy = RetrainingPolicy(min_feedback_rows=30)
    decision = decide(policy, profile, _drift(profile, None), worse, 30)
    assert decision.retrain and decision.reason == REASON_LIVE_ERROR
    assert "live medape" in decision.explanation and "margin 10%" in decision.explanation
    too_few = decide(policy, profile, None, worse, 29)
    assert not too_few.retrain and "only 29 feedback rows (policy needs 30)" in too_few.explanation
    both = decide(policy, profile, _drift(profile, "net_usable_area"), worse, 30)
    assert both.reason == REASON_BOTH
    off = decide(RetrainingPolicy(enabled=False, min_feedback_rows=30), profile, None, worse, 30)
    assert not off.retrain and off.explanation.startswith("retraining disabled")


def test_policy_config_is_checked() -> None:
    assert RetrainingPolicy.from_mapping({"margin": "0.2"}).margin == 0.2
    with pytest.raises(ValueError, match="live_metric='mape'"):
        RetrainingPolicy.from_mapping({"live_metric": "mape"})
