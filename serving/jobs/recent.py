"""The training queue's recent jobs, newest first, as /job_status describes each (for GET /jobs)."""

from __future__ import annotations

from typing import Any

from rq import Queue
from rq.job import Job

from serving.jobs.queue import SERIALIZER
from serving.jobs.status import describe_job


def recent_jobs(queue: Queue, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` jobs of `queue` (waiting, running, finished or failed and still kept, see
    jobs.result_ttl_s), newest enqueued first, each described as /job_status does, plus what was
    asked (`description`) and by which key id (`submitted_by`)."""
    ids = dict.fromkeys([
        *queue.get_job_ids(),
        *queue.started_job_registry.get_job_ids(),
        *queue.finished_job_registry.get_job_ids(),
        *queue.failed_job_registry.get_job_ids(),
        *queue.canceled_job_registry.get_job_ids(),
    ])
    jobs = [job for job in Job.fetch_many(list(ids), connection=queue.connection,
                                          serializer=SERIALIZER) if job is not None]
    jobs.sort(key=lambda job: job.enqueued_at or job.created_at, reverse=True)
    return [
        {**describe_job(job), "description": job.description,
         "submitted_by": (job.meta or {}).get("submitted_by")}
        for job in jobs[:limit]
    ]
