"""`python -m serving.worker`: the RQ worker that runs training jobs from the training queue.

Same Redis settings as the proxy (conf/serving.yaml, env REDIS_HOST/REDIS_PORT/REDIS_PASSWORD,
TRAINING_QUEUE). Each job runs in a forked work horse. On SIGTERM (or Ctrl-C) the worker takes no
new job and stops the running training cleanly: the `mlflow run` processes are terminated, the
MLflow run is marked KILLED and the job fails with a message saying so; then the worker exits.
A second signal kills the work horse at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from rq import Worker

from serving.jobs import SERIALIZER, redis_connection, training_queue
from serving.logging import configure_logging, get_logger
from serving.settings import get_settings

log = get_logger("serving.worker")


class TrainingWorker(Worker):
    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            # The job turns SIGTERM into a clean cancel of its run (serving.jobs).
            log.warning("cancelling_running_training", horse_pid=self.horse_pid)
            with contextlib.suppress(ProcessLookupError):  # the horse just ended
                os.kill(self.horse_pid, signal.SIGTERM)


def build_worker(settings=None, name: str | None = None) -> TrainingWorker:
    settings = settings if settings is not None else get_settings()
    connection = redis_connection(settings, blocking=True)
    queue = training_queue(connection, settings)
    return TrainingWorker([queue], connection=connection, serializer=SERIALIZER, name=name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run training jobs from the Redis queue.")
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--name", default=None, help="worker name (default: RQ's)")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.jobs.log_level)
    import mlflow.projects  # noqa: F401  - loaded once here, inherited by every forked job

    worker = build_worker(settings, name=args.name)
    log.info(
        "worker_starting",
        queue=settings.jobs.queue,
        redis=f"{settings.redis.host}:{settings.redis.port}/{settings.redis.db}",
        burst=args.burst,
    )
    worker.work(burst=args.burst, logging_level=str(settings.jobs.log_level).upper())
    log.info("worker_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
