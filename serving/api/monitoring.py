"""POST /monitoring/run: a drift and live-error run now, on the worker (admin); GET
/monitoring/latest: the latest run's figures (the operator page's drift card)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from serving.api import deps
from serving.api.audit import audit, error_detail
from serving.api.auth import require
from serving.api.errors import AUTH_ERRORS, api_error, error_responses
from serving.api.schemas import MonitoringAccepted, MonitoringLatest, MonitoringRun
from serving.keys.records import KeyRecord
from serving.logging import get_logger
from serving.monitoring.metrics import read_latest
from serving.monitoring.schedule import enqueue_now
from serving.roles import Capability

router = APIRouter(tags=["models"])
log = get_logger("serving.api.monitoring")


@router.post(
    "/monitoring/run",
    status_code=202,
    response_model=MonitoringAccepted,
    summary="Queue a monitoring run (drift and live error of the served version)",
    description=(
        "Compares the served version's recent predictions with its reference profile and its "
        "predictions with feedback with its test figures; logs an MLflow run in the `monitoring` "
        "experiment, updates the drift metrics and applies the retraining policy. Follow it with "
        "GET /job_status/{job_id}."
    ),
    responses=error_responses({**AUTH_ERRORS, 503: "Redis or the key store is unavailable"}),
)
def run_monitoring(
    request: Request,
    key: KeyRecord = Depends(require(Capability.MONITORING)),
) -> JSONResponse:
    started = time.perf_counter()
    config = deps.serving_config(request)
    try:
        job = enqueue_now(deps.redis(request), config, trigger="api", submitted_by=key.key_id)
    except Exception as error:  # redis.exceptions.*: the queue is the unavailable dependency
        raise _redis_unavailable(request, "monitoring:run", key, started, error,
                                 "the job queue (Redis) is unavailable; retry shortly") from None
    accepted = MonitoringAccepted(
        job_id=job.id, status_url=str(request.url_for("job_status", job_id=job.id).path),
        queue=str(config.monitoring_job.queue))
    audit(request, "monitoring:run", 202, key, started, outputs=accepted.model_dump())
    log.info("monitoring_enqueued", job_id=job.id)
    return JSONResponse(accepted.model_dump(), status_code=202)


@router.get(
    "/monitoring/latest",
    response_model=MonitoringLatest,
    summary="The latest monitoring run's drift and live-error figures",
    description=(
        "What the latest finished monitoring run found for the version it judged: drift "
        "statistics per feature and for the predicted price, the features that drifted, live "
        "error on the predictions with feedback beside the test figures, and the retrainings "
        "triggered so far. The same figures as the `valuation_*drift*` and "
        "`valuation_live_error` metrics on /metrics."
    ),
    responses=error_responses({**AUTH_ERRORS, 503: "Redis, where the figures are kept, is unavailable"}),
)
def latest_monitoring(
    request: Request,
    key: KeyRecord = Depends(require(Capability.MODEL_STATUS)),
) -> MonitoringLatest:
    started = time.perf_counter()
    config = deps.serving_config(request)
    try:
        figures, retraining = read_latest(deps.redis(request), str(config.monitoring_job.redis_prefix))
    except Exception as error:  # redis.exceptions.*: where the figures are kept is unavailable
        raise _redis_unavailable(request, "monitoring:latest", key, started, error,
                                 "Redis, where the monitoring figures are kept, is unavailable; "
                                 "retry shortly") from None
    if figures is None:
        latest = MonitoringLatest(
            latest=None, retraining_triggered=retraining,
            note="no monitoring run has finished yet: POST /monitoring/run starts one (scheduled "
                 f"every {config.monitoring_job.every_s} s)")
    else:
        run = MonitoringRun(**{**figures, "model_version": str(figures["model_version"])})
        latest = MonitoringLatest(latest=run, retraining_triggered=retraining)
    audit(request, "monitoring:latest", 200, key, started)
    return latest


def _redis_unavailable(request: Request, action: str, key: KeyRecord, started: float,
                       error: Exception, message: str) -> Exception:
    """The 503 of a monitoring endpoint whose Redis failed: logged and audited, to be raised."""
    log.error("monitoring_redis_unavailable", action=action, error=repr(error))
    failure = api_error(503, message)
    audit(request, action, 503, key, started, detail=error_detail(failure))
    return failure
