"""Jobs left `started` by a worker that died without a word: found by their stopped heartbeat
and failed with a reason, so a status never stays `started` forever."""

from __future__ import annotations

import time

from rq import Queue
from rq.job import Job, JobStatus

from serving.jobs.queue import fetch_job, iso
from serving.logging import get_logger

log = get_logger(__name__)


def fail_abandoned_jobs(queue: Queue) -> list[str]:
    """Fail the jobs of `queue` left `started` by a worker that died; returns their ids.

    The worker refreshes a running job's heartbeat every `jobs.heartbeat_interval_s`; once it is
    `jobs.heartbeat_grace_s` late the worker is taken for dead (killed with its horse, lost
    host) and the job fails with a message saying so. RQ's own cleanup then moves it to the failed
    registry (it would retry a job with retries left; training jobs have none). Called by /job_status
    and by every worker's maintenance, so it happens even when no worker is left.
    """
    registry = queue.started_job_registry
    cutoff = time.time()  # the same for RQ's cleanup below, so it moves exactly these jobs
    expired = registry.get_expired_job_ids(cutoff)
    if not expired:
        return []
    abandoned = []
    for job_id in expired:
        job = fetch_job(queue.connection, job_id)
        if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
            continue
        beat = iso(job.last_heartbeat) or "never"
        record_error(job, f"the worker {job.worker_name or '(unknown)'} running this training "
                          f"stopped sending heartbeats (last at {beat}): it was killed or lost its "
                          "host, so the training was abandoned")
        abandoned.append(job_id)
        log.warning("abandoned_job_failed", job_id=job_id, worker=job.worker_name,
                    run_id=(job.meta or {}).get("run_id"), last_heartbeat=beat)
    registry.cleanup(cutoff)
    return abandoned


def record_error(job: Job, message: str) -> None:
    """Put the reason of a failure in the job's meta (re-read first: the horse wrote it last)."""
    meta = job.get_meta(refresh=True)
    if not meta.get("error"):
        meta["error"] = message
        job.save_meta()
