"""The per-sector market index (valuation/monitoring/market_index.py): estimated from the latest
observed prices against the served version's, shrunk, bounded; read back; applied to a table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from valuation.data_checks import DataError
from valuation.monitoring.market_index import (
    HIGHEST_FACTOR,
    IndexRule,
    read_index,
    restate_prices,
    sector_index,
)


def labelled(sector: str, ratios: list[float], start: int = 0) -> pd.DataFrame:
    """Rows of `sector` priced 1,000 and observed at 1,000 x ratio, one second apart."""
    at = pd.Timestamp("2026-12-01", tz="UTC") + pd.to_timedelta(np.arange(start, start + len(ratios)), "s")
    return pd.DataFrame({"sector": sector, "price": 1000.0,
                         "observed_price": 1000.0 * np.asarray(ratios), "observed_at": at})


def test_only_the_latest_observations_of_a_sector_count_and_few_of_them_move_it_less():
    # 100 old sales at the model's price, then 30 recent ones 20 % above: the recent ones decide.
    moved = pd.concat([labelled("Vitacura ", [1.0] * 100), labelled("Vitacura ", [1.2] * 30, 100)])
    stable = labelled("nunoa", [1.0] * 40)
    index = sector_index(pd.concat([moved, stable]), IndexRule(recent_rows=30, shrink_rows=10))
    assert set(index) == {"vitacura", "nunoa"}  # normalized as the model reads sectors
    assert index["vitacura"]["rows"] == 30
    assert index["vitacura"]["median_ratio"] == pytest.approx(1.2)
    assert index["vitacura"]["factor"] == pytest.approx(1.2 ** (30 / 40))  # shrunk towards 1
    assert index["nunoa"]["factor"] == pytest.approx(1.0)


def test_a_sector_with_too_few_sales_is_left_out_and_a_wild_one_is_bounded():
    index = sector_index(pd.concat([labelled("la reina", [1.5] * 9),
                                    labelled("providencia", [10.0] * 50)]),
                         IndexRule(recent_rows=30, shrink_rows=0, min_rows=10))
    assert "la reina" not in index
    assert index["providencia"]["factor"] == HIGHEST_FACTOR
    assert sector_index(labelled("x", [])[:0], IndexRule()) == {}


def test_a_stored_index_reads_back_and_a_bad_factor_is_refused_naming_the_sector():
    assert read_index({"Vitacura": {"factor": 1.1, "rows": 30}, "nunoa": 0.95}, "idx.json") == \
        {"vitacura": 1.1, "nunoa": 0.95}
    for bad in ({"vitacura": {"factor": math.nan}}, {"vitacura": 7.0}, {"vitacura": "1.1"},
                {"vitacura": True}):
        with pytest.raises(DataError, match=r"idx\.json: sector 'vitacura': factor"):
            read_index(bad, "idx.json")
    with pytest.raises(DataError, match="non-empty mapping"):
        read_index([1.1], "idx.json")


def test_restating_multiplies_each_rows_price_by_its_sectors_factor():
    table = pd.DataFrame({"sector": ["vitacura", " Nunoa", "las condes"],
                          "price": [1000.0, 2000.0, 3000.0]})
    restated = restate_prices(table, {"vitacura": 1.2, "nunoa": 0.9})
    assert restated["price"].tolist() == pytest.approx([1200.0, 1800.0, 3000.0])
    assert table["price"].tolist() == [1000.0, 2000.0, 3000.0]  # the input is left alone
