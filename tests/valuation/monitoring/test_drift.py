"""Drift statistics against a profile of aggregates: the sketch gives what scipy gives on the full
reference rows, a known shift is flagged on the shifted feature only, and no shift flags nothing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, kstwo, wasserstein_distance

from valuation.model_runtime.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from valuation.monitoring.drift import (
    DriftThresholds,
    compare,
    ks_test,
    normalized_wasserstein,
    numeric_psi,
    psi,
)
from valuation.monitoring.profile import (
    ProfileError,
    ReferenceProfile,
    build_profile,
    categorical_reference,
    numeric_reference,
)
from valuation.synthetic import generate_frame

SKETCH = 200


def _profile(frame: pd.DataFrame, sketch: int = SKETCH) -> ReferenceProfile:
    prices = frame["price"].to_numpy()
    predicted = prices * np.random.default_rng(0).normal(1.0, 0.1, len(prices))
    return build_profile(frame, predicted, prices, categorical=CATEGORICAL_FEATURES,
                         numeric=NUMERIC_FEATURES, bins=10, sketch_points=sketch)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return generate_frame(5000, seed=1)


@pytest.fixture(scope="module")
def profile(reference: pd.DataFrame) -> ReferenceProfile:
    return _profile(reference)


@pytest.mark.parametrize("feature", NUMERIC_FEATURES)
def test_the_sketch_gives_scipys_ks_and_wasserstein_on_the_full_reference(
        reference: pd.DataFrame, profile: ReferenceProfile, feature: str) -> None:
    window = generate_frame(1500, seed=2)[feature].to_numpy() * 1.04  # a small shift
    exact = ks_2samp(reference[feature], window, method="asymp")
    statistic, p_value = ks_test(profile.numeric[feature], window)
    assert statistic == pytest.approx(exact.statistic, abs=1.0 / SKETCH)
    # The bound on D carries over to the p-value: it lies between scipy's at D + 1/Q and D - 1/Q.
    effective = round(len(reference) * len(window) / (len(reference) + len(window)))
    assert (kstwo.sf(exact.statistic + 1 / SKETCH, effective) <= p_value
            <= kstwo.sf(exact.statistic - 1 / SKETCH, effective))
    full = wasserstein_distance(reference[feature], window) / reference[feature].std(ddof=0)
    assert normalized_wasserstein(profile.numeric[feature], window) == pytest.approx(full, abs=0.01)


def test_psi_follows_its_definition_and_stays_finite_on_empty_bins() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.7 - 0.5) * np.log(0.7 / 0.5) + (0.3 - 0.5) * np.log(0.3 / 0.5)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    assert np.isfinite(psi([0.5, 0.5], [1.0, 0.0]))


def test_numeric_psi_uses_the_reference_quantile_bins() -> None:
    values = np.arange(1000, dtype=float)
    reference = numeric_reference(values, bins=10, sketch_points=50)
    assert reference.bin_shares == pytest.approx([0.1] * 10)
    assert numeric_psi(reference, values) == pytest.approx(0.0, abs=1e-12)
    # Everything in the top decile: PSI = sum over bins, 9 empty (floored) and one full.
    top = np.full(100, 999.0)
    expected = 9 * (1e-4 - 0.1) * np.log(1e-4 / 0.1) + (1 - 0.1) * np.log(1 / 0.1)
    assert numeric_psi(reference, top) == pytest.approx(expected)


def test_ties_merge_bins_but_keep_the_reference_shares() -> None:
    rooms = np.array([1.0] * 50 + [2.0] * 300 + [3.0] * 400 + [4.0] * 250)
    reference = numeric_reference(rooms, bins=10, sketch_points=100)
    assert len(reference.bin_shares) == len(reference.bin_edges) + 1 < 10
    assert sum(reference.bin_shares) == pytest.approx(1.0)
    statistic, _ = ks_test(reference, rooms)
    assert statistic <= 1 / 100


def test_category_statistics_match_scipy_and_name_new_and_unseen_categories() -> None:
    reference = categorical_reference(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    window = ["a"] * 40 + ["b"] * 40 + ["d"] * 20
    drift = compare_one_category(reference, window)
    expected = jensenshannon([0.5, 0.3, 0.2, 0.0], [0.4, 0.4, 0.0, 0.2])
    assert drift.statistics["jensenshannon"] == pytest.approx(expected)
    assert drift.new_categories == ["d"] and drift.unseen_categories == ["c"]
    assert drift.drifted  # a distance of 0.33 is over Evidently's 0.1


def compare_one_category(reference, window):
    from valuation.monitoring.drift import categorical_drift

    return categorical_drift("sector", reference, window, DriftThresholds())


def test_no_shift_flags_nothing(profile: ReferenceProfile) -> None:
    window = generate_frame(2000, seed=3)
    result = compare(profile, window, window["price"].to_numpy(), DriftThresholds())
    assert result.drifted_features == []
    assert not result.prediction.drifted
    # Above 1,000 reference rows Evidently's large-sample statistics decide.
    assert {d.method for d in result.features.values()} == {"wasserstein_normalized",
                                                            "jensenshannon"}


def test_a_known_shift_is_flagged_on_the_shifted_features_only(profile: ReferenceProfile) -> None:
    window = generate_frame(2000, seed=3)
    window["net_usable_area"] *= 1.5
    window.loc[window.index[:800], "sector"] = "vitacura"
    result = compare(profile, window, window["price"].to_numpy() * 1.3, DriftThresholds())
    assert sorted(result.drifted_features) == ["net_usable_area", "sector"]
    assert result.features["net_usable_area"].psi_level == "significant"
    assert result.prediction.drifted


def test_a_small_reference_is_judged_by_the_ks_p_value(reference: pd.DataFrame) -> None:
    small = _profile(reference.iloc[:600])
    window = generate_frame(400, seed=4)
    same = compare(small, window, None, DriftThresholds())
    assert same.features["latitude"].method == "ks_pvalue" and not same.features["latitude"].drifted
    window["latitude"] += 0.03
    assert compare(small, window, None, DriftThresholds()).features["latitude"].drifted


def test_the_profile_holds_aggregates_whose_size_does_not_grow_with_the_rows() -> None:
    small, large = _profile(generate_frame(2000, 5)), _profile(generate_frame(20000, 5))
    assert len(json.dumps(large.to_dict())) < 1.2 * len(json.dumps(small.to_dict()))
    assert all(len(ref.sketch) == SKETCH for ref in large.numeric.values())
    assert ReferenceProfile.from_dict(json.loads(json.dumps(large.to_dict()))) == large


def test_a_damaged_profile_is_refused_with_a_reason() -> None:
    with pytest.raises(ProfileError, match="schema version 0"):
        ReferenceProfile.from_dict({"rows": 3})
    with pytest.raises(ProfileError, match="not a reference profile"):
        ReferenceProfile.from_dict({"schema_version": 1, "rows": 3})


def test_the_thresholds_refuse_an_unknown_name() -> None:
    assert DriftThresholds.from_mapping({"wasserstein": 0.2}).wasserstein == 0.2
    with pytest.raises(ValueError, match="wasserstien"):
        DriftThresholds.from_mapping({"wasserstien": 0.2})
