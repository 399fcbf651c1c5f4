"""Schema errors name the source, the column and the 1-based data row."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from valuation.data_checks import DataError, validate_raw
from valuation.synthetic import generate_frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return generate_frame(30, 2)


def test_valid_frame_is_normalised(frame):
    frame = frame.astype({"n_rooms": object})
    frame.loc[3, "sector"] = "  Las Condes "
    frame.loc[4, "type"] = "CASA"
    out = validate_raw(frame, "t")
    assert out.loc[3, "sector"] == "las condes" and out.loc[4, "type"] == "casa"
    assert (out.drop(columns=["type", "sector"]).dtypes == np.float64).all()
    assert pd.api.types.is_string_dtype(out["sector"])


def test_wrong_type_names_column_and_row(frame):
    frame = frame.astype({"net_area": object})
    frame.loc[16, "net_area"] = "abc"  # data row 17 of the file
    with pytest.raises(DataError) as error:
        validate_raw(frame, "data/train.csv")
    assert str(error.value) == "data/train.csv: column 'net_area' row 17: 'abc' is not a number"


def test_all_problems_are_summarised(frame):
    frame = frame.astype({"price": object, "sector": object})
    frame.loc[0, "price"] = "12 UF"
    frame.loc[[5, 9], "latitude"] = np.nan
    frame.loc[7, "sector"] = "   "
    frame.loc[8, "longitude"] = np.inf
    with pytest.raises(DataError) as error:
        validate_raw(frame, "db table 'x'")
    message = str(error.value)
    assert message.startswith("db table 'x': ")
    for part in (
        "column 'sector' row 8: empty text",
        "column 'latitude' row 6: missing value",
        "column 'latitude' row 10: missing value",
        "column 'longitude' row 9: inf is not a finite number",
        "column 'price' row 1: '12 UF' is not a number",
    ):
        assert part in message
    assert len(error.value.problems) == 5


def test_missing_column_is_named(frame):
    with pytest.raises(DataError, match=r"^t\.csv: missing column\(s\) 'n_bathroom'"):
        validate_raw(frame.drop(columns=["n_bathroom"]), "t.csv")


def test_extra_columns_are_dropped_with_a_log_line(frame, caplog):
    frame = frame.assign(id=range(len(frame)))
    with caplog.at_level(logging.WARNING, logger="valuation.data_checks"):
        out = validate_raw(frame, "t.csv")
    assert "id" not in out.columns
    assert "t.csv: dropping extra column(s) 'id'" in caplog.text


def test_no_rows_is_an_error(frame):
    with pytest.raises(DataError, match="no data rows"):
        validate_raw(frame.iloc[:0], "t.csv")


def test_numbers_in_a_text_column_are_named(frame):
    frame = frame.astype({"type": object})
    frame.loc[2, "type"] = 7
    with pytest.raises(DataError, match=r"column 'type' row 3: 7 is not text"):
        validate_raw(frame, "t.csv")
