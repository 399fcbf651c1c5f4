"""POST /train (queue a training job) and GET /job_status/{job_id} (follow it)."""

from __future__ import annotations

import re
import time

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from serving.api import deps
from serving.api.audit import audit, error_detail
from serving.api.auth import require
from serving.api.errors import AUTH_ERRORS, api_error, error_responses, invalid
from serving.api.schemas import (
    JobStatusResponse,
    TrainAccepted,
    TrainingParametersOut,
    TrainRequest,
)
from serving.api.train_request import TrainRequestError, to_training_parameters
from serving.jobs.queue import enqueue_training, fetch_job, training_queue
from serving.jobs.status import describe_job
from serving.keys.records import KeyRecord
from serving.logging import get_logger
from serving.roles import Capability
from serving.settings import ServingSettings

router = APIRouter(tags=["training"])
_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")
log = get_logger("serving.api.training")

_ERRORS = {**AUTH_ERRORS, 503: "Redis or the key store is unavailable"}


@router.post(
    "/train",
    status_code=202,
    response_model=TrainAccepted,
    summary="Queue a training job (the MLflow Project's main entry point)",
    description=(
        "Every part of the body is optional; omitted parts keep the Hydra defaults in conf/. "
        "`pipeline_config` must name an allowlisted regressor (sklearn.ensemble "
        "GradientBoostingRegressor, HistGradientBoostingRegressor, RandomForestRegressor, "
        "lightgbm LGBMRegressor) with known, scalar params. Nothing is queued when the body "
        "is refused (422 naming the field)."
    ),
    responses=error_responses({**_ERRORS, 422: "Refused body"}),
)
def train(
    body: TrainRequest,
    request: Request,
    key: KeyRecord = Depends(require(Capability.TRAIN)),
) -> JSONResponse:
    started = time.perf_counter()
    inputs = body.model_dump(exclude_none=True)
    try:
        accepted = _queue_training(body, request, key)
    except Exception as error:  # audited with its status, then answered as before
        audit(request, "train", getattr(error, "status_code", 500), key, started, inputs=inputs,
              detail=error_detail(error))
        raise
    audit(request, "train", 202, key, started, inputs=inputs, outputs=accepted.model_dump())
    return JSONResponse(accepted.model_dump(), status_code=202)


def _queue_training(body: TrainRequest, request: Request, key: KeyRecord) -> TrainAccepted:
    try:
        parameters = to_training_parameters(body)
    except TrainRequestError as error:
        log.warning("train_refused", field=error.field, reason=error.message)
        raise invalid(error.field, error.message) from None
    config = deps.serving_config(request)
    try:
        job = enqueue_training(
            training_queue(deps.redis(request), config),
            model=parameters.model,
            overrides=parameters.overrides,
            experiment_name=parameters.experiment_name,
            submitted_by=key.key_id,
            settings=config,
        )
    except Exception as error:  # redis.exceptions.* : the queue is the unavailable dependency
        log.error("enqueue_failed", error=repr(error))
        raise api_error(503, "the training queue (Redis) is unavailable; retry shortly") from None
    deps.metrics(request).jobs_enqueued.inc()
    log.info("training_enqueued", job_id=job.id, model=parameters.model,
             overrides=parameters.overrides, experiment_name=parameters.experiment_name)
    accepted = TrainAccepted(
        job_id=job.id,
        status="queued",
        status_url=str(request.url_for("job_status", job_id=job.id).path),
        parameters=TrainingParametersOut(
            model=parameters.model,
            overrides=parameters.overrides,
            experiment_name=parameters.experiment_name,
        ),
    )
    return accepted


@router.get(
    "/job_status/{job_id}",
    name="job_status",
    response_model=JobStatusResponse,
    summary="Status, progress and outcome of a training job",
    responses=error_responses(
        {**_ERRORS, 404: "Unknown job id", 422: "A job id longer than 128 characters"}
    ),
)
def job_status(
    request: Request,
    job_id: str = Path(
        max_length=128,
        description="The job_id POST /train answered",
        openapi_examples={"a job": {"value": "5b1f0c3e-7d9a-4c2b-9e8f-1a2b3c4d5e6f"}},
    ),
    key: KeyRecord = Depends(require(Capability.JOB_STATUS)),
    settings: ServingSettings = Depends(deps.settings),
) -> JobStatusResponse:
    if not _JOB_ID.fullmatch(job_id):  # RQ refuses such ids (ValueError): no job can have one
        raise api_error(404, f"unknown job id {job_id!r}: job ids are letters, digits, '_' and '-'")
    try:
        job = fetch_job(deps.redis(request), job_id)
    except Exception as error:
        log.error("job_fetch_failed", error=repr(error))
        raise api_error(503, "the training queue (Redis) is unavailable; retry shortly") from None
    if job is None:
        raise api_error(404, f"unknown job id '{job_id}' (jobs are kept for "
                             f"{settings.jobs.result_ttl_s} s after they end)")
    return JobStatusResponse(**describe_job(job))
