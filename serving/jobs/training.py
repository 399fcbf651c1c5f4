"""The training job, executed by the worker: `run_training` runs the Project's `main` entry point
through MLflow Projects (the same command `make train` runs), copies the pipeline's progress file
into the job's meta while it runs, and returns what the parent run recorded. A run outlives
neither a timeout, nor a SIGTERM, nor the death of its worker or work horse (serving/run_guard.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rq import get_current_job
from rq.job import Job

from serving import run_guard
from serving.jobs.output import CapturedOutput, tail_lines
from serving.logging import get_logger
from serving.settings import get_settings, mlflow_tracking_uri
from valuation import names
from valuation.config import PROJECT_ROOT
from valuation.progress import PROGRESS_FILE_ENV

log = get_logger(__name__)

ENTRY_POINT = "main"
OUTPUT_ARTIFACT = "training_output.log"


class TrainingFailed(RuntimeError):
    """The training run ended without success; the message says why and quotes its output."""


class TrainingCancelled(RuntimeError):
    """The worker was told to stop (SIGTERM) while a training ran."""


class WorkerLost(RuntimeError):
    """The worker process that forked this work horse died while the training ran."""


def run_training(model: str, overrides: str, experiment_name: str,
                 run_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the Project's `main` entry point and return {run_id, metrics, version, ...}.
    `run_tags` are set on the run as soon as it exists.

    Executed by the worker. Raises TrainingFailed (with the run's last output lines) when the
    run fails, and cancels the run if the job times out or the worker is stopped.
    """
    import mlflow
    import mlflow.projects

    settings = get_settings()
    job = get_current_job()
    uri = mlflow_tracking_uri()
    poll_s = float(settings.jobs.progress_poll_s)
    worker_pid = os.getppid()  # the worker that forked this horse; watched while the run runs
    with tempfile.TemporaryDirectory(prefix="valuation-job-") as scratch:
        progress_file = Path(scratch) / "progress.json"
        output_file = Path(scratch) / OUTPUT_ARTIFACT
        with (_run_environment(uri, progress_file), CapturedOutput(output_file) as output,
              _cancel_on_sigterm()):
            mlflow.set_tracking_uri(uri)
            try:
                submitted = mlflow.projects.run(
                    uri=str(PROJECT_ROOT),
                    entry_point=ENTRY_POINT,
                    parameters={"model": model, "overrides": overrides},
                    env_manager="local",
                    experiment_name=experiment_name,
                    synchronous=False,
                )
            except BaseException as stop:  # includes a timeout or SIGTERM while launching
                _save_meta(job, error=f"training did not start: {_describe(stop)}")
                raise
            run_id = submitted.run_id
            with _guarded(submitted.command_proc, run_id, scratch, output,
                          float(settings.jobs.run_guard_wait_s)):
                log.info("training_started", run_id=run_id, model=model, overrides=overrides)
                _save_meta(job, run_id=run_id)
                try:
                    _tag_run(run_id, run_tags or {})
                    _follow(submitted, job, progress_file, output, poll_s, worker_pid)
                except BaseException as stop:  # timeout (JobTimeoutException), SIGTERM, Ctrl-C,
                    # the worker's death (WorkerLost)
                    _abort(submitted, run_id, f"training stopped: {_describe(stop)}", job)
                    raise
                succeeded = submitted.get_status() == "FINISHED"
        _attach_output(run_id, output_file)
        outcome = _run_outcome(run_id, experiment_name)
        run_status = outcome.pop("status")
        if not succeeded or run_status != "FINISHED":
            message = _failure_message(run_id, outcome, output_file, settings)
            _save_meta(job, error=message)
            raise TrainingFailed(message)
    log.info("training_finished", **outcome)
    return outcome


def _follow(submitted: Any, job: Job | None, progress_file: Path, output: CapturedOutput,
            poll_s: float, worker_pid: int) -> None:
    """Until the run's process exits: forward its output and copy its progress into the job.

    Raises WorkerLost when the worker that forked this horse dies (this process is re-parented):
    nobody would record the job's outcome, so the run is stopped rather than left to register.
    """
    last: dict[str, Any] | None = None
    while True:
        if os.getppid() != worker_pid:
            raise WorkerLost(f"the worker process (pid {worker_pid}) running this job died")
        running = submitted.get_status() == "RUNNING"
        output.forward()
        progress = read_progress(progress_file)
        if progress is not None and progress != last:
            _save_meta(job, progress=progress)
            last = progress
        if not running:
            return
        time.sleep(poll_s)


def _tag_run(run_id: str, tags: dict[str, str]) -> None:
    from mlflow import MlflowClient

    for name, value in tags.items():
        MlflowClient().set_tag(run_id, name, value)


def read_progress(path: Path) -> dict[str, Any] | None:
    """{step, fraction, message} from the pipeline's progress file, or None if absent/invalid."""
    try:
        data = json.loads(path.read_text())
        return {
            "step": str(data["step"]),
            "fraction": max(0.0, min(1.0, float(data["fraction"]))),
            "message": str(data.get("message", "")),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _save_meta(job: Job | None, **values: Any) -> None:
    if job is None:  # called outside a worker (e.g. directly in a test)
        return
    job.meta.update(values)
    job.save_meta()


@contextmanager
def _guarded(process: subprocess.Popen, run_id: str, scratch: str, output: CapturedOutput,
             wait_s: float) -> Iterator[None]:
    """Keep `python -m serving.run_guard` beside the run: should this horse die without saying
    the run has ended (SIGKILL, out of memory), the guard kills the run's process group."""
    guard = subprocess.Popen(
        [sys.executable, "-m", "serving.run_guard", str(os.getpgid(process.pid)), run_id, scratch],
        stdin=subprocess.PIPE, stdout=output.original_stderr, stderr=output.original_stderr,
        start_new_session=True,  # survives a kill of the worker's and the horse's groups
    )
    try:
        yield
    finally:
        # "done" only once the run's processes are gone; otherwise closing the pipe makes the
        # guard kill them (an exception got past the cancel).
        with contextlib.suppress(BrokenPipeError):
            if process.poll() is not None:
                guard.stdin.write(run_guard.DONE)
            guard.stdin.close()
        try:
            guard.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            log.warning("run_guard_still_running", run_id=run_id, guard_pid=guard.pid)


def _abort(submitted: Any, run_id: str, reason: str, job: Job | None) -> None:
    """Stop the run's processes and mark the MLflow run KILLED, so nothing keeps running."""
    from mlflow import MlflowClient

    log.warning("training_aborted", run_id=run_id, reason=reason)
    try:
        submitted.cancel()  # SIGTERM to the `mlflow run` process group, then waits
        MlflowClient().set_terminated(run_id, status="KILLED")
    finally:
        _save_meta(job, error=reason)


def _run_outcome(run_id: str, experiment_name: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    run = MlflowClient().get_run(run_id)
    tags = run.data.tags
    version = tags.get(names.REGISTERED_VERSION_TAG) or None
    return {
        "run_id": run_id,
        "experiment_name": experiment_name,
        "status": run.info.status,
        "metrics": {name: value for name, value in sorted(run.data.metrics.items())
                    if name.startswith(names.TEST_METRIC_PREFIX)},
        "version": version,
        "champion_moved": _flag(tags.get(names.CHAMPION_MOVED_TAG)),
        "validated": _flag(tags.get(names.VALIDATED_TAG)),
        "register_outcome": tags.get(names.REGISTER_OUTCOME_TAG),
    }


def _flag(value: str | None) -> bool | None:
    return None if value is None else value.strip().lower() == "true"


def _failure_message(run_id: str, outcome: dict[str, Any], output_file: Path,
                     settings: DictConfig) -> str:
    tail = tail_lines(output_file, int(settings.jobs.output_tail_lines))
    return (
        f"training run {run_id} failed (experiment '{outcome['experiment_name']}'). "
        f"Last lines of its output:\n{tail}"
    )


def _attach_output(run_id: str, output_file: Path) -> None:
    """Keep the run's console output with the run, for whoever investigates it later."""
    from mlflow import MlflowClient

    try:
        MlflowClient().log_artifact(run_id, str(output_file))
    except Exception as error:  # the artifact store being down must not hide the outcome
        log.warning("training_output_not_logged", run_id=run_id, error=str(error))


@contextmanager
def _run_environment(tracking_uri: str, progress_file: Path) -> Iterator[None]:
    """Environment the `mlflow run` subprocess inherits; restored afterwards (the in-process
    SimpleWorker shares this process)."""
    bin_dir = str(Path(sys.executable).parent)  # the `mlflow` CLI of this virtualenv
    changes = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        PROGRESS_FILE_ENV: str(progress_file),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _cancel_on_sigterm() -> Iterator[None]:
    """SIGTERM during a training raises TrainingCancelled, so the run is stopped, not orphaned
    (the `mlflow run` subprocess lives in its own session and would outlive a killed worker)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancel(signum: int, frame: Any) -> None:
        raise TrainingCancelled("the worker received SIGTERM while training")

    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
