"""Hardening beyond test_train.py's refusals: more import tricks through /train (nothing may be
imported from a request), and job ids RQ would refuse."""

from __future__ import annotations

import sys

import pytest

from serving.api.schemas import SPEC_TRAIN_BODY
from tests.api.support import queue_length

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
