"""POST /train: the spec's body is queued as Project parameters; anything outside the allowlist
is refused with 422 naming the field, and nothing is queued."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from serving.api.overrides import split_overrides
from serving.api.schemas import SPEC_TRAIN_BODY
from serving.jobs.queue import SERIALIZER, fetch_job
from tests.support.serving import free_port, queue_length
from valuation.config import load_config


def _with(path: str, value: Any, base: dict | None = None) -> dict:
    """The spec's body with one nested field replaced (`a.b.c`)."""
    body = copy.deepcopy(base if base is not None else SPEC_TRAIN_BODY)
    *parents, last = path.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return body


def test_the_spec_body_is_accepted_and_queued(client, auth, redis_conn, api_settings) -> None:
    before = queue_length(redis_conn, api_settings)
    answer = client.post("/train", json=SPEC_TRAIN_BODY, headers=auth)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    job_id = body["job_id"]
    assert body["status"] == "queued"
    assert body["status_url"] == f"/job_status/{job_id}"
    assert queue_length(redis_conn, api_settings) == before + 1

    params = body["parameters"]
    assert params["model"] == "gbr"
    assert params["experiment_name"] == "Property-Friends-Experiment"
    assert split_overrides(params["overrides"]) == [
        "experiment_name=Property-Friends-Experiment",
        "data=csv",
        "model.params.learning_rate=0.05",
        "model.params.n_estimators=150",
        "model.params.max_depth=6",
        "model.params.loss=absolute_error",
    ]
    job = fetch_job(redis_conn, job_id)
    assert job.func_name == "serving.jobs.run_training"
    assert job.kwargs == {"model": "gbr", "overrides": params["overrides"],
                          "experiment_name": "Property-Friends-Experiment"}
    assert job.timeout == api_settings.jobs.job_timeout_s
    assert job.meta["submitted_by"]  # the key id, never the key


def test_the_queued_parameters_compose_to_the_requested_config(client, auth) -> None:
    params = client.post("/train", json=SPEC_TRAIN_BODY, headers=auth).json()["parameters"]
    cfg = load_config([f"model={params['model']}", *split_overrides(params["overrides"])])
    assert cfg.model.estimator == "gbr"
    assert cfg.model.params.learning_rate == 0.05
    assert cfg.model.params.n_estimators == 150
    assert cfg.model.params.max_depth == 6
    assert cfg.model.params.loss == "absolute_error"
    assert cfg.data.source == "csv"
    assert cfg.experiment_name == "Property-Friends-Experiment"


def test_an_empty_body_keeps_every_default(client, auth) -> None:
    answer = client.post("/train", json={}, headers=auth)
    assert answer.status_code == 202, answer.text
    params = answer.json()["parameters"]
    defaults = load_config()
    assert params == {"model": "", "overrides": "", "experiment_name": defaults.experiment_name}


def test_job_status_of_a_queued_job(client, auth) -> None:
    job_id = client.post("/train", json=SPEC_TRAIN_BODY, headers=auth).json()["job_id"]
    answer = client.get(f"/job_status/{job_id}", headers=auth)
    assert answer.status_code == 200
    status = answer.json()
    assert status["job_id"] == job_id
    assert status["status"] == "queued"
    assert status["progress"] == {"step": "queued", "fraction": 0.0, "message": "waiting for a worker"}
    assert status["run_id"] is None and status["error"] is None


def test_unknown_job_id_is_404(client, auth) -> None:
    answer = client.get("/job_status/00000000-0000-0000-0000-000000000000", headers=auth)
    assert answer.status_code == 404
    assert "unknown job id" in answer.json()["detail"]


def test_source_settings_become_data_overrides(client, auth) -> None:
    body = _with("db_config", {"db_type": "sample", "db_config": {"n_train": 500, "seed": 3}})
    answer = client.post("/train", json=body, headers=auth)
    assert answer.status_code == 202, answer.text
    overrides = split_overrides(answer.json()["parameters"]["overrides"])
    assert "data=sample" in overrides
    assert "data.n_train=500" in overrides and "data.seed=3" in overrides


def test_awkward_strings_reach_hydra_unchanged(client, auth) -> None:
    path = "/data/my files/it's \"q\" $HOME;rm -rf x.csv"
    body = _with("db_config", {"db_type": "csv", "db_config": {"train_path": path}})
    body["experiment_config"]["experiment_name"] = "true"  # must stay a string
    answer = client.post("/train", json=body, headers=auth)
    assert answer.status_code == 202, answer.text
    params = answer.json()["parameters"]
    cfg = load_config([f"model={params['model']}", *split_overrides(params["overrides"])])
    assert cfg.data.train_path == path
    assert cfg.experiment_name == "true" and params["experiment_name"] == "true"


def test_a_param_missing_from_the_group_yaml_is_added(client, auth) -> None:
    body = _with("pipeline_config.params", {"subsample": 0.8})
    answer = client.post("/train", json=body, headers=auth)
    assert answer.status_code == 202, answer.text
    params = answer.json()["parameters"]
    cfg = load_config([f"model={params['model']}", *split_overrides(params["overrides"])])
    assert cfg.model.params.subsample == 0.8


REFUSED = [
    # estimators outside the allowlist, including import tricks
    ("pipeline_config", {"model_module": "os", "model": "system"}, "pipeline_config.model"),
    ("pipeline_config", {"model_module": "subprocess", "model": "Popen"}, "pipeline_config.model"),
    ("pipeline_config", {"model_module": "builtins", "model": "eval"}, "pipeline_config.model"),
    ("pipeline_config", {"model_module": "sklearn.ensemble.os", "model": "system"},
     "pipeline_config.model"),
    ("pipeline_config", {"model_module": "sklearn.ensemble", "model": "os.system"},
     "pipeline_config.model"),
    ("pipeline_config", {"model_module": "sklearn", "model": "ensemble.GradientBoostingRegressor"},
     "pipeline_config.model"),
    ("pipeline_config", {"model_module": "sklearn.ensemble", "model": "__class__"},
     "pipeline_config.model"),
    # params: callables/objects by name, containers, unknown names, interpolations
    ("pipeline_config.params", {"init": "sklearn.dummy.DummyRegressor"},
     "pipeline_config.params.init"),
    ("pipeline_config.params", {"loss": {"__callable__": "os.system"}}, "pipeline_config.params.loss"),
    ("pipeline_config.params", {"max_depth": [1, 2]}, "pipeline_config.params.max_depth"),
    ("pipeline_config.params", {"no_such_param": 1}, "pipeline_config.params.no_such_param"),
    ("pipeline_config.params", {"loss": "${oc.env:API_KEY}"}, "pipeline_config.params.loss"),
    ("pipeline_config.params", "RAW: learning_rate Infinity", "pipeline_config.params.learning_rate"),
    # data: only our columns
    ("data_config.target", "rent", "data_config.target"),
    ("data_config.train_cols", ["type", "sector", "price"], "data_config.train_cols"),
    ("data_config.categorical_columns", ["type", "type"], "data_config.categorical_columns"),
    # sources: known types and keys only, typed values
    ("db_config", {"db_type": "mysql", "db_config": {}}, "db_config.db_type"),
    ("db_config", {"db_type": "postgres", "db_config": {"url": "postgresql://x"}},
     "db_config.db_config.url"),
    ("db_config", {"db_type": "postgres", "db_config": {"url_env": "HOME"}},
     "db_config.db_config.url_env"),
    ("db_config", {"db_type": "sample", "db_config": {"n_train": "many"}},
     "db_config.db_config.n_train"),
    ("db_config", {"db_type": "csv", "db_config": {"train_path": "${oc.env:API_KEY}"}},
     "db_config.db_config.train_path"),
    ("experiment_config.experiment_name", " ", "experiment_config.experiment_name"),
    ("experiment_config.experiment_name", "", "experiment_config.experiment_name"),
    ("experiment_config.unknown_field", 1, "experiment_config.unknown_field"),
]


@pytest.mark.parametrize(("path", "value", "field"), REFUSED)
def test_refused_bodies_name_the_field_and_queue_nothing(
    client, auth, redis_conn: Redis, api_settings, path, value, field
) -> None:
    before = queue_length(redis_conn, api_settings)
    if value == "RAW: learning_rate Infinity":  # JSON's non-standard Infinity, sent as text
        answer = client.post(
            "/train", headers={**auth, "Content-Type": "application/json"},
            content=b'{"pipeline_config": {"model_module": "sklearn.ensemble", '
                    b'"model": "GradientBoostingRegressor", "params": {"learning_rate": Infinity}}}',
        )
    else:
        answer = client.post("/train", json=_with(path, value), headers=auth)
    assert answer.status_code == 422, answer.text
    assert field in {error["field"] for error in answer.json()["detail"]}, answer.text
    assert queue_length(redis_conn, api_settings) == before
    assert Queue(api_settings.jobs.queue, connection=redis_conn, serializer=SERIALIZER).count == 0


def test_refusal_message_lists_the_allowed_estimators(client, auth) -> None:
    answer = client.post("/train", json=_with("pipeline_config",
                                               {"model_module": "os", "model": "system"}),
                         headers=auth)
    message = answer.json()["detail"][0]["message"]
    assert "os.system" in message and "sklearn.ensemble.GradientBoostingRegressor" in message


def test_redis_down_is_503_not_500(make_client, auth) -> None:
    dead = Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.5, socket_connect_timeout=0.5)
    client = make_client(redis=dead)
    answer = client.post("/train", json=SPEC_TRAIN_BODY, headers=auth)
    assert answer.status_code == 503
    assert "Redis" in answer.json()["detail"]
    assert client.get("/job_status/x", headers=auth).status_code == 503
