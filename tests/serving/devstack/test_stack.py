"""`make stack` planning (which store, which ports) and its failure messages."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from serving.devstack.part import StackError
from serving.devstack.plan import plan_stack
from serving.ports import free_port
from tests.support.s3 import S3Server
from valuation.config import PROJECT_ROOT, load_config


def plan(environ: dict[str, str]):
    settings = load_config(
        [f"stack.{k}={v}" for k, v in (("backend_store_uri", environ.get("BACKEND")),
                                       ("mlflow_port", environ.get("MLFLOW_PORT")))
         if v is not None],
        config_name="serving",
    )
    return plan_stack(settings, environ)


def test_default_store_is_the_one_make_train_writes(monkeypatch):
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ARTIFACTS_DESTINATION", raising=False)
    result = plan({})
    # `make train` without MLFLOW_TRACKING_URI: sqlite in the project, artifacts beside it.
    assert result.backend_store_uri == f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
    assert result.artifacts_destination == (PROJECT_ROOT / "mlartifacts").as_uri()
    assert result.tracking_uri == f"http://127.0.0.1:{result.mlflow_port}"


def test_a_database_tracking_uri_becomes_the_servers_store(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ARTIFACTS_DESTINATION", raising=False)
    store = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    result = plan({"MLFLOW_TRACKING_URI": store, "MLFLOW_PORT": "5123"})
    assert result.backend_store_uri == store
    assert result.artifacts_destination == (tmp_path / "mlartifacts").as_uri()
    assert result.tracking_uri == "http://127.0.0.1:5123"  # children talk to the server


def test_an_http_tracking_uri_means_no_server_is_started(monkeypatch):
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    result = plan({"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000"})
    assert result.backend_store_uri is None
    assert result.tracking_uri == "http://mlflow.internal:5000"


def test_a_taken_port_fails_fast_with_a_clear_message(tmp_path: Path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_"))}
        done = subprocess.run(
            [sys.executable, "-m", "serving.devstack", "--state-dir", str(tmp_path / "state"),
             "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
             "--mlflow-port", str(taken), "--proxy-port", str(free_port())],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {taken} on 127.0.0.1 is taken" in done.stdout
    assert "MLFLOW_PORT" in done.stdout and "--mlflow-port" in done.stdout
    assert "[stack] stopped" in done.stdout
    assert not (tmp_path / "state" / "stack.pid").exists()


def test_a_tracking_uri_that_is_neither_a_database_nor_a_server_is_refused(monkeypatch):
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    with pytest.raises(StackError) as refused:
        plan({"MLFLOW_TRACKING_URI": "file://someone:s3cret@nas/mlruns"})
    message = str(refused.value)
    assert "file://***@nas/mlruns is neither a database nor a tracking server" in message
    assert "s3cret" not in message  # credentials never reach a message


def test_a_bucket_that_does_not_answer_stops_the_stack_with_one_line_naming_it(
        tmp_path: Path, s3_server: S3Server):
    # What a user meets first with a wrong bucket or endpoint: `make stack` itself, at once.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_", "AWS_"))}
    done = subprocess.run(
        [sys.executable, "-m", "serving.devstack", "--state-dir", str(tmp_path / "state"),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--artifacts-destination", "s3://no-such-bucket/mlflow",
         "--mlflow-port", str(free_port()), "--proxy-port", str(free_port())],
        cwd=PROJECT_ROOT, env={**env, **s3_server.env()}, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    [failed] = [line for line in done.stdout.splitlines() if line.startswith("[stack] FAILED")]
    assert "s3://no-such-bucket/mlflow" in failed and "does not exist" in failed
    assert f"bucket 'no-such-bucket' at {s3_server.endpoint}" in failed
    assert s3_server.secret_key not in done.stdout + done.stderr
    assert "[stack] stopped" in done.stdout
    assert not (tmp_path / "mlartifacts").exists()
