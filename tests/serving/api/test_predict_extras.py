"""POST /predict with `interval`, `explain` and `comparables`, against a real `mlflow models serve`
of the pipeline's tiny model (GradientBoostingRegressor, so it has intervals and comparables but
no TreeSHAP explanations: the 409 path is real too)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from serving.api.extras import Extras, for_model
from serving.api.schemas import SPEC_PREDICT_BODY
from serving.model_servers.served import ServedModel
from tests.support.serving import make_rules
from valuation.model_runtime.schema import FEATURES

FLAT = {"type": "departamento", "sector": "providencia", "net_usable_area": 60.0, "net_area": 65.0,
        "n_rooms": 2.0, "n_bathroom": 1.0, "latitude": -33.43, "longitude": -70.61}


@pytest.fixture
def model_client(make_client, serving_supervisor):
    return make_client(supervisor=serving_supervisor)


def _body(**extras) -> dict:
    return {**copy.deepcopy(SPEC_PREDICT_BODY), "features": [SPEC_PREDICT_BODY["features"][0], FLAT],
            **extras}


@pytest.mark.slow
def test_intervals_hold_each_price(model_client, auth) -> None:
    plain = model_client.post("/predict", json=_body(), headers=auth)
    assert plain.status_code == 200, plain.text
    assert "intervals" not in plain.json()  # nothing asked, nothing added
    answer = model_client.post("/predict", json=_body(interval=0.8), headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["predictions"] == pytest.approx(plain.json()["predictions"])
    assert len(body["intervals"]) == 2
    for price, interval in zip(body["predictions"], body["intervals"], strict=True):
        assert interval["level"] == 0.8
        assert interval["lower"] < price < interval["upper"]
    wider = model_client.post("/predict", json=_body(interval=0.95), headers=auth).json()
    for narrow, wide in zip(body["intervals"], wider["intervals"], strict=True):
        assert wide["lower"] <= narrow["lower"] and wide["upper"] >= narrow["upper"]


@pytest.mark.slow
@pytest.mark.parametrize("field, value", [("interval", 0.3), ("interval", 1.2), ("interval", "high"),
                                          ("comparables", 11), ("comparables", -1)])
def test_out_of_range_extras_are_422_naming_the_field(model_client, auth, field, value) -> None:
    answer = model_client.post("/predict", json=_body(**{field: value}), headers=auth)
    assert answer.status_code == 422, answer.text
    assert [error["field"] for error in answer.json()["detail"]] == [field]


@pytest.mark.slow
def test_comparables_come_from_the_training_listings_and_are_audited(
        model_client, auth, api_settings) -> None:
    answer = model_client.post("/predict", json=_body(comparables=3), headers=auth)
    assert answer.status_code == 200, answer.text
    found = answer.json()["comparables"]
    assert [len(listings) for listings in found] == [3, 3]
    for row, listings in zip(_body()["features"], found, strict=True):
        assert all(set(FEATURES) | {"price", "distance"} == set(item) for item in listings)
        assert all(item["type"] == row["type"] for item in listings)
        assert [item["distance"] for item in listings] == sorted(item["distance"] for item in listings)
    events = [json.loads(line) for line in Path(api_settings.audit.path).read_text().splitlines()]
    [event] = [e for e in events if e["action"] == "predict" and e.get("extras")]
    assert event["extras"] == {"returned": ["comparables"], "comparables_per_row": [3, 3]}


@pytest.mark.slow
def test_explanations_from_a_model_that_cannot_give_them_are_409(
        model_client, auth, trained_model) -> None:
    answer = model_client.post("/predict", json=_body(explain=True), headers=auth)
    assert answer.status_code == 409, answer.text
    assert answer.json()["detail"].startswith(
        f"model version {trained_model.version} has no explanations")


def test_a_version_without_calibration_is_named_not_silently_plain() -> None:
    # What the proxy reads of a version logged before extras existed: metadata without the list.
    old = ServedModel("property_friends_best_model", "3", "http://127.0.0.1:1", make_rules(), {})
    with pytest.raises(Exception) as refused:
        for_model(Extras(interval=0.8, interval_asked=True), old)
    assert refused.value.status_code == 409
    assert refused.value.detail.startswith("model version 3 has no interval calibration")
    # An interval the config adds unasked is dropped for such a version, not an error.
    assert not for_model(Extras(interval=0.8, interval_asked=False), old).any
