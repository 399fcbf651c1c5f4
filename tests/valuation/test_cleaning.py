"""Each cleaning rule removes exactly the rows it names, in the documented order."""

from __future__ import annotations

import pandas as pd
import pytest

from valuation.cleaning import RULE_NAMES, clean
from valuation.config import load_config
from valuation.synthetic import defect_counts, generate_frame

ALL_ON = {
    "min_price": 1000,
    "max_price": None,
    "max_rooms": 20,
    "max_bathrooms": 20,
    "drop_zero_areas": True,
    "drop_duplicates": True,
}


@pytest.fixture(scope="module")
def dirty() -> pd.DataFrame:
    return generate_frame(1400, 9, defect_share=0.1)


def test_every_rule_counts_its_defects(dirty):
    planned = defect_counts(1400, 0.1)  # 20 of each kind
    report = clean(dirty, ALL_ON)
    assert list(report.removed) == list(RULE_NAMES)
    assert report.removed == {
        "price_below_min": planned["zero_price"] + planned["tiny_price"],
        "price_above_max": 0,
        "too_many_rooms": planned["too_many_rooms"],
        "too_many_bathrooms": planned["too_many_bathrooms"],
        "zero_area": planned["zero_area"],
        "duplicate": planned["duplicate"],
    }
    assert len(report.frame) == len(dirty) - report.rows_removed
    # usable > total is a finding, never a removal
    assert report.findings == {"usable_exceeds_total": planned["usable_exceeds_total"]}
    kept = report.frame
    assert (kept["price"] >= 1000).all() and (kept["n_rooms"] <= 20).all()
    assert not kept.duplicated().any() and (kept["net_area"] > 0).all()
    assert kept.index.equals(pd.RangeIndex(len(kept)))


def test_project_defaults_keep_zero_areas(dirty):
    report = clean(dirty, load_config([]).cleaning)
    assert report.removed["zero_area"] == 0
    assert (report.frame["net_area"] == 0).sum() == defect_counts(1400, 0.1)["zero_area"]
    assert report.removed["duplicate"] == 20


def test_null_limits_disable_rules(dirty):
    off = dict.fromkeys(ALL_ON) | {"drop_zero_areas": False, "drop_duplicates": False}
    report = clean(dirty, off)
    assert report.rows_removed == 0 and len(report.frame) == len(dirty)


def test_max_price_and_order_do_not_double_count():
    frame = generate_frame(20, 1)
    frame.loc[0, "price"] = 0
    frame.loc[1] = frame.loc[0]  # a duplicate of a row the price rule already removes
    frame.loc[2, "price"] = 10_000_000
    report = clean(frame, ALL_ON | {"max_price": 1_000_000})
    assert report.removed["price_below_min"] == 2
    assert report.removed["price_above_max"] == 1
    assert report.removed["duplicate"] == 0


def test_unknown_option_is_refused(dirty):
    with pytest.raises(ValueError, match="min_prise"):
        clean(dirty, {"min_prise": 10})
