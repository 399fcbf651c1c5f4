"""Request bodies for the load generator: one distinct, valid body per row, on every pass."""

from __future__ import annotations

import json

import pytest

from bench.common import distinct_rows, feature_records
from bench.loadgen import (
    CYCLE_MARKER,
    INPUTS_FORMAT,
    PROXY_FORMAT,
    SPLIT_FORMAT,
    marked_bodies,
    parse_wrk_output,
    request_body,
    unmark,
)
from valuation.model_runtime.schema import FEATURES
from valuation.synthetic import generate_frame


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return feature_records(distinct_rows(generate_frame(300, seed=3)))


@pytest.mark.parametrize("body_format", [PROXY_FORMAT, SPLIT_FORMAT, INPUTS_FORMAT])
def test_every_pass_sends_distinct_valid_bodies_of_one_row(records, body_format):
    bodies = marked_bodies(records, body_format, model_name="property_friends_best_model")
    assert all(body.count(CYCLE_MARKER) == 1 and "\n" not in body for body in bodies)
    sent = [unmark(body, cycle) for cycle in range(3) for body in bodies]
    assert len(set(sent)) == len(sent) == 3 * len(records)
    for cycle in range(3):
        for body, record in zip(bodies, records, strict=True):
            document = json.loads(unmark(body, cycle))
            if body_format == PROXY_FORMAT:
                assert document["model_name"] == "property_friends_best_model"
                (row,) = document["features"]
            elif body_format == INPUTS_FORMAT:
                (row,) = document["inputs"]
                assert list(row) == list(FEATURES)
            else:
                assert document["dataframe_split"]["columns"] == list(FEATURES)
                (values,) = document["dataframe_split"]["data"]
                row = dict(zip(FEATURES, values, strict=True))
            assert {k: v for k, v in row.items() if k != "longitude"} == \
                   {k: v for k, v in record.items() if k != "longitude"}
            # Later passes move the longitude by far less than the model could notice.
            assert row["longitude"] == pytest.approx(record["longitude"], abs=1e-6)


def test_repeated_rows_are_refused(records):
    with pytest.raises(ValueError, match="repeated bodies"):
        marked_bodies([records[0], records[0]], SPLIT_FORMAT)


def test_unknown_body_format_is_named():
    with pytest.raises(ValueError, match="unknown body format 'xml'"):
        request_body([], "xml")


def test_wrk_result_line_is_parsed_and_missing_line_is_an_error():
    line = ('BENCH_JSON {"requests": 200, "duration_us": 2000000, "bytes": 1, "bodies": 50, "max_cycle": 3, '
            '"errors": {"connect": 0, "read": 1, "write": 0, "status": 2, "timeout": 0}, '
            '"latency_us": {"min": 500, "mean": 900.0, "max": 9000, "p50": 800, "p90": 1500, "p95": 2000, '
            '"p99": 5000}}')
    result = parse_wrk_output("Running 2s test\n" + line + "\n", "")
    assert result.requests_per_s == 100.0
    assert (result.p50_ms, result.p99_ms) == (0.8, 5.0)
    assert (result.errors_status, result.errors_socket, result.errors) == (2, 1, 3)
    from bench.common import BenchError

    with pytest.raises(BenchError, match="no result line"):
        parse_wrk_output("Running 2s test\n", "unable to connect")
