"""How monitoring runs start: RQ's scheduling with a real `python -m serving.worker`, POST
/monitoring/run on the real app, `valuation monitor run`; and how the proxy's /metrics shows the
job's figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from omegaconf import OmegaConf
from rq import Queue
from rq.job import JobStatus
from typer.testing import CliRunner

from serving.cli.main import app as cli_app
from serving.jobs.queue import SERIALIZER, fetch_job
from serving.monitoring.metrics import publish_figures
from serving.monitoring.schedule import MONITORING_JOB, ensure_schedule, schedule_key
from serving.ports import free_port
from serving.roles import Capability, role_allows
from tests.support.serving import purge_queue
from valuation.config import PROJECT_ROOT
from valuation.synthetic import generate_frame


def test_only_admin_keys_may_start_a_monitoring_run() -> None:
    assert role_allows("admin", Capability.MONITORING)
    assert not role_allows("train", Capability.MONITORING)
    assert not role_allows("predict", Capability.MONITORING)


def test_post_monitoring_run_queues_a_run_and_metrics_show_the_latest_figures(
        make_client, api_settings, redis_conn, auth) -> None:
    unique = uuid.uuid4().hex[:10]
    settings = OmegaConf.merge(api_settings, {"monitoring_job": {
        "queue": f"test-monitoring-{unique}", "redis_prefix": f"test-monitoring:{unique}"}})
    client = make_client(settings=settings)
    try:
        answer = client.post("/monitoring/run", headers=auth)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["queue"] == f"test-monitoring-{unique}"
        assert body["status_url"] == f"/job_status/{body['job_id']}"
        job = fetch_job(redis_conn, body["job_id"])
        assert job.func_name == MONITORING_JOB and job.origin == body["queue"]
        assert job.kwargs == {"trigger": "api", "reschedule": False}
        assert client.post("/monitoring/run").status_code == 401
        none_yet = client.get("/monitoring/latest", headers=auth)
        assert none_yet.status_code == 200 and none_yet.json()["latest"] is None
        assert "no monitoring run has finished yet" in none_yet.json()["note"]

        publish_figures(redis_conn, f"test-monitoring:{unique}", {
            "model_version": "7", "at": 1_700_000_000.0, "window_rows": 5000,
            "feedback_rows": 321, "features": {"sector": {"jensenshannon": 0.12, "psi": 0.3}},
            "drifted": ["sector"], "prediction": {"wasserstein_normalized": 0.04},
            "live_error": {"medape": 0.11}, "test_error": {"medape": 0.09}})
        redis_conn.hincrby(f"test-monitoring:{unique}:retraining_triggered", "drift", 2)
        scraped = client.get("/metrics").text
        assert ('valuation_feature_drift{feature="sector",model_version="7",'
                'statistic="jensenshannon"} 0.12') in scraped
        assert 'valuation_feature_drifted{feature="sector",model_version="7"} 1.0' in scraped
        assert 'valuation_live_error{metric="medape",model_version="7"} 0.11' in scraped
        assert 'valuation_feedback_rows{model_version="7"} 321.0' in scraped
        assert 'valuation_retraining_triggered_total{reason="drift"} 2.0' in scraped
        latest = client.get("/monitoring/latest", headers=auth)
        assert latest.status_code == 200, latest.text
        assert latest.json() == {"latest": {
            "model_version": "7", "at": 1_700_000_000.0, "window_rows": 5000, "drift_note": None,
            "drifted": ["sector"], "features": {"sector": {"jensenshannon": 0.12, "psi": 0.3}},
            "prediction": {"wasserstein_normalized": 0.04}, "feedback_rows": 321,
            "live_error": {"medape": 0.11}, "test_error": {"medape": 0.09}},
            "note": None, "retraining_triggered": {"drift": 2}}
        assert client.get("/monitoring/latest").status_code == 401
    finally:
        purge_queue(redis_conn, f"test-monitoring-{unique}")
        for key in redis_conn.scan_iter(f"test-monitoring:{unique}*"):
            redis_conn.delete(key)


@pytest.mark.slow
@pytest.mark.parametrize("prediction_store", ["sqlite"], indirect=True)
def test_rq_scheduling_runs_the_job_and_chains_the_next_run(
        monitoring_settings, prediction_store, monitored_model, champion_predict, redis_conn,
        tmp_path) -> None:
    frame = generate_frame(600, seed=31)
    prediction_store.add_predictions(frame, champion_predict(frame), monitored_model.version,
                                     datetime.now(UTC) - timedelta(minutes=10), "scheduled")
    settings = OmegaConf.merge(monitoring_settings, {"monitoring_job": {"every_s": 2}})
    first = ensure_schedule(redis_conn, settings)
    assert first.get_status() == JobStatus.SCHEDULED
    assert ensure_schedule(redis_conn, settings).id == first.id  # no second chain
    queue = Queue(settings.monitoring_job.queue, connection=redis_conn, serializer=SERIALIZER)
    assert queue.scheduled_job_registry.get_job_ids() == [first.id]
    time.sleep(3)  # the run is due

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT),
           "MLFLOW_TRACKING_URI": monitored_model.tracking_uri,
           "PREDICTION_STORE_URL": prediction_store.url,
           "TRAINING_QUEUE": settings.jobs.queue,
           "MONITORING_QUEUE": settings.monitoring_job.queue,
           "MONITORING_REDIS_PREFIX": settings.monitoring_job.redis_prefix,
           "MONITORING_EVERY_S": "2", "AUDIT_LOG_PATH": str(tmp_path / "audit.jsonl")}
    # A burst worker: RQ's scheduler enqueues what is due, the worker runs it and exits.
    done = subprocess.run([sys.executable, "-m", "serving.worker", "--burst"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    first.refresh()
    assert first.get_status() == JobStatus.FINISHED, done.stderr[-3000:]
    result = first.return_value()
    assert result["status"] == "ok" and result["version"] == monitored_model.version
    assert result["window_rows"] == 600 and result["run_id"]
    # The run scheduled its successor, and it is the one pending run.
    following = queue.scheduled_job_registry.get_job_ids()
    assert len(following) == 1 and following[0] != first.id
    stored = redis_conn.get(schedule_key(settings))
    assert stored.decode() == following[0]


@pytest.mark.slow
@pytest.mark.parametrize("prediction_store", ["sqlite"], indirect=True)
def test_valuation_monitor_run_prints_the_summary(
        monitoring_settings, prediction_store, monitored_model, champion_predict,
        monkeypatch) -> None:
    frame = generate_frame(550, seed=32)
    prediction_store.add_predictions(frame, champion_predict(frame), monitored_model.version,
                                     datetime.now(UTC) - timedelta(minutes=10), "cli")
    for name, value in {"TRAINING_QUEUE": monitoring_settings.jobs.queue,
                        "MONITORING_QUEUE": monitoring_settings.monitoring_job.queue,
                        "MONITORING_REDIS_PREFIX": monitoring_settings.monitoring_job.redis_prefix,
                        "AUDIT_LOG_PATH": monitoring_settings.audit.path}.items():
        monkeypatch.setenv(name, value)
    from serving.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["monitor", "run"])
        assert result.exit_code == 0, result.output
        # stdout may also carry structured log lines (they have an "event") when an earlier test
        # configured logging and a logger was cached then; the summary is the one without.
        [summary] = [document for document in _json_documents(result.stdout)
                     if "window_rows" in document and "event" not in document]
        assert summary["status"] == "ok" and summary["window_rows"] == 550
        assert summary["drifted_features"] == [] and not summary["retraining_triggered"]

        monkeypatch.setenv("REDIS_PORT", str(free_port()))  # nothing listens there
        get_settings.cache_clear()
        no_redis = CliRunner().invoke(cli_app, ["monitor", "run"])
        assert no_redis.exit_code == 1 and "Traceback" not in no_redis.output
        assert "Redis at 127.0.0.1:" in no_redis.stderr and "is unavailable" in no_redis.stderr

        monkeypatch.setenv("PREDICTION_STORE_ENABLED", "false")
        get_settings.cache_clear()
        refused = CliRunner().invoke(cli_app, ["monitor", "run"])
        assert refused.exit_code == 1
        assert "the prediction store is off (prediction_store.enabled=false" in refused.stderr
    finally:
        get_settings.cache_clear()


def _json_documents(text: str) -> list[dict]:
    """Every JSON document in `text`, one after the other (pretty-printed or one per line)."""
    decoder, documents, position = json.JSONDecoder(), [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
    return documents
