"""The training queue as the proxy uses it: the Redis connection, enqueueing and fetching jobs."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig
from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from serving.settings import get_settings, secret

SERIALIZER = JSONSerializer
# What RQ imports to run a training (serving/jobs/training.py, exported by the package).
TRAINING_JOB = "serving.jobs.run_training"


def redis_connection(settings: DictConfig | None = None, *, blocking: bool = False) -> Redis:
    """A Redis client from settings (password from env REDIS_PASSWORD).

    `blocking=True` is for the worker: its dequeue blocks on Redis for minutes, so it must not
    have the short socket timeout the proxy uses to fail fast.
    """
    settings = settings if settings is not None else get_settings()
    return Redis(
        host=settings.redis.host,
        port=int(settings.redis.port),
        db=int(settings.redis.db),
        password=secret("REDIS_PASSWORD"),
        socket_timeout=None if blocking else float(settings.redis.socket_timeout_s),
        socket_connect_timeout=float(settings.redis.socket_timeout_s),
        health_check_interval=int(settings.redis.health_check_interval_s),
    )


def training_queue(connection: Redis, settings: DictConfig | None = None) -> Queue:
    settings = settings if settings is not None else get_settings()
    return Queue(settings.jobs.queue, connection=connection, serializer=SERIALIZER)


def enqueue_training(
    queue: Queue,
    *,
    model: str,
    overrides: str,
    experiment_name: str,
    submitted_by: str,
    settings: DictConfig | None = None,
    run_tags: dict[str, str] | None = None,
) -> Job:
    """Put one training on the queue; its timeout and result TTL come from settings. `run_tags`
    are set on the pipeline's parent run (e.g. why the retraining policy started it)."""
    settings = settings if settings is not None else get_settings()
    kwargs: dict[str, Any] = {"model": model, "overrides": overrides,
                              "experiment_name": experiment_name}
    if run_tags:
        kwargs["run_tags"] = dict(run_tags)
    return queue.enqueue_call(
        TRAINING_JOB,
        kwargs=kwargs,
        timeout=int(settings.jobs.job_timeout_s),
        result_ttl=int(settings.jobs.result_ttl_s),
        failure_ttl=int(settings.jobs.result_ttl_s),
        description=f"train model={model or '(default)'} experiment={experiment_name}",
        meta={
            "submitted_by": submitted_by,
            "progress": {"step": "queued", "fraction": 0.0, "message": "waiting for a worker"},
        },
    )


def fetch_job(connection: Redis, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=connection, serializer=SERIALIZER)
    except NoSuchJobError:
        return None


def iso(moment: Any) -> str | None:
    """A job's timestamp as ISO 8601 (None stays None)."""
    return moment.isoformat() if moment is not None else None
