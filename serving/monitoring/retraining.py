"""Acting on a retraining decision: the cool-down, the training rows, the job, the record.

- Cool-down: one Redis key set with NX and an expiry of `retraining.cooldown_s`. Setting it is the
  claim, so two monitoring runs at once (two workers, a scheduled and an on-demand run) cannot
  both enqueue; while it lives every trigger is refused with the time left.
- Training rows: the deduplicated feedback rows of the prediction store are logged as a parquet
  artifact of the monitoring run, and the training reads them from there
  (`feedback.train_path=runs:/...`, appended to the configured training data by ingest): any
  worker can run the job, on any host, and the run's lineage names the rows it learnt from.
- Market index: a per-sector price index from the latest observed prices against the served
  version's (valuation/monitoring/market_index.py, `retraining.market_index`), logged as a JSON
  artifact of the monitoring run; the training restates the train and test prices by it
  (`market_index.path=runs:/...`), so a market that moved in some sectors is learnt from a few
  hundred sales rather than outvoted by the older rows.
- The job: the very job POST /train enqueues (serving.jobs.run_training, the Project's `main`),
  with `registry.move_champion=false`: the new version becomes `challenger` through the usual
  register step and is never promoted by the trigger.
- The record: the reason is a tag of the training run (`valuation.retraining_reason`), a line of
  the audit trail, and a count in `valuation_retraining_triggered_total{reason}`.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
from omegaconf import DictConfig

from serving.audit import AuditLog
from serving.jobs.queue import enqueue_training, training_queue
from serving.logging import get_logger
from serving.monitoring.metrics import count_retraining
from valuation.monitoring.market_index import rounded_factors
from valuation.monitoring.policy import Decision
from valuation.names import RETRAINING_REASON_TAG

log = get_logger(__name__)

FEEDBACK_ARTIFACT = "retraining/feedback.parquet"
MARKET_INDEX_ARTIFACT = "retraining/market_index.json"
ACTOR = "monitoring"


@dataclass(frozen=True)
class RetrainingOutcome:
    triggered: bool
    reason: str | None
    explanation: str
    job_id: str | None = None
    feedback_rows: int = 0
    training_data: str | None = None
    cooldown_left_s: int | None = None
    market_index: dict[str, Any] | None = None  # {sector: {factor, rows, median_ratio}}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cooldown_key(prefix: str) -> str:
    return f"{prefix}:retraining:cooldown"


def act_on(decision: Decision, *, redis: Any, settings: DictConfig, model_name: str,
           version: str, feedback_rows: Any, monitoring_run_id: str,
           labelled: Any = None) -> RetrainingOutcome:
    """Enqueue the retraining `decision` asks for, unless the cool-down forbids it.
    `feedback_rows` is the store's deduplicated feedback as training rows (a DataFrame);
    `labelled` the served version's predictions with their observed prices (the market index's
    evidence; None or empty: no index)."""
    if not decision.retrain:
        return RetrainingOutcome(False, None, decision.explanation)
    section, prefix = settings.retraining, settings.monitoring_job.redis_prefix
    key = cooldown_key(prefix)
    claim = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "reason": decision.reason,
             "model_version": version, "monitoring_run_id": monitoring_run_id}
    if not redis.set(key, json.dumps(claim), nx=True, ex=int(section.cooldown_s)):
        return _cooling_down(redis, key, decision)
    try:
        # No feedback rows (a policy with min_feedback_rows 0): the configured data alone.
        training_data = (_log_training_rows(feedback_rows, monitoring_run_id)
                         if len(feedback_rows) else None)
        index = _market_index(section, labelled)
        index_uri = _log_market_index(index, monitoring_run_id) if index else None
        overrides = " ".join(filter(None, [
            str(section.overrides or ""),
            f"feedback.train_path={shlex.quote(training_data)}" if training_data else "",
            f"market_index.path={shlex.quote(index_uri)}" if index_uri else "",
            "registry.move_champion=false",
        ]))
        explanation = f"{decision.reason}: {decision.explanation} (served version {version})"
        job = enqueue_training(
            training_queue(redis, settings), model=str(section.model or ""), overrides=overrides,
            experiment_name=str(section.experiment_name), submitted_by=ACTOR, settings=settings,
            run_tags={RETRAINING_REASON_TAG: explanation[:5000]},
        )
    except BaseException:
        redis.delete(key)  # nothing was enqueued: the next run may try again
        raise
    count_retraining(redis, prefix, decision.reason)
    outcome = RetrainingOutcome(True, decision.reason, decision.explanation, job_id=job.id,
                                feedback_rows=len(feedback_rows), training_data=training_data,
                                market_index=index or None)
    _audit(settings, model_name, version, overrides, outcome)
    log.warning("retraining_triggered", reason=decision.reason, job_id=job.id,
                model_version=version, explanation=decision.explanation)
    return outcome


def _cooling_down(redis: Any, key: str, decision: Decision) -> RetrainingOutcome:
    left = max(int(redis.ttl(key)), 0)
    raw = redis.get(key)
    last = json.loads(raw) if raw else {}
    return RetrainingOutcome(
        False, None,
        f"{decision.explanation}; not retrained: cool-down, the last retraining was enqueued at "
        f"{last.get('at', '?')} ({last.get('reason', '?')}), the next is allowed in {left} s",
        cooldown_left_s=left)


def _market_index(section: DictConfig, labelled: Any) -> dict[str, dict[str, float]]:
    from valuation.monitoring.market_index import IndexRule, sector_index

    rule_settings = section.get("market_index") or {}
    if labelled is None or not len(labelled) or not bool(rule_settings.get("enabled", False)):
        return {}
    return sector_index(labelled, IndexRule.from_mapping(rule_settings))


def _log_market_index(index: dict[str, dict[str, float]], run_id: str) -> str:
    mlflow.MlflowClient().log_dict(run_id, index, MARKET_INDEX_ARTIFACT)
    return f"runs:/{run_id}/{MARKET_INDEX_ARTIFACT}"


def _log_training_rows(rows: Any, run_id: str) -> str:
    with tempfile.TemporaryDirectory(prefix="valuation-feedback-") as directory:
        path = Path(directory) / Path(FEEDBACK_ARTIFACT).name
        rows.to_parquet(path, index=False)
        mlflow.MlflowClient().log_artifact(run_id, str(path), str(Path(FEEDBACK_ARTIFACT).parent))
    return f"runs:/{run_id}/{FEEDBACK_ARTIFACT}"


def _audit(settings: DictConfig, model_name: str, version: str, overrides: str,
           outcome: RetrainingOutcome) -> None:
    trail = AuditLog.from_settings(settings, rotate=False)
    try:
        trail.record("retraining:monitoring", status="ok", actor=ACTOR, model_name=model_name,
                     model_version=version,
                     inputs={"reason": outcome.reason, "overrides": overrides,
                             "feedback_rows": outcome.feedback_rows,
                             "market_index": rounded_factors(outcome.market_index)},
                     outputs={"job_id": outcome.job_id}, detail=outcome.explanation)
    finally:
        trail.close()
