"""Row rules shared by the pyfunc and the API: errors name the row and the field."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from valuation.config import load_config
from valuation.model_runtime.schema import EXAMPLE_ROW
from valuation.model_runtime.validation import (
    SMALL_FRAME_MAX_ROWS,
    FieldError,
    RowValidationError,
    ValidationRules,
)

GOOD_ROW = dict(EXAMPLE_ROW)


@pytest.fixture(scope="module")
def rules() -> ValidationRules:
    return ValidationRules.from_config(load_config().validation, ["lo barnechea", "las condes", "nunoa"])


def test_a_good_row_passes_and_categories_are_normalized(rules: ValidationRules) -> None:
    frame = pd.DataFrame([{**GOOD_ROW, "type": " Casa ", "sector": "Lo  Barnechea"}])
    columns = rules.validate_frame(frame)
    assert columns["type"].tolist() == ["casa"]
    assert columns["sector"].tolist() == ["lo barnechea"]
    assert columns["net_area"].tolist() == [500.0]


def test_zero_areas_are_accepted_as_unknown(rules: ValidationRules) -> None:
    frame = pd.DataFrame([{**GOOD_ROW, "net_usable_area": 0.0, "net_area": 0.0}])
    assert rules.validate_frame(frame)["net_area"].tolist() == [0.0]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("type", "castle", "not a known type"),
        ("sector", "santiago centro", "not a known sector"),
        ("sector", 5, "must be a string"),
        ("net_area", -1.0, "outside the accepted range"),
        ("net_usable_area", math.inf, "must be a finite number"),
        ("n_rooms", math.nan, "must be a finite number"),
        ("n_rooms", 500.0, "outside the accepted range"),
        ("n_bathroom", "many", "must be a number"),
        ("latitude", -12.0, "outside the accepted range"),
        ("longitude", -70.0, "outside the accepted range"),
        ("n_rooms", True, "must be a number"),
    ],
)
# Small frames are read as one object matrix, large ones column by column, and the pyfunc passes
# rows as mappings: all three must judge alike.
@pytest.mark.parametrize(("n_rows", "as_records"), [(3, False), (SMALL_FRAME_MAX_ROWS + 24, False),
                                                    (3, True)])
def test_a_bad_value_names_its_row_and_field(rules, field, value, expected, n_rows, as_records) -> None:
    bad_row = n_rows - 1
    rows = [GOOD_ROW] * bad_row + [{**GOOD_ROW, field: value}]
    with pytest.raises(RowValidationError) as caught:
        rules.validate_records(rows) if as_records else rules.validate_frame(pd.DataFrame(rows))
    assert len(caught.value.errors) == 1
    assert caught.value.errors[0].row == bad_row
    assert caught.value.errors[0].field == field
    assert expected in caught.value.errors[0].message
    assert f"row {bad_row}, field '{field}'" in str(caught.value)


@pytest.mark.parametrize("n_rows", [1, SMALL_FRAME_MAX_ROWS + 24])
def test_both_read_paths_give_the_same_columns(rules, n_rows) -> None:
    rows = [{**GOOD_ROW, "n_rooms": i % 5 + 1, "sector": " Las Condes", "net_area": str(100 + i)}
            for i in range(n_rows)]
    frame = pd.DataFrame(rows).assign(price=1.0)  # an extra column is ignored
    columns = rules.validate_frame(frame)
    assert columns["n_rooms"].dtype == np.float64
    assert columns["n_rooms"].tolist() == [float(i % 5 + 1) for i in range(n_rows)]
    assert columns["net_area"].tolist() == [100.0 + i for i in range(n_rows)]
    assert set(columns["sector"].tolist()) == {"las condes"}
    assert set(columns) == set(GOOD_ROW)


def test_records_path_reports_a_left_out_field_as_required(rules: ValidationRules) -> None:
    row = {k: v for k, v in GOOD_ROW.items() if k != "latitude"}
    with pytest.raises(RowValidationError) as caught:
        rules.validate_records([GOOD_ROW, row])
    assert caught.value.errors == [FieldError(1, "latitude", "is required")]
    with pytest.raises(RowValidationError, match="no rows"):
        rules.validate_records([])


def test_a_feature_column_given_twice_is_refused(rules: ValidationRules) -> None:
    frame = pd.DataFrame([list(GOOD_ROW.values()) + [3.0]], columns=[*GOOD_ROW, "n_rooms"])
    with pytest.raises(RowValidationError) as caught:
        rules.validate_frame(frame)
    assert caught.value.errors == [FieldError(None, "n_rooms", "column appears more than once")]


def test_every_error_of_every_bad_row_is_reported(rules: ValidationRules) -> None:
    frame = pd.DataFrame([{**GOOD_ROW, "type": "x"}, GOOD_ROW, {**GOOD_ROW, "n_rooms": -1, "sector": "y"}])
    with pytest.raises(RowValidationError) as caught:
        rules.validate_frame(frame)
    found = {(e.row, e.field) for e in caught.value.errors}
    assert found == {(0, "type"), (2, "n_rooms"), (2, "sector")}


def test_missing_columns_and_empty_batches_and_too_many_rows(rules: ValidationRules) -> None:
    with pytest.raises(RowValidationError) as caught:
        rules.validate_frame(pd.DataFrame([{k: v for k, v in GOOD_ROW.items() if k != "net_area"}]))
    assert caught.value.errors == [FieldError(None, "net_area", "column is missing")]
    with pytest.raises(RowValidationError, match="no rows"):
        rules.validate_frame(pd.DataFrame(columns=list(GOOD_ROW)))
    small = ValidationRules.from_dict({**rules.to_dict(), "max_rows": 2})
    with pytest.raises(RowValidationError, match="3 rows exceed the limit of 2"):
        small.validate_frame(pd.DataFrame([GOOD_ROW] * 3))


def test_row_errors_on_a_mapping_match_the_frame_path(rules: ValidationRules) -> None:
    assert rules.row_errors(GOOD_ROW, 0) == []
    errors = rules.row_errors({**GOOD_ROW, "sector": "atlantis", "latitude": None}, 7)
    assert [(e.row, e.field) for e in errors] == [(7, "sector"), (7, "latitude")]
    missing = rules.row_errors({"type": "casa"}, 1)
    assert {e.field for e in missing} == set(GOOD_ROW) - {"type"}


def test_rules_survive_a_round_trip_through_json_like_dicts(rules: ValidationRules) -> None:
    assert ValidationRules.from_dict(rules.to_dict()) == rules


def test_types_can_be_narrowed_to_those_seen_in_training() -> None:
    narrowed = ValidationRules.from_config(load_config().validation, ["nunoa"], types=["casa"])
    assert narrowed.types == ("casa",)
    errors = narrowed.row_errors({**GOOD_ROW, "sector": "nunoa", "type": "departamento"}, 0)
    assert [(e.field, "not a known type" in e.message) for e in errors] == [("type", True)]
