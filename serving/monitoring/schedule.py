"""When the monitoring job runs: on RQ's own scheduling, and on demand.

Periodic runs are a chain of `Queue.enqueue_in` jobs: each scheduled run first schedules the next
one `monitoring_job.every_s` later (first, so that a failing run does not break the chain), and
RQ's scheduler (started by the worker, `with_scheduler=True`) moves a job onto the queue when it
is due. No timer loop of ours: the due times live in RQ's ScheduledJobRegistry in Redis, so they
survive a worker restart, and any worker may run them. RQ's CronScheduler (rq >= 2.4, a separate
`rq cron` process, beta) would do the same with one more process to run.

Every worker calls `ensure_schedule` at start-up: under a Redis lock it looks for the pending
scheduled run (its id is kept in Redis) and schedules one only when there is none, so several
workers, or restarts, never start two chains.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from omegaconf import DictConfig
from rq import Queue
from rq.job import Job, JobStatus

from serving.jobs.queue import SERIALIZER, fetch_job
from serving.logging import get_logger

log = get_logger(__name__)

# What RQ imports to run a monitoring run (serving/monitoring/job.py).
MONITORING_JOB = "serving.monitoring.job.run_monitoring"
PENDING = {JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED}


def monitoring_queue(redis: Any, settings: DictConfig) -> Queue:
    return Queue(str(settings.monitoring_job.queue), connection=redis, serializer=SERIALIZER)


def schedule_key(settings: DictConfig) -> str:
    return f"{settings.monitoring_job.redis_prefix}:next_scheduled_job"


def _job_options(settings: DictConfig, trigger: str, reschedule: bool) -> dict[str, Any]:
    section = settings.monitoring_job
    return {
        "kwargs": {"trigger": trigger, "reschedule": reschedule},
        "timeout": int(section.job_timeout_s),
        "result_ttl": int(settings.jobs.result_ttl_s),
        "failure_ttl": int(settings.jobs.result_ttl_s),
        "description": f"monitoring run ({trigger})",
        "meta": {"submitted_by": trigger},
    }


def enqueue_now(redis: Any, settings: DictConfig, trigger: str, submitted_by: str) -> Job:
    """An on-demand run (POST /monitoring/run); it does not touch the periodic chain."""
    options = _job_options(settings, trigger, reschedule=False)
    options["meta"] = {"submitted_by": submitted_by}
    return monitoring_queue(redis, settings).enqueue_call(MONITORING_JOB, **options)


def schedule_next(redis: Any, settings: DictConfig) -> Job | None:
    """Schedule the next periodic run `every_s` from now (None when periodic runs are off)."""
    every_s = int(settings.monitoring_job.every_s)
    if every_s <= 0:
        return None
    options = _job_options(settings, "schedule", reschedule=True)
    queue = monitoring_queue(redis, settings)
    job = queue.enqueue_in(timedelta(seconds=every_s), MONITORING_JOB, **options["kwargs"],
                           job_timeout=options["timeout"], result_ttl=options["result_ttl"],
                           failure_ttl=options["failure_ttl"],
                           description=options["description"], meta=options["meta"])
    redis.set(schedule_key(settings), job.id)
    return job


def ensure_schedule(redis: Any, settings: DictConfig) -> Job | None:
    """The pending periodic run, scheduling one if the chain is broken or was never started."""
    if int(settings.monitoring_job.every_s) <= 0:
        return None
    with redis.lock(f"{settings.monitoring_job.redis_prefix}:schedule_lock", timeout=30,
                    blocking_timeout=30):
        raw = redis.get(schedule_key(settings))
        job = fetch_job(redis, raw.decode() if isinstance(raw, bytes) else raw) if raw else None
        if job is not None and job.get_status(refresh=False) in PENDING:
            return job
        job = schedule_next(redis, settings)
        log.info("monitoring_scheduled", job_id=job.id, every_s=int(settings.monitoring_job.every_s))
        return job
