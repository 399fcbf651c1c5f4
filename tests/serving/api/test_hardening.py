"""Hardening beyond test_train.py's refusals: more import tricks through /train (nothing may be
imported from a request), job ids RQ would refuse, and graceful degradation of /predict."""

from __future__ import annotations

import sys

import pytest

from serving.api.schemas import SPEC_PREDICT_BODY, SPEC_TRAIN_BODY
from tests.support.serving import FixedSupervisor, queue_length

GBR = {"model_module": "sklearn.ensemble", "model": "GradientBoostingRegressor"}

IMPORT_TRICKS = [
    {"model_module": "importlib", "model": "import_module"},
    {"model_module": "builtins", "model": "__import__"},
    {"model_module": "builtins", "model": "exec"},
    {"model_module": "os.path", "model": "join"},
    {"model_module": "pickle", "model": "loads"},
    {"model_module": "sklearn.ensemble", "model": "GradientBoostingRegressor.__init__.__globals__"},
    {"model_module": "sklearn.ensemble.GradientBoostingRegressor", "model": "fit"},
    {"model_module": " sklearn.ensemble", "model": "GradientBoostingRegressor\x00os"},
    {"model_module": "lightgbm", "model": "LGBMRegressor; import os"},
    {"model_module": "__main__", "model": "app"},
    {"model_module": "", "model": ""},
]


@pytest.mark.parametrize("pipeline", IMPORT_TRICKS, ids=lambda p: f"{p['model_module']}:{p['model']}")
def test_train_imports_nothing_outside_the_allowlist(client, auth, redis_conn, api_settings,
                                                     pipeline) -> None:
    modules_before = set(sys.modules)
    before = queue_length(redis_conn, api_settings)
    body = {**SPEC_TRAIN_BODY, "pipeline_config": {**pipeline, "params": {}}}
    answer = client.post("/train", json=body, headers=auth)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["field"] == "pipeline_config.model"
    assert queue_length(redis_conn, api_settings) == before
    named = pipeline["model_module"].strip()
    if named and named not in modules_before:
        assert named not in sys.modules  # the request did not make us import it


@pytest.mark.parametrize("value", [
    {"__class__": "os.system"},
    {"module": "os", "name": "system"},
    ["os", "system"],
    {"__reduce__": ["os.system", ["id"]]},
])
def test_train_params_that_are_containers_are_refused(client, auth, redis_conn, api_settings,
                                                      value) -> None:
    before = queue_length(redis_conn, api_settings)
    body = {**SPEC_TRAIN_BODY, "pipeline_config": {**GBR, "params": {"init": value}}}
    answer = client.post("/train", json=body, headers=auth)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["field"] == "pipeline_config.params.init"
    assert queue_length(redis_conn, api_settings) == before


@pytest.mark.parametrize("job_id", ["ünïcode", "a b", "a.b", "x;y", "%00"])
def test_job_ids_rq_would_refuse_are_404_not_503(client, auth, job_id) -> None:
    answer = client.get(f"/job_status/{job_id}", headers=auth)
    assert answer.status_code == 404, answer.text
    assert "unknown job id" in answer.json()["detail"]


# --- graceful degradation ----------------------------------------------------------------------


class ChampionDownSupervisor(FixedSupervisor):
    """The champion's server is down while another version (here 6) is still loaded. Stands in
    for the real supervisor: producing this state for real needs two trained versions and a
    killed server, which the supervisor's own tests cover; here the proxy's answer is tested."""

    def __init__(self, base_url: str, loaded: list[dict]) -> None:
        super().__init__(base_url, version="6")
        self.loaded = loaded

    def current(self):
        return None

    def status(self):
        return {"state": "down", "version": "7", "detail": "version 7 exited with 137",
                "servers": self.loaded}


def test_champion_down_serves_a_loaded_version_and_says_so(make_client, fake_model_server, auth):
    loaded = [{"version": "6", "phase": "ready"}, {"version": "7", "phase": "starting"}]
    client = make_client(supervisor=ChampionDownSupervisor(fake_model_server.url, loaded))
    answer = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["degraded"] is True and body["served_version"] == "6" == body["model_version"]
    assert "champion" in body["degraded_reason"] and "137" in body["degraded_reason"]
    # A request naming a version or alias is not redirected to another one.
    pinned = client.post("/predict", json={**SPEC_PREDICT_BODY, "alias": "champion"}, headers=auth)
    assert pinned.status_code == 503


def test_champion_down_and_nothing_else_loaded_is_503(make_client, fake_model_server, auth):
    loaded = [{"version": "7", "phase": "starting"}]
    client = make_client(supervisor=ChampionDownSupervisor(fake_model_server.url, loaded))
    answer = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert answer.status_code == 503
    assert "no model is being served" in answer.json()["detail"]


def test_a_healthy_champion_is_not_flagged(make_client, fake_model_server, auth):
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url))
    body = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth).json()
    assert "degraded" not in body and body["model_version"] == "7"
