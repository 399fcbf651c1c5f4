"""Hypothesis properties of row validation: any JSON-like row is either accepted or refused with
a RowValidationError naming row and field (the pyfunc's path), and through /predict it gets 200,
422 or 503, never a 500 (the API's path)."""

from __future__ import annotations

import json
import secrets
import uuid

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.app import create_app
from serving.keys.env_store import EnvKeyStore
from tests.support.serving import TEST_SECTORS, FixedSupervisor, make_rules, serving_settings
from valuation.model_runtime.schema import FEATURES
from valuation.model_runtime.validation import FieldError, RowValidationError

RULES = make_rules()

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["casa", "departamento", " CASA ", *TEST_SECTORS, "NaN", "1e400", ""]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6,
)
# Rows: mostly the real field names (with plausible or hostile values), sometimes others.
rows = st.dictionaries(
    st.one_of(st.sampled_from(FEATURES), st.text(max_size=12)),
    st.one_of(json_values, st.floats(min_value=-34, max_value=-33), st.floats(0, 1000)),
    max_size=len(FEATURES) + 2,
)
# Plausible rows with one field replaced: exercises the accept path too.
GOOD_ROW = {"type": "casa", "sector": "las condes", "net_usable_area": 120.0, "net_area": 200.0,
            "n_rooms": 3.0, "n_bathroom": 2.0, "latitude": -33.41, "longitude": -70.55}
near_good_rows = st.builds(
    lambda field, value, drop: {k: v for k, v in {**GOOD_ROW, field: value}.items() if k != drop},
    st.sampled_from(FEATURES), json_values, st.one_of(st.none(), st.sampled_from(FEATURES)),
)
any_row = st.one_of(rows, near_good_rows, st.just(GOOD_ROW))


@settings(max_examples=300, deadline=None)
@given(st.lists(any_row, min_size=1, max_size=5))
def test_row_errors_and_validate_frame_accept_or_name_the_problem(batch) -> None:
    for index, row in enumerate(batch):
        errors = RULES.row_errors(row, index)
        assert all(isinstance(e, FieldError) and e.row == index for e in errors)
    try:
        frame = pd.DataFrame(batch)
    except Exception:  # pandas itself refuses the shape: not a validation question
        return
    try:
        columns = RULES.validate_frame(frame)
    except RowValidationError as error:
        assert error.errors and all(e.field for e in error.errors)
        return
    assert set(FEATURES) <= set(columns) and all(len(columns[f]) == len(batch) for f in FEATURES)


@settings(max_examples=300, deadline=None)
@given(st.lists(any_row, min_size=1, max_size=5))
def test_validate_records_agrees_with_row_errors(batch) -> None:
    """The pyfunc's path (rows as mappings): a batch is accepted exactly when no row has an error,
    and a refusal names the same rows and fields as row_errors does."""
    expected = [(e.row, e.field) for i, row in enumerate(batch) for e in RULES.row_errors(row, i)]
    try:
        columns = RULES.validate_records(batch)
    except RowValidationError as error:
        assert [(e.row, e.field) for e in error.errors] == expected[:len(error.errors)]
        assert error.total == len(expected) > 0
        return
    assert expected == []
    assert all(len(columns[f]) == len(batch) for f in FEATURES)


def test_the_plain_good_row_validates() -> None:  # the property above is not vacuous
    assert not RULES.row_errors(GOOD_ROW, 0)
    RULES.validate_frame(pd.DataFrame([GOOD_ROW]))
    assert RULES.validate_records([GOOD_ROW])["net_area"].tolist() == [200.0]


@pytest.fixture(scope="module")
def predict_client(fake_model_server_module, redis_module, tmp_path_factory):
    key = f"pv_prop_{secrets.token_urlsafe(16)}"
    settings_ = serving_settings(tmp_path_factory.mktemp("properties"),
                                 f"sqlite:///{tmp_path_factory.mktemp('props-db')}/mlflow.db",
                                 jobs={"queue": f"test-props-{uuid.uuid4().hex[:8]}"})
    app = create_app(supervisor=FixedSupervisor(fake_model_server_module.url, rules=RULES),
                     key_store=EnvKeyStore(key), redis=redis_module, settings=settings_)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["X-API-Key"] = key
        yield client


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_row | json_values, min_size=0, max_size=4))
def test_predict_answers_200_422_or_503_never_500(predict_client, features) -> None:
    # Sent as Python's json writes it: NaN and Infinity included, as careless clients send them.
    body = json.dumps({"model_name": "property_friends_best_model", "features": features})
    answer = predict_client.post("/predict", content=body,
                                 headers={"Content-Type": "application/json"})
    assert answer.status_code in {200, 422, 503}, answer.text
    if answer.status_code == 200:
        assert len(answer.json()["predictions"]) == len(features)
    elif answer.status_code == 422:
        assert answer.json()["detail"]
