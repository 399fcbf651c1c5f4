"""Issue 12 through the real stack (`python -m serving.devstack`): a LightGBM champion trained
through POST /train answers one /predict asking for an interval, an explanation and comparables;
a `predict` key (made with the operator's CLI against the stack's Vault) may not see comparables."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from serving.api.schemas import SPEC_BEST_MODEL_BODY, SPEC_PREDICT_BODY, SPEC_TRAIN_BODY
from tests.support.stack import RunningStack, champion_through_api, operator_key

pytestmark = pytest.mark.slow

KEY_KNOWN_TIMEOUT_S = 120
# The default estimator (TreeSHAP explanations need LightGBM) on the synthetic sample, kept small.
LGBM_TRAIN_BODY = {
    **SPEC_TRAIN_BODY,
    "db_config": {"db_type": "sample", "db_config": {"n_train": 800, "n_test": 200}},
    "pipeline_config": {"model_module": "lightgbm", "model": "LGBMRegressor",
                        "params": {"n_estimators": 40}},
}
ALL_THREE = {**SPEC_PREDICT_BODY, "interval": 0.8, "explain": True, "comparables": 3}


@pytest.fixture(scope="module")
def champion(stack: RunningStack, stack_client: httpx.Client) -> str:
    return champion_through_api(stack_client, stack, LGBM_TRAIN_BODY, SPEC_BEST_MODEL_BODY,
                                SPEC_PREDICT_BODY)


def test_one_request_gets_an_interval_an_explanation_and_comparables(
        stack: RunningStack, stack_client: httpx.Client, champion: str) -> None:
    answer = stack_client.post("/predict", json=ALL_THREE, headers=stack.headers())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == champion
    [price] = body["predictions"]
    [interval] = body["intervals"]
    assert interval["level"] == 0.8 and interval["lower"] < price < interval["upper"]
    [explanation] = body["explanations"]
    assert explanation["space"] == "log_price"
    assert explanation["base"] + sum(explanation["contributions"].values()) == pytest.approx(
        math.log(price), abs=1e-6)
    assert set(explanation["contributions"]) == {*SPEC_PREDICT_BODY["features"][0],
                                                 "similar_listings"}
    [listings] = body["comparables"]
    assert len(listings) == 3 and all(item["type"] == "casa" and item["price"] > 0 for item in listings)
    plain = stack_client.post("/predict", json=SPEC_PREDICT_BODY, headers=stack.headers()).json()
    assert plain["predictions"] == pytest.approx(body["predictions"])
    assert set(plain) >= {"predictions"} and "intervals" not in plain


def test_a_predict_key_may_not_see_comparables(
        stack: RunningStack, stack_client: httpx.Client, champion: str) -> None:
    key = operator_key(stack, "extras", "predict")
    deadline = time.monotonic() + KEY_KNOWN_TIMEOUT_S
    while (answer := stack_client.post("/predict", json=ALL_THREE, headers=stack.headers(key))
           ).status_code == 401:
        assert time.monotonic() < deadline, "the proxy never learnt the new key"
        time.sleep(1)
    assert answer.status_code == 403, answer.text
    assert "comparables" in answer.json()["detail"] and "predict" in answer.json()["detail"]
    without = {key_: value for key_, value in ALL_THREE.items() if key_ != "comparables"}
    allowed = stack_client.post("/predict", json=without, headers=stack.headers(key))
    assert allowed.status_code == 200 and allowed.json()["intervals"], allowed.text
