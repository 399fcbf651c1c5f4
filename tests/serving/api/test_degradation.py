"""Graceful degradation against real processes: the real supervisor serves the champion (v2) and
the challenger (v1) with `mlflow models serve`; the champion's server is killed; /predict answers
from v1 flagged degraded while the champion restarts, then from v2 again."""

from __future__ import annotations

import shutil

import mlflow
import pytest
from mlflow import MlflowClient

from serving.api.schemas import SPEC_PREDICT_BODY
from serving.model_servers.supervisor import ModelServerSupervisor
from serving.processes import kill_group
from tests.support.serving import MODEL_NAME, serving_settings, wait_for
from valuation.registry import move_alias, register_version


@pytest.fixture
def two_served_versions(trained_model, tmp_path):
    # A copy of the tiny model's store (the session's registry stays as other tests expect it).
    shutil.copy(trained_model.root / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # a models:/m-... source resolves through the global URI
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    first = client.get_model_version(MODEL_NAME, trained_model.version)
    second = register_version(client, MODEL_NAME, first.source, tags={"valuation.validated": "true"})
    move_alias(client, MODEL_NAME, "challenger", trained_model.version, reason="test")
    move_alias(client, MODEL_NAME, "champion", second, reason="test")
    settings = serving_settings(tmp_path, uri, model_server={"extra_aliases": ["challenger"],
                                                             "retry_backoff_s": 5})
    supervisor = ModelServerSupervisor(settings, uri)
    supervisor.start()
    try:
        wait_for(lambda: supervisor.current() is not None
                 and supervisor.served(alias="challenger") is not None, 300,
                 "champion and challenger to be served", 0.5)
        yield supervisor, settings, second, trained_model.version
    finally:
        supervisor.stop()


@pytest.mark.slow
def test_a_killed_champion_is_replaced_by_a_loaded_version_until_it_is_back(
    make_client, auth, two_served_versions
) -> None:
    supervisor, settings, champion, challenger = two_served_versions
    client = make_client(supervisor=supervisor, settings=settings)
    normal = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth).json()
    assert normal["model_version"] == champion and "degraded" not in normal

    pid = next(s["pid"] for s in supervisor.status()["servers"] if s["version"] == champion)
    kill_group(pid)  # the server runs in its own process group (with its workers)
    wait_for(lambda: supervisor.current() is None, 30, "the supervisor to notice", 0.1)

    degraded = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    assert degraded.status_code == 200, degraded.text
    body = degraded.json()
    assert body["degraded"] is True
    assert body["served_version"] == challenger == body["model_version"]
    assert body["predictions"][0] > 0

    wait_for(lambda: supervisor.current() is not None, 300, "the champion to be back", 0.5)
    back = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth).json()
    assert back["model_version"] == champion and "degraded" not in back
