"""A training job as /job_status reports it: status, progress, and the run's outcome or error."""

from __future__ import annotations

import re
from typing import Any

from rq import Queue
from rq.job import Job, JobStatus

from serving.jobs.abandoned import fail_abandoned_jobs
from serving.jobs.queue import SERIALIZER, iso

_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failed|Cancelled)\b")


def describe_job(job: Job) -> dict[str, Any]:
    """The job as /job_status reports it (status, progress, and the run's outcome).

    A job still `started` whose worker stopped sending heartbeats is failed here as abandoned,
    so a status never stays `started` because its worker died and none was started again.
    """
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED and job.id in fail_abandoned_jobs(
            Queue(job.origin, connection=job.connection, serializer=SERIALIZER)):
        job.refresh()
        status = job.get_status(refresh=False)
    meta = job.meta or {}
    described: dict[str, Any] = {
        "job_id": job.id,
        "status": status.value if isinstance(status, JobStatus) else str(status),
        "progress": meta.get("progress"),
        "run_id": meta.get("run_id"),
        "metrics": {},
        "version": None,
        "champion_moved": None,
        "validated": None,
        "error": None,
        "enqueued_at": iso(job.enqueued_at),
        "started_at": iso(job.started_at),
        "ended_at": iso(job.ended_at),
    }
    if status == JobStatus.FINISHED:
        result = job.return_value() or {}
        for key in ("run_id", "metrics", "version", "champion_moved", "validated"):
            if key in result:
                described[key] = result[key]
    elif status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
        described["error"] = meta.get("error") or _exception_message(job)
    return described


def _exception_message(job: Job) -> str | None:
    """The last "SomeError: message" line of the job's traceback (never the whole trace)."""
    result = job.latest_result()
    text = getattr(result, "exc_string", None) if result is not None else None
    if not text:
        return None
    lines = text.strip().splitlines()
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    return lines[-1]
