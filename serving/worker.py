"""`python -m serving.worker`: the RQ worker that runs training jobs from the training queue,
and monitoring runs from the monitoring queue (serving/monitoring/; it also runs RQ's scheduler,
which enqueues the periodic monitoring runs when they are due).

Same Redis settings as the proxy (conf/serving.yaml, env REDIS_HOST/REDIS_PORT/REDIS_PASSWORD,
TRAINING_QUEUE). Each job runs in a forked work horse. On SIGTERM (or Ctrl-C) the worker takes no
new job and stops the running training cleanly: the `mlflow run` processes are terminated, the
MLflow run is marked KILLED and the job fails with a message saying so; then the worker exits.
A second signal kills the work horse at once.

Deaths without a goodbye end the job too, with a reason /job_status shows:
- the work horse is killed (SIGKILL, out of memory): the worker fails the job at once, and the
  horse's run guard (serving.run_guard) kills the orphaned `mlflow run` and marks its run KILLED;
- the worker alone is killed: the horse notices it was re-parented, stops its run and fails the job;
- worker and horse are killed together (lost host): the job's heartbeat stops, and once it is
  `jobs.heartbeat_grace_s` late the job is failed as abandoned, by /job_status or by any worker's
  maintenance (every `jobs.maintenance_interval_s`, and at start-up).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from rq import Worker

from serving.jobs.abandoned import fail_abandoned_jobs, record_error
from serving.jobs.queue import SERIALIZER, redis_connection, training_queue
from serving.logging import configure_logging, get_logger
from serving.monitoring.schedule import ensure_schedule, monitoring_queue
from serving.settings import get_settings

log = get_logger("serving.worker")


class TrainingWorker(Worker):
    def __init__(self, *args, heartbeat_grace_s: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_grace_s = heartbeat_grace_s
        self.early_stop_signal: int | None = None

    def remember_early_stop(self) -> None:
        """RQ installs its signal handlers only after it has registered the worker and started
        its scheduler; a SIGTERM or Ctrl-C before that would kill the worker still registered.
        Until then a signal is only remembered, and the work loop stops at its first check."""
        def remember(signum: int, frame) -> None:
            self.early_stop_signal = signum

        signal.signal(signal.SIGINT, remember)
        signal.signal(signal.SIGTERM, remember)

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        if self.early_stop_signal is not None:
            log.info("worker_stop_requested_during_start",
                     signal=signal.Signals(self.early_stop_signal).name)
            self._stop_requested = True

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        # RQ's own rule with our grace instead of its fixed 60 s: how late a heartbeat may be
        # before the job is taken for abandoned.
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            interval = min(job.timeout - working_time, interval)
        return int(interval) + self.heartbeat_grace_s

    def clean_registries(self) -> None:
        # Jobs of dead workers first, so that they fail with a reason rather than RQ's bare
        # "AbandonedJobError" (RQ's cleanup would move them too).
        for queue in self.queues:
            try:
                fail_abandoned_jobs(queue)
            except Exception as error:  # maintenance must not stop the worker
                log.error("abandoned_jobs_check_failed", queue=queue.name, error=repr(error))
        super().clean_registries()

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        if ret_val is not None and os.WIFSIGNALED(ret_val):
            number = os.WTERMSIG(ret_val)
            how = f"was killed by signal {number} ({signal.Signals(number).name}"
            how += ", e.g. the out-of-memory killer)" if number == signal.SIGKILL else ")"
        else:
            how = f"exited unexpectedly (wait status {ret_val})"
        log.error("work_horse_died", job_id=job.id, horse_pid=retpid, wait_status=ret_val)
        record_error(job, f"the work horse (pid {retpid}) running this training {how}; "
                          "its training run was stopped and nothing was registered from it")

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            # The job turns SIGTERM into a clean cancel of its run (serving/jobs/training.py).
            log.warning("cancelling_running_training", horse_pid=self.horse_pid)
            with contextlib.suppress(ProcessLookupError):  # the horse just ended
                os.kill(self.horse_pid, signal.SIGTERM)


def build_worker(settings=None, name: str | None = None) -> TrainingWorker:
    settings = settings if settings is not None else get_settings()
    connection = redis_connection(settings, blocking=True)
    # Monitoring runs first: they take seconds, and a queued training can wait that long.
    queues = [monitoring_queue(connection, settings), training_queue(connection, settings)]
    jobs = settings.jobs
    return TrainingWorker(
        queues, connection=connection, serializer=SERIALIZER, name=name,
        job_monitoring_interval=int(jobs.heartbeat_interval_s),
        heartbeat_grace_s=int(jobs.heartbeat_grace_s),
        maintenance_interval=int(jobs.maintenance_interval_s),
        worker_ttl=int(jobs.worker_ttl_s),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run training jobs from the Redis queue.")
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--name", default=None, help="worker name (default: RQ's)")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.jobs.log_level)
    import mlflow.projects  # noqa: F401  - loaded once here, inherited by every forked job

    worker = build_worker(settings, name=args.name)
    worker.remember_early_stop()
    # The periodic monitoring runs: RQ's scheduler (with_scheduler below) enqueues them when due.
    ensure_schedule(worker.connection, settings)
    log.info(
        "worker_starting",
        queue=settings.jobs.queue,
        monitoring_queue=settings.monitoring_job.queue,
        redis=f"{settings.redis.host}:{settings.redis.port}/{settings.redis.db}",
        burst=args.burst,
    )
    worker.work(burst=args.burst, logging_level=str(settings.jobs.log_level).upper(),
                with_scheduler=True)
    log.info("worker_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
