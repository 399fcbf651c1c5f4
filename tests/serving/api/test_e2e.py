"""`uvicorn serving.app:app` for real: the module-level app builds its own dependencies in the
lifespan (env key store, Redis, model-server supervisor), serves the champion, logs every
prediction as JSON with the key id (never the key), and stops its model server on shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from serving.api.schemas import SPEC_PREDICT_BODY, SPEC_TRAIN_BODY
from serving.keys.records import hash_key, key_id_of
from tests.support.serving import child_env, free_port, purge_queue, wait_for

pytestmark = pytest.mark.slow


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_uvicorn_serves_the_champion_and_logs_predictions(
    trained_model, tmp_path, api_key, redis_conn
) -> None:
    port, model_port = free_port(), free_port()
    queue = f"test-api-e2e-{os.getpid()}-{port}"
    env = child_env(
        API_KEY=api_key,
        MLFLOW_TRACKING_URI=trained_model.tracking_uri,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT="6379",
        TRAINING_QUEUE=queue,
        MODEL_SERVER_PORT=str(model_port),
        MODEL_SERVER_RUN_DIR=str(tmp_path / "model-servers"),
        LOG_LEVEL="INFO",
    )
    stdout_path = tmp_path / "proxy.out"
    with stdout_path.open("wb") as out, (tmp_path / "proxy.err").open("wb") as err:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "serving.app:app", "--host", "127.0.0.1",
             "--port", str(port)], cwd=tmp_path, env=env, stdout=out, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"{base}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(lambda: proxy.poll() is not None or ready(), 300, "the proxy to be ready", 0.5)
        assert proxy.poll() is None, (tmp_path / "proxy.err").read_text()[-3000:]

        headers = {"X-API-Key": api_key, "X-Request-ID": "e2e-trace-1"}
        answer = httpx.post(f"{base}/predict", json=SPEC_PREDICT_BODY, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == trained_model.version
        assert httpx.post(f"{base}/predict", json=SPEC_PREDICT_BODY, timeout=10).status_code == 401
        accepted = httpx.post(f"{base}/train", json=SPEC_TRAIN_BODY, headers=headers, timeout=30)
        assert accepted.status_code == 202, accepted.text
    finally:
        proxy.send_signal(signal.SIGTERM)
        code = proxy.wait(timeout=120)
        purge_queue(redis_conn, queue)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM), (tmp_path / "proxy.err").read_text()[-3000:]
    assert "Application shutdown complete" in (tmp_path / "proxy.err").read_text()
    assert not _listening(model_port), "the model server outlived the proxy"

    text = stdout_path.read_text()
    assert api_key not in text, "the API key was logged"
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    predictions = [e for e in events if e.get("event") == "prediction"]
    assert len(predictions) == 1, events
    logged = predictions[0]
    assert logged["key_id"] == key_id_of(hash_key(api_key))
    assert logged["request_id"] == "e2e-trace-1"
    assert logged["model_name"] == "property_friends_best_model"
    assert logged["model_version"] == trained_model.version
    assert logged["n_rows"] == 1
    # The rows and prices are the audit trail's (tests/serving/api/test_audit.py), not the log's.
    assert "inputs" not in logged and "outputs" not in logged
    assert logged["latency_ms"] > 0
    access = [e for e in events if e.get("event") == "request" and e.get("path") == "/predict"]
    assert {e["status"] for e in access} == {200, 401}
