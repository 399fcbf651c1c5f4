"""GET /jobs: the training queue's recent jobs with their progress (the operator page /ui/ops)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from serving.api import deps
from serving.api.auth import require
from serving.api.errors import AUTH_ERRORS, api_error, error_responses
from serving.api.schemas import JobStatusResponse
from serving.jobs.queue import training_queue
from serving.jobs.recent import recent_jobs
from serving.keys.records import KeyRecord
from serving.logging import get_logger
from serving.roles import Capability

router = APIRouter(tags=["training"])
log = get_logger("serving.api.jobs")

MAX_LISTED = 100


class RecentJob(JobStatusResponse):
    description: str | None = Field(None, description="What was asked (model, experiment)")
    submitted_by: str | None = Field(None, description="Key id of the caller (never the key)")


class RecentJobsResponse(BaseModel):
    queue: str
    jobs: list[RecentJob] = Field(description="Newest enqueued first")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "queue": "training",
        "jobs": [{
            "job_id": "5b1f0c3e-7d9a-4c2b-9e8f-1a2b3c4d5e6f", "status": "started",
            "progress": {"step": "train", "fraction": 0.4, "message": "fitting"},
            "run_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "metrics": {}, "version": None,
            "champion_moved": None, "validated": None, "error": None,
            "enqueued_at": "2025-01-01T12:00:00", "started_at": "2025-01-01T12:00:01",
            "ended_at": None, "description": "train model=lgbm experiment=Property-Friends-Experiment",
            "submitted_by": "1a2b3c4d5e6f",
        }],
    }]})


@router.get(
    "/jobs",
    response_model=RecentJobsResponse,
    summary="Recent training jobs of every key, newest first, with progress",
    description="Waiting, running, and ended jobs still kept (`jobs.result_ttl_s`), each as "
                "/job_status describes it.",
    responses=error_responses({**AUTH_ERRORS, 422: "A limit outside 1..100",
                               503: "Redis or the key store is unavailable"}),
)
async def jobs(
    request: Request,
    limit: int = Query(20, ge=1, le=MAX_LISTED, description="How many jobs to list"),
    key: KeyRecord = Depends(require(Capability.RECENT_JOBS)),
) -> RecentJobsResponse:
    queue = training_queue(deps.redis(request), deps.serving_config(request))
    try:
        listed = await run_in_threadpool(recent_jobs, queue, limit)
    except Exception as error:  # redis.exceptions.*: the queue is the unavailable dependency
        log.error("jobs_list_failed", error=repr(error))
        raise api_error(503, "the training queue (Redis) is unavailable; retry shortly") from None
    return RecentJobsResponse(queue=queue.name, jobs=[RecentJob(**job) for job in listed])
