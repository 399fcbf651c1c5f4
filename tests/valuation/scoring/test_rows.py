"""A batch split into accepted and rejected rows by the model's rules, with the rules' own messages."""

from __future__ import annotations

import numpy as np
import pytest

from tests.valuation.scoring.conftest import BAD_ROWS, make_portfolio
from valuation.config import load_config
from valuation.model_runtime.schema import FEATURES
from valuation.model_runtime.validation import RowValidationError, ValidationRules
from valuation.scoring.rows import check_rows


@pytest.fixture(scope="module")
def rules() -> ValidationRules:
    frame = make_portfolio(50)
    return ValidationRules.from_config(load_config().validation,
                                       sectors=frame["sector"].dropna().unique().tolist())


def test_bad_rows_are_rejected_with_row_field_and_message(rules) -> None:
    frame = make_portfolio(50)
    checked = check_rows(frame, rules, first_row=1)
    assert {r.row: r.field for r in checked.rejections} == BAD_ROWS
    assert np.flatnonzero(~checked.accepted).tolist() == [row - 1 for row in BAD_ROWS]
    messages = {r.field: r.message for r in checked.rejections}
    assert messages["latitude"] == "must be a number, got str 'abc'"
    assert messages["sector"] == "must be a string, got null"


def test_messages_are_those_the_rules_give_one_row_at_a_time(rules) -> None:
    frame = make_portfolio(50)
    for rejection in check_rows(frame, rules, first_row=1).rejections:
        with pytest.raises(RowValidationError) as raised:
            rules.validate_frame(frame.iloc[[rejection.row - 1]][list(FEATURES)])
        assert [(e.field, e.message) for e in raised.value.errors] == [
            (rejection.field, rejection.message)]


def test_row_numbers_count_from_the_batchs_first_row_beyond_max_rows(rules) -> None:
    frame = make_portfolio(rules.max_rows + 20)
    frame.loc[rules.max_rows + 5, "n_bathroom"] = -1.0  # in the second slice the rules take
    checked = check_rows(frame, rules, first_row=1001)
    assert {r.row for r in checked.rejections} == {1000 + row for row in BAD_ROWS} | {
        1000 + rules.max_rows + 6}
    assert checked.accepted.sum() == len(frame) - len(BAD_ROWS) - 1


def test_every_problem_of_a_row_is_reported(rules) -> None:
    frame = make_portfolio(30)
    frame.loc[20, ["n_rooms", "n_bathroom"]] = [-1.0, -2.0]
    checked = check_rows(frame, rules, first_row=1)
    assert sorted(r.field for r in checked.rejections if r.row == 21) == ["n_bathroom", "n_rooms"]
