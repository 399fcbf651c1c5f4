"""POST /best_model: ranks finished evaluation runs, registers the winner once, moves champion;
a winner that failed evaluate's thresholds is refused unless forced."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

from serving.api.schemas import SPEC_BEST_MODEL_BODY
from tests.support.serving import MODEL_NAME, child_env, serving_settings
from valuation.registry import alias_history

EXPERIMENT = "Property-Friends-Experiment"
GATED = "gated-experiment"  # its best run by mse failed evaluate's thresholds
FAILED = "rmse 9000 vs 8000, r2 0.5 vs 0.7"  # what evaluate writes in valuation.failed_thresholds

# Logs two tiny real pyfunc models and evaluation runs around them, in a child interpreter so
# MLflow's global state stays out of the test process.
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import mlflow
    from mlflow import MlflowClient

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [1.0] * len(model_input)

    mlflow.set_tracking_uri(sys.argv[1])
    client = MlflowClient()
    experiment = client.create_experiment(sys.argv[2])
    client.create_experiment("empty-experiment")
    mlflow.set_experiment(sys.argv[2])
    uris = []
    for _ in range(3):
        with mlflow.start_run():
            uris.append(mlflow.pyfunc.log_model(name="model", python_model=Constant()).model_uri)

    def run(step, status, metrics, model_uri, experiment=experiment, **tags):
        created = client.create_run(experiment, tags={"valuation.step": step, **tags,
                                                     **({"valuation.model_uri": model_uri}
                                                        if model_uri else {})})
        for key, value in metrics.items():
            client.log_metric(created.info.run_id, key, value)
        client.set_terminated(created.info.run_id, status)
        return created.info.run_id

    runs = {
        "a": run("evaluate", "FINISHED", {"test_mse": 10.0, "test_r2": 0.5}, uris[0]),
        "b": run("evaluate", "FINISHED", {"test_mse": 5.0, "test_r2": 0.4}, uris[1]),
        "failed": run("evaluate", "FAILED", {"test_mse": 1.0, "test_r2": 0.9}, uris[2]),
        "train": run("train", "FINISHED", {"test_mse": 0.5, "test_r2": 0.99}, uris[2]),
        "no_uri": run("evaluate", "FINISHED", {"test_mse": 2.0, "test_r2": 0.95}, None),
        "no_metric": run("evaluate", "FINISHED", {"test_mae": 1.0}, uris[2]),
    }
    gated = client.create_experiment(sys.argv[3])
    runs["unvalidated"] = run("evaluate", "FINISHED", {"test_mse": 1.0}, uris[0], gated,
                              **{"valuation.validated": "false",
                                 "valuation.failed_thresholds": sys.argv[4]})
    runs["validated"] = run("evaluate", "FINISHED", {"test_mse": 3.0}, uris[1], gated,
                            **{"valuation.validated": "true"})
    print("OUT=" + json.dumps({"uris": uris, "runs": runs}))
    """
)


@pytest.fixture
def registry_store(tmp_path: Path) -> dict:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", _SCRIPT, uri, EXPERIMENT, GATED, FAILED],
                          cwd=tmp_path,
                          env=child_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(next(line for line in done.stdout.splitlines()
                          if line.startswith("OUT=")).removeprefix("OUT="))
    return {"uri": uri, **out}


@pytest.fixture
def registry_settings(tmp_path, registry_store):
    return serving_settings(tmp_path, registry_store["uri"])


@pytest.fixture
def registry_client(make_client, registry_settings):
    return make_client(settings=registry_settings)


def _body(**changes) -> dict:
    return {"experiment_config": {**SPEC_BEST_MODEL_BODY["experiment_config"], **changes}}


@pytest.mark.slow
def test_best_model_registers_the_winner_once_and_moves_champion(
    registry_client, registry_store, auth, key_store, api_key
) -> None:
    client = MlflowClient(tracking_uri=registry_store["uri"], registry_uri=registry_store["uri"])
    answer = registry_client.post("/best_model", json=SPEC_BEST_MODEL_BODY, headers=auth)
    assert answer.status_code == 200, answer.text
    first = answer.json()
    assert first == {"model_name": MODEL_NAME, "version": "1", "run_id": registry_store["runs"]["b"],
                     "metric": "test_mse", "value": 5.0, "alias": "champion", "registered": True,
                     "previous_version": None}
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "1"
    version = client.get_model_version(MODEL_NAME, "1")
    assert version.tags["valuation.model_uri"] == registry_store["uris"][1]
    move = alias_history(client, MODEL_NAME)[-1]
    assert move.reason == "best_model by test_mse (min)"
    assert move.actor == key_store.verify(api_key).key_id  # the key id, never the key

    again = registry_client.post("/best_model", json=SPEC_BEST_MODEL_BODY, headers=auth).json()
    assert (again["version"], again["registered"], again["previous_version"]) == ("1", False, "1")
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == 1

    # r2 ranks highest-first by default; failed, non-evaluate and URI-less runs never win.
    by_r2 = registry_client.post("/best_model", json=_body(metric="r2", metric_goal=None),
                                 headers=auth).json()
    assert by_r2["run_id"] == registry_store["runs"]["a"] and by_r2["value"] == 0.5
    assert (by_r2["version"], by_r2["registered"], by_r2["previous_version"]) == ("2", True, "1")
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "2"

    worst_mse = registry_client.post("/best_model", json=_body(metric_goal="max"),
                                     headers=auth).json()
    assert worst_mse["run_id"] == registry_store["runs"]["a"] and worst_mse["registered"] is False

    models = registry_client.get("/models", headers=auth)
    assert models.status_code == 200
    assert models.json()["aliases"]["champion"] == "2"
    assert [m["to_version"] for m in models.json()["alias_history"]] == ["1", "1", "2", "2"]
    champion = models.json()["versions"]["champion"]  # what /ui/ops shows
    assert champion["version"] == "2" and champion["registered_by"] == "best_model"
    assert champion["metrics"] == {"test_mse": 10.0, "test_r2": 0.5}


@pytest.mark.slow
def test_best_model_errors(registry_client, auth) -> None:
    unknown = registry_client.post("/best_model", json=_body(experiment_name="nope"), headers=auth)
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]

    empty = registry_client.post("/best_model", json=_body(experiment_name="empty-experiment"),
                                 headers=auth)
    assert empty.status_code == 404 and "no finished evaluation runs" in empty.json()["detail"]

    metric = registry_client.post("/best_model", json=_body(metric="accuracy"), headers=auth)
    assert metric.status_code == 422
    assert metric.json()["detail"][0]["field"] == "experiment_config.metric"

    goal = registry_client.post("/best_model", json=_body(metric_goal="biggest"), headers=auth)
    assert goal.status_code == 422

    missing = registry_client.post("/best_model", json={"experiment_config": {}}, headers=auth)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["field"] == "experiment_config.experiment_name"

    # Found by schemathesis: MLflow refuses an empty name, which used to come back as a 503.
    blank = registry_client.post("/best_model", json=_body(experiment_name=""), headers=auth)
    assert blank.status_code == 422
    assert blank.json()["detail"][0]["field"] == "experiment_config.experiment_name"


def _audited_promotions(settings) -> list[dict]:
    lines = Path(settings.audit.path).read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["action"] == "promote:best_model"]


@pytest.mark.slow
def test_a_winner_that_failed_its_thresholds_is_refused_unless_forced(
    registry_client, registry_store, registry_settings, auth, key_store, api_key
) -> None:
    client = MlflowClient(tracking_uri=registry_store["uri"], registry_uri=registry_store["uri"])
    refused = registry_client.post("/best_model", json=_body(experiment_name=GATED), headers=auth)
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert FAILED in detail and registry_store["runs"]["unvalidated"] in detail
    assert '"force": true' in detail
    assert client.search_model_versions(f"name = '{MODEL_NAME}'") == []  # nothing registered
    assert alias_history(client, MODEL_NAME) == []

    forced = registry_client.post("/best_model", json={**_body(experiment_name=GATED),
                                                       "force": True}, headers=auth)
    assert forced.status_code == 200, forced.text
    assert forced.json()["run_id"] == registry_store["runs"]["unvalidated"]
    assert forced.json()["version"] == "1" and forced.json()["value"] == 1.0
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "1"
    assert client.get_model_version(MODEL_NAME, "1").tags["valuation.validated"] == "false"
    move = alias_history(client, MODEL_NAME)[-1]
    assert move.reason == f"best_model by test_mse (min), forced past failed thresholds: {FAILED}"
    assert move.actor == key_store.verify(api_key).key_id

    audited = _audited_promotions(registry_settings)
    assert [(e["status"], e["inputs"]["force"]) for e in audited] == [(409, False), (200, True)]
    assert FAILED in audited[0]["detail"]
    assert audited[1]["model_version"] == "1" and audited[1]["outputs"]["run_id"] == forced.json()["run_id"]


@pytest.mark.slow
def test_a_validated_winner_needs_no_force(registry_client, registry_store, auth) -> None:
    client = MlflowClient(tracking_uri=registry_store["uri"], registry_uri=registry_store["uri"])
    answer = registry_client.post("/best_model", json=_body(experiment_name=GATED,
                                                            metric_goal="max"), headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["run_id"] == registry_store["runs"]["validated"]
    assert (answer.json()["version"], answer.json()["registered"]) == ("1", True)
    assert client.get_model_version(MODEL_NAME, "1").tags["valuation.validated"] == "true"
    assert alias_history(client, MODEL_NAME)[-1].reason == "best_model by test_mse (max)"


def test_mlflow_refusing_the_values_is_422_and_its_outage_503() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

    from serving.api.models import _mlflow_failure

    refused = _mlflow_failure(MlflowException("bad name", error_code=INVALID_PARAMETER_VALUE))
    assert refused.status_code == 422
    assert refused.detail == [{"row": None, "field": None,
                               "message": "MLflow refused the request: bad name"}]
    down = _mlflow_failure(MlflowException("db locked", error_code=INTERNAL_ERROR))
    assert down.status_code == 503 and "db locked" in down.detail
