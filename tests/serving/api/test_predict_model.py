"""POST /predict against a real `mlflow models serve` of a model trained by the project's own
pipeline (on synthetic data), supervised by the real ModelServerSupervisor."""

from __future__ import annotations

import copy
import math

import pytest

from serving.api.schemas import SPEC_PREDICT_BODY

pytestmark = pytest.mark.slow


@pytest.fixture
def model_client(make_client, serving_supervisor):
    return make_client(supervisor=serving_supervisor)


def test_the_spec_body_gets_a_price(model_client, auth, trained_model) -> None:
    answer = model_client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == "property_friends_best_model"
    assert body["model_version"] == trained_model.version
    assert len(body["predictions"]) == 1
    assert math.isfinite(body["predictions"][0]) and body["predictions"][0] > 0
    assert body["request_id"] == answer.headers["X-Request-ID"]


def test_a_batch_keeps_row_order(model_client, auth) -> None:
    small = copy.deepcopy(SPEC_PREDICT_BODY["features"][0])
    small.update(net_usable_area=40.0, net_area=45.0, n_rooms=1.0, n_bathroom=1.0,
                 type="departamento")
    big = SPEC_PREDICT_BODY["features"][0]
    batch = {"model_name": "property_friends_best_model", "features": [small, big, small]}
    prices = model_client.post("/predict", json=batch, headers=auth).json()["predictions"]
    assert len(prices) == 3
    assert prices[0] == pytest.approx(prices[2])
    assert prices[1] > prices[0]  # a 300 m2 house in Lo Barnechea beats a 40 m2 flat


def test_version_and_alias_pick_the_served_model(model_client, auth, trained_model) -> None:
    pinned = model_client.post("/predict", headers=auth,
                               json={**SPEC_PREDICT_BODY, "version": trained_model.version})
    assert pinned.status_code == 200 and pinned.json()["model_version"] == trained_model.version
    alias = model_client.post("/predict", headers=auth,
                              json={**SPEC_PREDICT_BODY, "alias": "champion"})
    assert alias.status_code == 200
    missing = model_client.post("/predict", headers=auth,
                                json={**SPEC_PREDICT_BODY, "version": "999"})
    assert missing.status_code == 404


def test_rules_are_the_models_own(model_client, auth, serving_supervisor) -> None:
    rules = serving_supervisor.current().rules
    assert "lo barnechea" in rules.sectors  # read from the logged model's metadata
    row = copy.deepcopy(SPEC_PREDICT_BODY["features"][0])
    row["sector"] = "atlantis"
    answer = model_client.post("/predict", headers=auth,
                               json={"model_name": "property_friends_best_model",
                                     "features": [SPEC_PREDICT_BODY["features"][0], row]})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["row"] == 1
    assert answer.json()["detail"][0]["field"] == "sector"


def test_ready_when_the_champion_is_served(model_client) -> None:
    answer = model_client.get("/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"]["model_server"]["state"] == "serving"


def test_predictions_are_counted(model_client, auth, trained_model) -> None:
    model_client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    metrics = model_client.get("/metrics").text
    assert f'valuation_predictions_total{{model_version="{trained_model.version}"}} 1.0' in metrics
    assert (f'valuation_prediction_requests_total{{model_version="{trained_model.version}",'
            f'outcome="ok"}} 1.0') in metrics
