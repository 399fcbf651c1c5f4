"""One monitoring run: the served version's recent traffic and live error against its reference.

`run_monitoring` is the RQ job (scheduled, or POST /monitoring/run); `valuation monitor run`
calls `monitor` in-process. A run:
1. finds the served version (`champion`) and its reference profile (serving/monitoring/reference);
2. reads the window of its recent predictions and its predictions with feedback from the
   prediction store;
3. computes drift per feature and for the predicted price, and the live error
   (valuation/monitoring/);
4. applies the retraining policy, and enqueues a retraining when it says so
   (serving/monitoring/retraining.py);
5. when `promotion_gate.auto_promote` is on, judges the promotion gate and promotes the
   challenger when it passes (serving/monitoring/gate.py);
6. logs an MLflow run in the `monitoring_job.experiment_name` experiment (metrics, the JSON
   report, PNG plots) and publishes the figures for the proxies' /metrics.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from omegaconf import DictConfig
from sqlalchemy import Engine

from serving.logging import get_logger
from serving.monitoring.gate import auto_promotion
from serving.monitoring.metrics import gauge_figures, publish_figures
from serving.monitoring.plots import drift_plot, live_error_plot
from serving.monitoring.reference import ReferenceMissing, load_reference, served_version
from serving.monitoring.retraining import RetrainingOutcome, act_on
from serving.monitoring.store_reader import (
    Window,
    connect,
    latest_labelled,
    recent_predictions,
    training_rows,
)
from serving.prediction_store.settings import store_settings
from serving.settings import get_settings
from valuation.config import ensure_experiment, tracking_uri
from valuation.model_runtime.schema import FEATURES
from valuation.monitoring.drift import DriftResult, DriftThresholds, compare
from valuation.monitoring.live_error import LIVE_METRICS, LiveError, live_error
from valuation.monitoring.market_index import rounded_factors
from valuation.monitoring.policy import RetrainingPolicy, decide
from valuation.names import RETRAINING_REASON_TAG

log = get_logger(__name__)

REPORT_ARTIFACT = "report.json"
MONITORED_VERSION_TAG = "valuation.monitored_version"
STATUS_TAG = "valuation.monitoring_status"


class MonitoringSkipped(RuntimeError):
    """Nothing to monitor (no champion, no profile): the message says why and what to do."""


def run_monitoring(trigger: str = "api", reschedule: bool = False) -> dict[str, Any]:
    """The RQ job. A scheduled run first schedules its successor, so a failure never ends the
    periodic chain. Returns the run's summary (what /job_status shows as its result)."""
    from rq import get_current_job

    from serving.jobs.queue import redis_connection
    from serving.monitoring.schedule import schedule_next

    settings = get_settings()
    job = get_current_job()
    redis = job.connection if job is not None else redis_connection(settings)
    if reschedule:
        schedule_next(redis, settings)
    try:
        report = monitor(settings, redis=redis, store=open_store(settings), trigger=trigger)
    except MonitoringSkipped as skipped:
        log.warning("monitoring_skipped", reason=str(skipped))
        return {"status": "skipped", "message": str(skipped)}
    return summary(report)


def open_store(settings: DictConfig) -> Engine:
    """The prediction store the proxies write to (`prediction_store:`)."""
    store = store_settings(settings)
    if not store.enabled:
        raise MonitoringSkipped("the prediction store is off (prediction_store.enabled=false, "
                                "env PREDICTION_STORE_ENABLED): there are no predictions to monitor")
    return connect(store)


def monitor(settings: DictConfig, *, redis: Any, store: Engine, trigger: str,
            now: datetime | None = None) -> dict[str, Any]:
    """One monitoring run (see the module doc); returns its report."""
    now = now or datetime.now(UTC)
    section = settings.monitoring_job
    uri = tracking_uri(settings.mlflow.tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    import mlflow

    mlflow.set_tracking_uri(uri)  # artifacts are downloaded through the global URI
    registry = settings.registry
    try:
        version = served_version(client, registry.model_name, registry.champion_alias)
        monitored = load_reference(client, registry.model_name, version, registry.champion_alias)
    except ReferenceMissing as missing:
        raise MonitoringSkipped(str(missing)) from None
    profile = monitored.profile

    window = Window(str(section.window.by), int(section.window.rows), float(section.window.hours))
    recent = recent_predictions(store, registry.model_name, version, window, now=now)
    drift: DriftResult | None = None
    drift_note = None
    if len(recent) < int(section.window.min_rows):
        drift_note = (f"{len(recent)} predictions in the window ({window.describe()}), fewer than "
                      f"monitoring_job.window.min_rows={section.window.min_rows}: drift not judged")
    else:
        drift = compare(profile, recent[list(FEATURES)], recent["price"].to_numpy(dtype=float),
                        DriftThresholds.from_mapping(settings.drift.thresholds))

    labelled = latest_labelled(store, registry.model_name, version,
                               since=now - timedelta(days=float(section.feedback_days)))
    live = live_error(labelled, profile, str(section.live_error_period)) if len(labelled) else None

    policy = RetrainingPolicy.from_mapping(
        {k: v for k, v in settings.retraining.items() if k in RetrainingPolicy.__dataclass_fields__})
    decision = decide(policy, profile, drift, live, feedback_rows=len(labelled))

    ensure_experiment(str(section.experiment_name), uri)
    experiment = client.get_experiment_by_name(str(section.experiment_name))
    run = client.create_run(experiment.experiment_id, run_name=f"monitor-v{version}",
                            tags={MONITORED_VERSION_TAG: version, "valuation.trigger": trigger})
    run_id = run.info.run_id
    try:
        outcome = _retrain_if_needed(decision, redis, settings, registry.model_name, version,
                                     store, now, run_id, labelled)
        promotion = auto_promotion(settings, client, store, now)
        report = {
            "status": "ok", "model_name": registry.model_name, "version": version,
            "alias": registry.champion_alias, "evaluation_run_id": monitored.evaluation_run_id,
            "at": now.isoformat(timespec="seconds"), "at_epoch": time.time(), "trigger": trigger,
            "run_id": run_id, "window": {"by": window.by, "rows": window.rows,
                                         "hours": window.hours, "described": window.describe()},
            "window_rows": len(recent), "drift": drift.to_dict() if drift else None,
            "drift_note": drift_note, "live_error": live.to_dict() if live else None,
            "decision": {"retrain": decision.retrain, "reason": decision.reason,
                         "explanation": decision.explanation,
                         "watched_features": decision.watched_features,
                         "drifted_watched_features": decision.drifted_watched},
            "retraining": outcome.to_dict(),
            "promotion": promotion,
        }
        _log_run(client, run_id, report, profile, recent, drift, live, section)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    publish_figures(redis, str(section.redis_prefix), gauge_figures(report))
    log.info("monitoring_run", **summary(report))
    return report


def _retrain_if_needed(decision, redis, settings, model_name, version, store, now,
                       run_id, labelled) -> RetrainingOutcome:
    if not decision.retrain:
        return RetrainingOutcome(False, None, decision.explanation)
    since = now - timedelta(days=float(settings.retraining.feedback_days))
    return act_on(decision, redis=redis, settings=settings, model_name=model_name,
                  version=version, feedback_rows=training_rows(store, since),
                  monitoring_run_id=run_id, labelled=labelled)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The few figures a log line, the CLI and /job_status show."""
    drift, live = report.get("drift") or {}, report.get("live_error") or {}
    retraining = report.get("retraining") or {}
    return {
        "status": report["status"], "run_id": report["run_id"], "version": report["version"],
        "window_rows": report["window_rows"],
        "drifted_features": drift.get("drifted_features", []),
        "prediction_drifted": bool((drift.get("prediction") or {}).get("drifted")),
        "drift_note": report.get("drift_note"),
        "feedback_rows": (live.get("overall") or {}).get("rows", 0),
        "live_medape": (live.get("overall") or {}).get("medape"),
        "test_medape": (live.get("test") or {}).get("medape"),
        "retraining_triggered": bool(retraining.get("triggered")),
        "retraining_reason": retraining.get("reason"),
        "retraining_job_id": retraining.get("job_id"),
        "market_index": rounded_factors(retraining.get("market_index")),
        "explanation": retraining.get("explanation"),
        "promoted": bool((report.get("promotion") or {}).get("promoted")),
        "promotion_detail": (report.get("promotion") or {}).get("detail"),
    }


def _log_run(client: MlflowClient, run_id: str, report: dict[str, Any], profile, recent,
             drift: DriftResult | None, live: LiveError | None, section: DictConfig) -> None:
    moment = int(time.time() * 1000)
    metrics = {"window_rows": report["window_rows"],
               "feedback_rows": live.overall.rows if live else 0,
               "retraining_triggered": float(report["retraining"]["triggered"])}
    if drift is not None:
        metrics["drifted_features"] = len(drift.drifted_features)
        metrics["drift_share"] = drift.drift_share
        for name, feature in drift.features.items():
            metrics.update({f"drift.{name}.{k}": v for k, v in feature.statistics.items()})
        if drift.prediction is not None:
            metrics.update({f"prediction_drift.{k}": v
                            for k, v in drift.prediction.statistics.items()})
    if live is not None:
        for metric in LIVE_METRICS:
            metrics[f"live_{metric}"] = getattr(live.overall, metric)
            metrics[f"test_{metric}"] = getattr(live.test, metric)
    gate = (report.get("promotion") or {}).get("gate")
    if gate:  # the automatic promotion policy's comparison
        metrics.update({"gate_rows": gate["rows"], "gate_champion": gate["champion_figure"],
                        "gate_challenger": gate["challenger_figure"],
                        "promoted": float(report["promotion"]["promoted"])})
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), moment, 0) for k, v in metrics.items()
                 if v is not None and math.isfinite(float(v))],
        params=[Param("window", report["window"]["described"]),
                Param("model_version", report["version"])],
        tags=[RunTag(STATUS_TAG, report["status"]),
              *([RunTag(RETRAINING_REASON_TAG, report["retraining"]["explanation"][:5000])]
                if report["retraining"]["triggered"] else [])],
    )
    with tempfile.TemporaryDirectory(prefix="valuation-monitoring-") as directory:
        folder = Path(directory)
        (folder / REPORT_ARTIFACT).write_text(json.dumps(report, indent=2, default=str))
        client.log_artifact(run_id, str(folder / REPORT_ARTIFACT))
        plots = folder / "plots"
        plots.mkdir()
        if drift is not None:
            drift_plot(plots / "drift.png", profile, recent,
                       recent["price"].to_numpy(dtype=np.float64), drift)
        if live is not None and live.over_time:
            live_error_plot(plots / "live_error.png", live, str(section.live_error_period))
        if any(plots.iterdir()):
            client.log_artifacts(run_id, str(plots), "plots")
