"""What an observation must look like: each problem named by its row and field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from serving.prediction_store import feedback
from tests.serving.prediction_store.support import RULES, row

NOW = datetime(2026, 6, 1, tzinfo=UTC)
GOOD = {"observed_price": 15000, "observed_at": "2026-05-01T10:00:00-04:00", "kind": "sale"}


def problems(raw, rules=RULES) -> list[tuple[int, str | None]]:
    result = feedback.check(raw, 7, rules, now=NOW)
    assert isinstance(result, list), result
    assert {e.row for e in result} == {7}
    return [(e.row, e.field) for e in result]


def test_a_good_observation_is_normalized() -> None:
    checked = feedback.check({**GOOD, "features": row(type="Casa")}, 0, RULES, now=NOW)
    assert checked.observed_at == datetime(2026, 5, 1, 14, tzinfo=UTC)
    assert checked.features["type"] == "casa" and checked.observed_price == 15000.0
    by_date = feedback.check({**GOOD, "observed_at": "2026-05-01", "request_id": "r", "row_index": 0},
                             0, RULES, now=NOW)
    assert by_date.observed_at == datetime(2026, 5, 1, tzinfo=UTC) and by_date.features is None


@pytest.mark.parametrize(("change", "field"), [
    ({"observed_price": 0}, "observed_price"),
    ({"observed_price": "12k"}, "observed_price"),
    ({"observed_price": True}, "observed_price"),
    ({"observed_at": "2026-05-01T10:00:00"}, "observed_at"),  # no time zone
    ({"observed_at": "2027-01-01T00:00:00Z"}, "observed_at"),  # the future
    ({"observed_at": "yesterday"}, "observed_at"),
    ({"kind": "rent"}, "kind"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_value_is_named(change, field) -> None:
    assert problems({**GOOD, "features": row(), **change}) == [(7, field)]


def test_the_row_must_be_named_once_and_well() -> None:
    assert problems(GOOD) == [(7, None)]
    assert problems({**GOOD, "request_id": "r", "row_index": 0, "features": row()}) == [(7, "features")]
    assert problems({**GOOD, "request_id": "r", "row_index": -1}) == [(7, "row_index")]
    assert problems({**GOOD, "request_id": "", "row_index": 0}) == [(7, "request_id")]
    assert problems({**GOOD, "row_index": 0}) == [(7, "request_id")]


def test_features_are_checked_with_the_models_rules() -> None:
    assert problems({**GOOD, "features": row(sector="atlantis", n_rooms=-2)}) == [
        (7, "sector"), (7, "n_rooms")]
    assert problems({**GOOD, "features": row()}, rules=None) == [(7, "features")]
    assert problems(["not", "an", "object"]) == [(7, None)]
