"""POST /feedback and the prediction store inside the proxy, with a real `mlflow models serve` of
the tiny model (its rules check features) and the store in a real SQLite file (the PostgreSQL
store is covered through the real stack, tests/serving/devstack/test_prediction_store.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from serving.api.schemas import SPEC_PREDICT_BODY
from serving.ports import free_port
from serving.prediction_store.engine import open_engine
from serving.prediction_store.queries import feedback_rows, predictions_window

pytestmark = pytest.mark.slow

SALE = {"observed_price": 21500.0, "observed_at": "2026-01-15T00:00:00Z", "kind": "sale"}


@pytest.fixture
def store_url(api_settings) -> str:
    return api_settings.prediction_store.url


@pytest.fixture
def model_client(make_client, serving_supervisor):
    return make_client(supervisor=serving_supervisor)


def predict(client, auth, rows=None, **extra) -> dict:
    body = {**SPEC_PREDICT_BODY, **extra}
    if rows is not None:
        body["features"] = rows
    answer = client.post("/predict", json=body, headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_prediction_is_stored_and_its_observed_price_recorded_once(
        model_client, auth, store_url, api_settings) -> None:
    priced = predict(model_client, auth)
    body = {"observations": [{**SALE, "request_id": priced["request_id"], "row_index": 0}]}
    first = model_client.post("/feedback", json=body, headers=auth)  # waits for the buffered row
    assert first.status_code == 200, first.text
    stored = predictions_window(open_engine(store_url))
    assert list(stored.request_id) == [priced["request_id"]]
    assert stored.price.iloc[0] == priced["predictions"][0]
    assert (stored.served_alias.iloc[0], stored.model_version.iloc[0]) == ("champion",
                                                                           priced["model_version"])
    answer = first.json()
    assert (answer["recorded"], answer["duplicates"]) == (1, 0)
    assert answer["observations"][0]["prediction_id"] == int(stored.id.iloc[0])

    again = model_client.post("/feedback", json=body, headers=auth)
    assert again.status_code == 200
    assert (again.json()["recorded"], again.json()["duplicates"]) == (0, 1)
    assert again.json()["observations"][0]["id"] == answer["observations"][0]["id"]
    assert len(feedback_rows(open_engine(store_url))) == 1

    trail = Path(api_settings.audit.path).read_text().splitlines()
    events = [json.loads(line) for line in trail if '"feedback"' in line]
    assert [e["status"] for e in events] == [200, 200]
    assert events[0]["outputs"]["recorded"] == 1 and events[0]["inputs"] == body["observations"]


def test_an_explicit_version_and_features_are_matched(model_client, auth, store_url,
                                                      trained_model) -> None:
    row = {**SPEC_PREDICT_BODY["features"][0], "net_area": 510.0}
    predict(model_client, auth, [row])
    pinned = predict(model_client, auth, [row], version=trained_model.version)  # the latest
    answer = model_client.post("/feedback", headers=auth, json={"observations": [
        {**SALE, "features": {**row, "sector": "Lo Barnechea"}, "kind": "appraisal"}]})
    assert answer.status_code == 200, answer.text
    stored = predictions_window(open_engine(store_url))
    latest = stored[stored.request_id == pinned["request_id"]].iloc[0]
    assert latest.served_alias == "explicit"
    assert answer.json()["observations"][0]["prediction_id"] == int(latest.id)


def test_bad_observations_are_refused_naming_row_and_field(model_client, auth, store_url) -> None:
    priced = predict(model_client, auth)
    good = {**SALE, "request_id": priced["request_id"], "row_index": 0}
    answer = model_client.post("/feedback", headers=auth, json={"observations": [
        good, {**SALE, "kind": "rent", "features": {**SPEC_PREDICT_BODY["features"][0],
                                                    "sector": "atlantis"}}]})
    assert answer.status_code == 422
    assert {(e["row"], e["field"]) for e in answer.json()["detail"]} == {(1, "kind"), (1, "sector")}

    beyond = model_client.post("/feedback", headers=auth,
                               json={"observations": [good, {**good, "row_index": 5}]})
    assert beyond.status_code == 422
    assert [(e["row"], e["field"]) for e in beyond.json()["detail"]] == [(1, "row_index")]

    unknown = model_client.post("/feedback", headers=auth, json={"observations": [
        good, {**SALE, "request_id": "never-answered", "row_index": 0}]})
    assert unknown.status_code == 404
    assert "never-answered" in unknown.json()["detail"] and "row 1" in unknown.json()["detail"]
    assert feedback_rows(open_engine(store_url)).empty  # all or nothing

    empty = model_client.post("/feedback", headers=auth, json={"observations": []})
    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "observations"


def test_predictions_flow_while_the_store_is_down_and_the_loss_is_counted(
        make_client, serving_supervisor, api_settings, auth) -> None:
    down = OmegaConf.merge(api_settings, {"prediction_store": {
        "url": f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test",  # nobody listens
        "buffer_rows": 2, "connect_timeout_s": 1}})
    client = make_client(supervisor=serving_supervisor, settings=down)
    for _ in range(5):
        predict(client, auth)
    metrics = client.get("/metrics").text
    assert 'valuation_prediction_store_dropped_total{reason="buffer_full"} 3.0' in metrics
    assert "valuation_prediction_store_buffered_rows" in metrics
    refused = client.post("/feedback", headers=auth,
                          json={"observations": [{**SALE, "request_id": "x", "row_index": 0}]})
    assert refused.status_code == 503 and "retry" in refused.json()["detail"]


def test_a_disabled_store_answers_feedback_with_503(make_client, serving_supervisor, api_settings,
                                                    auth, store_url) -> None:
    off = OmegaConf.merge(api_settings, {"prediction_store": {"enabled": False}})
    client = make_client(supervisor=serving_supervisor, settings=off)
    predict(client, auth)
    answer = client.post("/feedback", headers=auth,
                         json={"observations": [{**SALE, "request_id": "x", "row_index": 0}]})
    assert answer.status_code == 503 and "prediction_store.enabled" in answer.json()["detail"]
    assert not Path(store_url.removeprefix("sqlite:///")).exists()  # never opened
