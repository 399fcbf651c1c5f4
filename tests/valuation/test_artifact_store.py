"""Artifacts on S3-compatible storage: where experiments put them, and the bucket check that runs
before anything is written, against a real S3-protocol server (moto_server, tests/support/s3.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from serving.ports import free_port
from tests.support.s3 import S3Server
from tests.support.stack import PIPELINE_OVERRIDES
from valuation.artifact_store import ArtifactStoreUnreachable, is_object_store, require_reachable
from valuation.config import PROJECT_ROOT, artifact_location, load_config


@pytest.fixture
def probe_settings():
    return load_config().artifact_store


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_a_configured_bucket_is_where_direct_clients_put_artifacts(monkeypatch, tmp_path: Path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_ARTIFACTS_DESTINATION", "s3://bucket/prefix")
    assert artifact_location(store) == "s3://bucket/prefix"
    assert artifact_location(store, "s3://other/p") == "s3://other/p"  # the stack's setting wins
    assert artifact_location("http://127.0.0.1:5000") is None  # a server decides for itself
    monkeypatch.setenv("MLFLOW_ARTIFACTS_DESTINATION", "some/dir")
    assert artifact_location(store) == (PROJECT_ROOT / "some" / "dir").as_uri()
    monkeypatch.delenv("MLFLOW_ARTIFACTS_DESTINATION")
    assert artifact_location(store) == (tmp_path / "mlartifacts").as_uri()
    assert is_object_store("s3://bucket/prefix") and not is_object_store(artifact_location(store))


def test_an_existing_bucket_passes(s3_server: S3Server, s3_bucket: str, probe_settings, monkeypatch):
    use(monkeypatch, s3_server.env())
    require_reachable(f"s3://{s3_bucket}/runs", probe_settings)


def test_a_missing_bucket_is_named_with_its_endpoint(s3_server: S3Server, probe_settings,
                                                      monkeypatch):
    use(monkeypatch, s3_server.env())
    with pytest.raises(ArtifactStoreUnreachable) as refused:
        require_reachable("s3://no-such-bucket/runs", probe_settings)
    message = str(refused.value)
    assert "s3://no-such-bucket/runs" in message and "does not exist" in message
    assert f"bucket 'no-such-bucket' at {s3_server.endpoint}" in message
    assert s3_server.secret_key not in message


def test_an_endpoint_nobody_answers_is_named(s3_server: S3Server, probe_settings, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"
    use(monkeypatch, {**s3_server.env(), "MLFLOW_S3_ENDPOINT_URL": closed})
    with pytest.raises(ArtifactStoreUnreachable) as refused:
        require_reachable("s3://artifacts/runs", probe_settings)
    message = str(refused.value)
    assert f"bucket 'artifacts' at {closed} is unreachable" in message
    assert "\n" not in message and s3_server.secret_key not in message


def train_refused(s3_server: S3Server, store: str, destination: str, *overrides: str) -> str:
    """Run the pipeline directly on `store` with MLFLOW_ARTIFACTS_DESTINATION=`destination`;
    it must refuse with exit code 2 and one line, no traceback: that line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(s3_server.env(), MLFLOW_TRACKING_URI=store, MLFLOW_ARTIFACTS_DESTINATION=destination)
    done = subprocess.run(
        [sys.executable, "-m", "steps.main", "--overrides", " ".join([*PIPELINE_OVERRIDES, *overrides])],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    # One line of ours (libraries may log or warn beside it, e.g. MLflow creating its tables).
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return line


def test_training_into_a_missing_bucket_stops_before_training_with_one_line(
        s3_server: S3Server, tmp_path: Path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=store).search_experiments()  # the store exists: its set-up logs here
    line = train_refused(s3_server, store, "s3://no-such-bucket/mlflow")
    assert line.startswith("error: artifact location s3://no-such-bucket/mlflow"), line
    assert f"bucket 'no-such-bucket' at {s3_server.endpoint} does not exist" in line
    assert MlflowClient(tracking_uri=store).search_runs(["0", "1"]) == []  # nothing ran


def test_training_refuses_an_experiment_outside_the_configured_bucket(
        s3_server: S3Server, s3_bucket: str, tmp_path: Path):
    # An experiment made before the bucket was configured keeps its file root: its artifacts
    # would silently stay on disk, so training stops at once and says what to do.
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=store).create_experiment(
        "on-disk", artifact_location=(tmp_path / "mlartifacts").as_uri())
    line = train_refused(s3_server, store, f"s3://{s3_bucket}/mlflow", "experiment_name=on-disk")
    assert line.startswith("error: experiment 'on-disk'"), line
    assert (tmp_path / "mlartifacts").as_uri() in line and f"s3://{s3_bucket}/mlflow" in line
    assert f"mlflow experiments create -n NEW_NAME -l s3://{s3_bucket}/mlflow;" in line
    assert not (tmp_path / "mlartifacts").exists()  # nothing was trained
