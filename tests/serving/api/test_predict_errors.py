"""POST /predict error paths: row validation with the served model's rules, unknown models and
versions, and every way the model server can fail (each answered without a 500)."""

from __future__ import annotations

import copy

import pytest

from serving.api.schemas import SPEC_PREDICT_BODY, ValidationErrorResponse
from tests.support.serving import FixedSupervisor, free_port, make_rules, serving_settings
from valuation.model_runtime.schema import FEATURES


def _body(*rows: dict, **extra) -> dict:
    return {"model_name": "property_friends_best_model", "features": list(rows), **extra}


def _row(**changes) -> dict:
    row = copy.deepcopy(SPEC_PREDICT_BODY["features"][0])
    row.update(changes)
    return row


@pytest.fixture
def fixed_client(make_client, fake_model_server):
    return make_client(supervisor=FixedSupervisor(fake_model_server.url))


def test_the_spec_body_is_forwarded_as_rows_of_the_eight_features(
    fixed_client, auth, fake_model_server
) -> None:
    answer = fixed_client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == "property_friends_best_model"
    assert body["model_version"] == "7"
    assert body["predictions"] == [1000.0]
    assert body["request_id"] == answer.headers["X-Request-ID"]
    sent = fake_model_server.received[-1]
    row = SPEC_PREDICT_BODY["features"][0]
    assert sent == {"inputs": [{name: row[name] for name in FEATURES}]}


def test_every_bad_row_is_named_by_index_and_field(fixed_client, auth, fake_model_server) -> None:
    rows = [
        _row(sector="atlantis"),
        _row(),
        _row(latitude=-20.0, n_rooms=-1),
        {k: v for k, v in _row().items() if k != "net_area"},
        _row(type="castle", net_usable_area="big"),
        "not an object",
    ]
    answer = fixed_client.post("/predict", json=_body(*rows), headers=auth)
    assert answer.status_code == 422, answer.text
    found = {(e["row"], e["field"]) for e in answer.json()["detail"]}
    assert found == {
        (0, "sector"),
        (2, "latitude"), (2, "n_rooms"),
        (3, "net_area"),
        (4, "type"), (4, "net_usable_area"),
        (5, None),
    }
    messages = {(e["row"], e["field"]): e["message"] for e in answer.json()["detail"]}
    assert "atlantis" in messages[(0, "sector")] and "lo barnechea" in messages[(0, "sector")]
    assert "required" in messages[(3, "net_area")]
    assert fake_model_server.received == []  # nothing bad reaches the model server


def test_sectors_come_from_the_served_model(make_client, auth, fake_model_server) -> None:
    rules = make_rules()
    narrow = type(rules).from_dict({**rules.to_dict(), "sectors": ["vitacura"]})
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url, rules=narrow))
    answer = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "sector"
    assert client.post("/predict", json=_body(_row(sector="Vitacura ")), headers=auth).status_code == 200


def test_non_finite_and_boolean_numbers_are_refused(fixed_client, auth) -> None:
    raw = (b'{"model_name": "property_friends_best_model", "features": [{"type": "casa", '
           b'"sector": "vitacura", "net_usable_area": NaN, "net_area": Infinity, "n_rooms": true, '
           b'"n_bathroom": 2, "latitude": -33.4, "longitude": -70.6}]}')
    answer = fixed_client.post("/predict", content=raw,
                               headers={**auth, "Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert {e["field"] for e in answer.json()["detail"]} == {"net_usable_area", "net_area", "n_rooms"}


def test_row_limit_and_empty_batches(make_client, tmp_path, empty_registry, auth,
                                     fake_model_server) -> None:
    settings = serving_settings(tmp_path, empty_registry, proxy={"max_rows": 3})
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url), settings=settings)
    too_many = client.post("/predict", json=_body(*[_row()] * 4), headers=auth)
    assert too_many.status_code == 422
    assert too_many.json()["detail"] == [
        {"row": None, "field": "features", "message": "4 rows exceed the limit of 3"}]
    assert client.post("/predict", json=_body(*[_row()] * 3), headers=auth).status_code == 200
    empty = client.post("/predict", json=_body(), headers=auth)
    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "features"


def test_unknown_model_name_is_404(fixed_client, auth) -> None:
    answer = fixed_client.post("/predict", json={**SPEC_PREDICT_BODY, "model_name": "other"},
                               headers=auth)
    assert answer.status_code == 404
    assert "other" in answer.json()["detail"]


def test_version_or_alias_not_served_is_404(fixed_client, auth) -> None:
    assert fixed_client.post("/predict", json={**SPEC_PREDICT_BODY, "version": "7"},
                             headers=auth).status_code == 200
    missing = fixed_client.post("/predict", json={**SPEC_PREDICT_BODY, "version": "99"},
                                headers=auth)
    assert missing.status_code == 404
    assert "version 99" in missing.json()["detail"] and "7" in missing.json()["detail"]
    alias = fixed_client.post("/predict", json={**SPEC_PREDICT_BODY, "alias": "challenger"},
                              headers=auth)
    assert alias.status_code == 404
    both = fixed_client.post("/predict", json={**SPEC_PREDICT_BODY, "version": "7",
                                               "alias": "champion"}, headers=auth)
    assert both.status_code == 422


def test_nothing_served_is_503_with_the_reason(client, auth) -> None:
    answer = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert answer.status_code == 503
    assert "no model is being served" in answer.json()["detail"]
    assert "no_champion" in answer.json()["detail"]


def test_model_server_refusing_connections_is_503(make_client, auth) -> None:
    client = make_client(supervisor=FixedSupervisor(f"http://127.0.0.1:{free_port()}"))
    answer = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert answer.status_code == 503
    assert "unreachable" in answer.json()["detail"]


def test_model_server_timeout_is_504(make_client, tmp_path, empty_registry, auth,
                                     fake_model_server) -> None:
    fake_model_server.mode = "slow"
    fake_model_server.delay_s = 3.0
    settings = serving_settings(tmp_path, empty_registry, model_server={"request_timeout_s": 0.5})
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url), settings=settings)
    answer = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert answer.status_code == 504
    assert "did not answer in time" in answer.json()["detail"]


def test_model_server_4xx_is_422_with_its_message(fixed_client, auth, fake_model_server) -> None:
    fake_model_server.mode = "bad_request"
    answer = fixed_client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {"row": None, "field": None, "message": "row 0, field 'sector': rejected"}]


@pytest.mark.parametrize("mode", ["error", "garbage"])
def test_model_server_failure_is_502(fixed_client, auth, fake_model_server, mode) -> None:
    fake_model_server.mode = mode
    answer = fixed_client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert answer.status_code == 502
    assert "model version 7" in answer.json()["detail"]


def test_malformed_json_is_400_with_the_position(fixed_client, auth) -> None:
    answer = fixed_client.post("/predict", content=b'{"model_name": "x", "features": [',
                               headers={**auth, "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["detail"]


def test_a_form_encoded_body_is_told_to_send_json(fixed_client, auth) -> None:
    # `curl -d` without -H 'Content-Type: application/json' sends this.
    answer = fixed_client.post("/predict", content=b'{"model_name": "x"}',
                               headers={**auth, "Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 415
    assert "application/json" in answer.json()["detail"]


def test_a_body_without_content_type_is_read_as_json(fixed_client, auth) -> None:
    import json

    answer = fixed_client.post("/predict", content=json.dumps(SPEC_PREDICT_BODY).encode(),
                               headers=auth)
    assert answer.status_code == 200, answer.text


def test_missing_fields_are_422_naming_them(fixed_client, auth) -> None:
    answer = fixed_client.post("/predict", json={"features": []}, headers=auth)
    assert answer.status_code == 422
    assert "model_name" in {e["field"] for e in answer.json()["detail"]}


def test_a_refused_request_and_a_refused_row_have_one_shape(fixed_client, auth) -> None:
    request = fixed_client.post("/predict", json={"features": [], "colour": "red"}, headers=auth)
    row = fixed_client.post("/predict", json=_body(_row(), _row(sector="atlantis")), headers=auth)
    assert (request.status_code, row.status_code) == (422, 422)
    by_field = {e["field"]: e for e in request.json()["detail"]}
    assert by_field["model_name"] == {"row": None, "field": "model_name", "message": "Field required"}
    assert by_field["colour"]["row"] is None and "not permitted" in by_field["colour"]["message"]
    [bad] = row.json()["detail"]
    assert set(bad) == {"row", "field", "message"}
    assert (bad["row"], bad["field"]) == (1, "sector") and "atlantis" in bad["message"]
    for answer in (request, row):
        assert ValidationErrorResponse.model_validate(answer.json()).request_id == \
            answer.headers["X-Request-ID"]


def test_an_oversized_body_is_413(make_client, tmp_path, empty_registry, auth,
                                  fake_model_server) -> None:
    settings = serving_settings(tmp_path, empty_registry, proxy={"max_body_bytes": 2000})
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url), settings=settings)
    answer = client.post("/predict", json=_body(*[_row()] * 20), headers=auth)
    assert answer.status_code == 413
    assert "exceeds the limit of 2000 bytes" in answer.json()["detail"]
    assert answer.json()["request_id"] == answer.headers["X-Request-ID"]
    assert fake_model_server.received == []


def test_an_oversized_streamed_body_is_413(make_client, tmp_path, empty_registry, auth,
                                           fake_model_server) -> None:
    import json

    settings = serving_settings(tmp_path, empty_registry, proxy={"max_body_bytes": 2000})
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url), settings=settings)
    payload = json.dumps(_body(*[_row()] * 20)).encode()

    def chunks():  # no Content-Length: the limit must apply while reading
        for start in range(0, len(payload), 500):
            yield payload[start:start + 500]

    answer = client.post("/predict", content=chunks(),
                         headers={**auth, "Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["request_id"] == answer.headers["X-Request-ID"]
    assert fake_model_server.received == []
