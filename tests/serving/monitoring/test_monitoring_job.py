"""The monitoring job end to end on real parts: a version trained by the pipeline (its profile
logged by evaluate), the prediction store on PostgreSQL and on SQLite, Redis/RQ for the
retraining job and the cool-down, MLflow for the monitoring run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry, generate_latest
from rq import Queue

from serving.jobs.queue import SERIALIZER, TRAINING_JOB
from serving.monitoring.job import MonitoringSkipped, monitor, open_store
from serving.monitoring.metrics import MonitoringCollector
from valuation.names import EVALUATION_RUN_ID_TAG, RETRAINING_REASON_TAG
from valuation.sources import read_artifact_frame
from valuation.synthetic import generate_frame

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC)


def _traffic(store, predict, version: str, *, shift: bool, seed: int, labelled: int):
    """1,200 predictions over the last hour, `labelled` of them with an observed price. A shift
    is the market moving: bigger homes in the traffic and prices 30% above what the model says."""
    frame = generate_frame(1200, seed=seed)
    truth = frame["price"].to_numpy(dtype=float)
    if shift:
        frame["net_usable_area"] = frame["net_usable_area"] * 1.6
        frame["net_area"] = frame["net_area"] * 1.6
    prices = predict(frame)
    request = f"req-{seed}-{shift}"
    ids = store.add_predictions(frame, prices, version, NOW - timedelta(hours=1), request)
    observed = prices[:labelled] * 1.3 if shift else truth[:labelled]
    store.add_observations(frame, observed, ids[:labelled], request, NOW - timedelta(days=3))
    return frame


def _run(settings, redis_conn):
    return monitor(settings, redis=redis_conn, store=open_store(settings), trigger="test",
                   now=NOW + timedelta(minutes=1))


def _training_jobs(redis_conn, settings):
    queue = Queue(settings.jobs.queue, connection=redis_conn, serializer=SERIALIZER)
    return [job for job in queue.jobs if job.func_name == TRAINING_JOB]


def test_no_shift_flags_no_drift_and_triggers_nothing(
        monitoring_settings, prediction_store, monitored_model, champion_predict, redis_conn):
    _traffic(prediction_store, champion_predict, monitored_model.version, shift=False, seed=21,
             labelled=400)
    report = _run(monitoring_settings, redis_conn)

    assert report["window_rows"] == 1200 and report["drift_note"] is None
    assert report["drift"]["drifted_features"] == []
    assert not report["drift"]["prediction"]["drifted"]
    live = report["live_error"]
    assert live["overall"]["rows"] == 400
    # Same distribution as the test set: the live MdAPE is close to the test figure.
    assert live["ratio_to_test"]["medape"] < 1.1
    assert not report["retraining"]["triggered"]
    assert _training_jobs(redis_conn, monitoring_settings) == []


def test_a_known_shift_flags_drift_and_live_error_and_enqueues_a_retraining_once(
        monitoring_settings, prediction_store, monitored_model, champion_predict, redis_conn,
        tmp_path):
    _traffic(prediction_store, champion_predict, monitored_model.version, shift=True, seed=22,
             labelled=400)
    report = _run(monitoring_settings, redis_conn)

    drift = report["drift"]
    assert {"net_usable_area", "net_area"} <= set(drift["drifted_features"])
    assert drift["features"]["net_usable_area"]["method"] == "wasserstein_normalized"
    assert drift["prediction"]["drifted"]
    live = report["live_error"]
    # Observed prices are 30% above the predictions: APE = 0.3 / 1.3 for every row.
    assert live["overall"]["medape"] == pytest.approx(0.3 / 1.3, rel=1e-6)
    assert live["overall"]["ppe10"] == 0.0
    assert set(live["by_sector"]) == set(generate_frame(1200, seed=22)["sector"][:400])
    assert len(live["over_time"]) >= 2  # observations spread over two days

    retraining = report["retraining"]
    assert retraining["triggered"] and retraining["reason"] in ("live_error",
                                                                "drift_and_live_error")
    [job] = _training_jobs(redis_conn, monitoring_settings)
    assert job.id == retraining["job_id"]
    overrides = job.kwargs["overrides"]
    assert "registry.move_champion=false" in overrides
    assert f"feedback.train_path=runs:/{report['run_id']}/retraining/feedback.parquet" in overrides
    assert "live medape" in job.kwargs["run_tags"][RETRAINING_REASON_TAG]
    # The training rows: the 400 labelled rows, deduplicated, with the observed prices.
    mlflow.set_tracking_uri(monitored_model.tracking_uri)
    rows = read_artifact_frame(f"runs:/{report['run_id']}/retraining/feedback.parquet")
    assert len(rows) == 400 and set(rows.columns) == set(job_columns())
    # The market index: every sector sold 30 % above the served prices, shrunk by its rows.
    index_uri = f"runs:/{report['run_id']}/retraining/market_index.json"
    assert f"market_index.path={index_uri}" in overrides
    index = mlflow.artifacts.load_dict(index_uri)
    assert index == retraining["market_index"] and len(index) >= 2
    shrink = monitoring_settings.retraining.market_index.shrink_rows
    for entry in index.values():
        assert entry["median_ratio"] == pytest.approx(1.3, rel=1e-6)
        assert 0 < entry["rows"] <= monitoring_settings.retraining.market_index.recent_rows
        assert entry["factor"] == pytest.approx(1.3 ** (entry["rows"] / (entry["rows"] + shrink)))

    # The MLflow run: metrics, report, plots, and the reason.
    client = MlflowClient(tracking_uri=monitored_model.tracking_uri)
    run = client.get_run(report["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "monitoring"
    assert run.data.metrics["live_medape"] == pytest.approx(0.3 / 1.3, rel=1e-6)
    assert run.data.metrics["drift.net_usable_area.wasserstein_normalized"] > 0.1
    assert run.data.tags[RETRAINING_REASON_TAG].startswith("live medape") or \
        "drift on" in run.data.tags[RETRAINING_REASON_TAG]
    artifacts = {a.path for a in client.list_artifacts(report["run_id"])}
    plots = {a.path for a in client.list_artifacts(report["run_id"], "plots")}
    assert "report.json" in artifacts and {"plots/drift.png", "plots/live_error.png"} <= plots

    # The audit trail and the counter.
    audit_lines = [json.loads(line) for line in
                   (tmp_path / "audit" / "audit.jsonl").read_text().splitlines()]
    [line] = [entry for entry in audit_lines if entry["action"] == "retraining:monitoring"]
    assert line["outputs"]["job_id"] == job.id and line["model_version"] == monitored_model.version
    assert line["inputs"]["market_index"] == {sector: round(entry["factor"], 4)
                                              for sector, entry in index.items()}

    scraped = _scrape(redis_conn, monitoring_settings)
    version = monitored_model.version
    assert (f'valuation_retraining_triggered_total{{reason="{retraining["reason"]}"}} 1.0'
            in scraped)
    assert f'valuation_feedback_rows{{model_version="{version}"}} 400.0' in scraped
    assert (f'valuation_feature_drifted{{feature="net_usable_area",model_version="{version}"}} 1.0'
            in scraped)
    assert f'valuation_live_error{{metric="medape",model_version="{version}"}}' in scraped

    # A second run inside the cool-down: the same findings, no second job.
    again = _run(monitoring_settings, redis_conn)
    assert not again["retraining"]["triggered"]
    assert "cool-down" in again["retraining"]["explanation"]
    assert len(_training_jobs(redis_conn, monitoring_settings)) == 1
    assert (f'valuation_retraining_triggered_total{{reason="{retraining["reason"]}"}} 1.0'
            in _scrape(redis_conn, monitoring_settings))


def job_columns():
    from valuation.model_runtime.schema import FEATURES, TARGET

    return [*FEATURES, TARGET]


def _scrape(redis_conn, settings) -> str:
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(lambda: redis_conn,
                                          settings.monitoring_job.redis_prefix))
    return generate_latest(registry).decode()


def test_a_short_window_is_not_judged(monitoring_settings, prediction_store, monitored_model,
                                      champion_predict, redis_conn):
    frame = generate_frame(100, seed=23)
    prediction_store.add_predictions(frame, champion_predict(frame), monitored_model.version,
                                     NOW - timedelta(minutes=5), "short")
    report = _run(monitoring_settings, redis_conn)
    assert report["drift"] is None and "100 predictions in the window" in report["drift_note"]
    assert report["live_error"] is None and not report["retraining"]["triggered"]


@pytest.mark.parametrize("prediction_store", ["sqlite"], indirect=True)
def test_a_version_without_a_profile_is_skipped_with_the_reason(
        monitoring_settings, monitored_model, redis_conn):
    client = MlflowClient(tracking_uri=monitored_model.tracking_uri)
    source = client.get_model_version("property_friends_best_model", monitored_model.version)
    experiment = client.get_experiment_by_name("monitoring-tests")
    bare_run = client.create_run(experiment.experiment_id, run_name="evaluated-before-profiles")
    client.set_terminated(bare_run.info.run_id)
    old = client.create_model_version("property_friends_best_model", source.source,
                                      tags={EVALUATION_RUN_ID_TAG: bare_run.info.run_id})
    previous = client.get_model_version_by_alias("property_friends_best_model", "champion")
    client.set_registered_model_alias("property_friends_best_model", "champion", old.version)
    try:
        with pytest.raises(MonitoringSkipped, match=rf"version {old.version} has no reference "
                                                    r"profile .*retrain it"):
            _run(monitoring_settings, redis_conn)
    finally:
        client.set_registered_model_alias("property_friends_best_model", "champion",
                                          previous.version)
        client.delete_model_version("property_friends_best_model", old.version)


def test_the_live_error_follows_the_feedback_only(monitoring_settings, prediction_store,
                                                  monitored_model, champion_predict,
                                                  redis_conn):
    frame = generate_frame(600, seed=24)
    prices = champion_predict(frame)
    ids = prediction_store.add_predictions(frame, prices, monitored_model.version,
                                           NOW - timedelta(minutes=30), "exact")
    # 50 rows observed at exactly the predicted price, 50 at twice it: MdAPE is the median of
    # fifty 0s and fifty 0.5s = 0.25; PPE10 = 0.5.
    observed = np.concatenate([prices[:50], prices[50:100] * 2])
    prediction_store.add_observations(frame, observed, ids[:100], "exact", NOW - timedelta(days=1))
    report = _run(monitoring_settings, redis_conn)
    overall = report["live_error"]["overall"]
    assert overall["rows"] == 100
    assert overall["medape"] == pytest.approx(0.25) and overall["ppe10"] == pytest.approx(0.5)
    assert overall["mae"] == pytest.approx(float(np.sum(prices[50:100])) / 100)
    assert not report["retraining"]["triggered"]  # 100 rows < min_feedback_rows 300
    assert "only 100 feedback rows" in report["retraining"]["explanation"]
