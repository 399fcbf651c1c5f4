"""The drift demo's streams on the project's synthetic data: the shift is the one its docs state
(bench/drift_scenario.py): two sectors, the third and fourth most common, become 60% of the
traffic and are observed 20% above their price; the stable stream changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from bench.drift_scenario import (
    OBSERVED,
    SHIFTED,
    SOURCE,
    choose_scenario,
    sector_share,
    shifted_stream,
    stable_stream,
)
from valuation.synthetic import generate_frame


@pytest.fixture(scope="module")
def table():
    return generate_frame(3000, seed=5)


def test_the_scenario_picks_the_third_and_fourth_sectors(table) -> None:
    scenario = choose_scenario(table)
    ranked = table["sector"].value_counts()
    assert set(scenario.sectors) == set(ranked.index[2:4])
    assert scenario.base_share == pytest.approx(sector_share(table, scenario.sectors))
    assert (scenario.shifted_share, scenario.price_factor) == (0.6, 1.2)
    assert "+20%" in scenario.describe() and "60%" in scenario.describe()


def test_the_shifted_stream_moves_the_mix_and_the_prices_of_two_sectors_only(table) -> None:
    scenario = choose_scenario(table)
    shifted = shifted_stream(table, 4000, scenario, seed=1)
    stable = stable_stream(table, 4000, seed=2)
    assert len(shifted) == len(stable) == 4000
    # The mix: 60% from the two sectors (binomial sd ~0.8%), against their share in the table.
    assert sector_share(shifted, scenario.sectors) == pytest.approx(0.6, abs=0.03)
    assert sector_share(stable, scenario.sectors) == pytest.approx(scenario.base_share, abs=0.03)
    assert scenario.base_share < 0.45

    # The prices: exactly x1.2 inside the two sectors, untouched elsewhere.
    truth = table["price"].to_numpy(dtype=float)[shifted[SOURCE].to_numpy()]
    inside = shifted["sector"].isin(scenario.sectors).to_numpy()
    assert np.array_equal(shifted[SHIFTED].to_numpy(), inside)
    np.testing.assert_allclose(shifted[OBSERVED].to_numpy()[inside], truth[inside] * 1.2)
    np.testing.assert_allclose(shifted[OBSERVED].to_numpy()[~inside], truth[~inside])
    assert not stable[SHIFTED].any()


def test_the_streams_are_reproducible_and_refuse_a_table_without_enough_sectors(table) -> None:
    scenario = choose_scenario(table)
    first = shifted_stream(table, 50, scenario, seed=3)
    assert first.equals(shifted_stream(table, 50, scenario, seed=3))
    with pytest.raises(ValueError, match="needs at least 4"):
        choose_scenario(table[table["sector"].isin(table["sector"].unique()[:3])])
