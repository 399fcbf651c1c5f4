"""The training worker for real: `python -m serving.worker` on a unique queue, jobs submitted
through the API, outcomes read back through /job_status and the MLflow store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient
from rq import Worker
from rq.utils import import_attribute

from serving.jobs.queue import TRAINING_JOB, enqueue_training, fetch_job, training_queue
from serving.jobs.training import run_training
from serving.worker import build_worker
from tests.support.serving import child_env, wait_for
from valuation.names import RETRAINING_REASON_TAG


class WorkerProcess:
    def __init__(self, process: subprocess.Popen, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


@pytest.fixture
def tracking_store(api_settings, tmp_path):
    """Each worker test gets its own MLflow store (the API's settings point at it too)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the schema now, not in the job
    api_settings.mlflow.tracking_uri = uri
    return uri


@pytest.fixture
def start_worker(api_settings, tracking_store, tmp_path) -> Iterator:
    """Start `python -m serving.worker` with the test's queue and tracking store."""
    started: list[WorkerProcess] = []

    def start(*args: str, **extra_env: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        # The worker also takes monitoring runs: a queue of the test's own, no periodic runs.
        env = child_env(TRAINING_QUEUE=api_settings.jobs.queue,
                        MONITORING_QUEUE=f"{api_settings.jobs.queue}-monitoring",
                        MONITORING_EVERY_S="0",
                        MLFLOW_TRACKING_URI=api_settings.mlflow.tracking_uri, **extra_env)
        with log_path.open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "serving.worker", *args],
                                       cwd=tmp_path, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        worker = WorkerProcess(process, log_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(timeout=30)


def _status(client, auth, job_id) -> dict:
    answer = client.get(f"/job_status/{job_id}", headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _processes_of_run(run_id: str) -> list[int]:
    """Processes whose environment names this MLflow run (the `mlflow run` tree)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"MLFLOW_RUN_ID={run_id}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_the_stored_job_name_is_the_training_function() -> None:
    # Jobs store their function's name, which the worker imports: the package's stable name.
    assert TRAINING_JOB == "serving.jobs.run_training"
    assert import_attribute(TRAINING_JOB) is run_training


@pytest.mark.slow
def test_idle_worker_stops_on_sigterm(start_worker, redis_conn, api_settings) -> None:
    worker = start_worker()
    wait_for(lambda: "worker_starting" in worker.log() and redis_conn.smembers(
        f"rq:workers:{api_settings.jobs.queue}"), 60, "the worker to register")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, worker.log()
    assert "worker_stopped" in worker.log()


@pytest.mark.slow
def test_a_failing_training_reports_why(client, auth, start_worker, tracking_store) -> None:
    body = {"experiment_config": {"experiment_name": "worker-failure"},
            "db_config": {"db_type": "csv",
                          "db_config": {"train_path": "/nonexistent/dir/train.csv",
                                        "test_path": "/nonexistent/dir/test.csv"}}}
    job_id = client.post("/train", json=body, headers=auth).json()["job_id"]
    worker = start_worker("--burst")
    assert worker.wait(timeout=600) == 0, worker.log()

    status = _status(client, auth, job_id)
    assert status["status"] == "failed", status
    assert status["run_id"], status
    assert "/nonexistent/dir/train.csv" in status["error"], status["error"]
    assert f"training run {status['run_id']} failed" in status["error"]
    run = MlflowClient(tracking_uri=tracking_store).get_run(status["run_id"])
    assert run.info.status == "FAILED"
    # The run keeps its console output for whoever investigates.
    artifacts = [a.path for a in MlflowClient(tracking_uri=tracking_store)
                 .list_artifacts(status["run_id"])]
    assert "training_output.log" in artifacts


@pytest.mark.slow
def test_sigterm_cancels_the_running_training_cleanly(
    client, auth, start_worker, tracking_store, redis_conn
) -> None:
    body = {"experiment_config": {"experiment_name": "worker-sigterm"},
            "db_config": {"db_type": "sample", "db_config": {"n_train": 20000, "n_test": 5000}}}
    job_id = client.post("/train", json=body, headers=auth).json()["job_id"]
    worker = start_worker()
    run_id = wait_for(lambda: (fetch_job(redis_conn, job_id).meta or {}).get("run_id"), 120,
                      "the training run to start", 0.2)
    wait_for(lambda: _processes_of_run(run_id), 60, "the run's processes to appear", 0.2)

    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=120) == 0, worker.log()

    status = _status(client, auth, job_id)
    assert status["status"] == "failed", status
    assert "SIGTERM" in status["error"], status["error"]
    assert MlflowClient(tracking_uri=tracking_store).get_run(run_id).info.status == "KILLED"
    assert _processes_of_run(run_id) == [], "the mlflow run processes outlived the worker"


@pytest.mark.slow
def test_a_training_job_runs_to_a_registered_version(
    client, auth, start_worker, tracking_store
) -> None:
    body = {
        "experiment_config": {"experiment_name": "worker-success"},
        "db_config": {"db_type": "sample", "db_config": {"n_train": 1500, "n_test": 400}},
        "pipeline_config": {"model_module": "sklearn.ensemble",
                            "model": "GradientBoostingRegressor",
                            "params": {"n_estimators": 80, "max_depth": 4, "learning_rate": 0.1,
                                       "loss": "squared_error"}},
    }
    accepted = client.post("/train", json=body, headers=auth)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    worker = start_worker("--burst")
    assert worker.wait(timeout=900) == 0, worker.log()

    status = _status(client, auth, job_id)
    assert status["status"] == "finished", status
    assert status["error"] is None
    assert status["run_id"]
    assert {"test_rmse", "test_mae", "test_r2", "test_mse"} <= set(status["metrics"])
    assert status["validated"] is True, status
    assert status["version"] == "1" and status["champion_moved"] is True, status
    assert status["progress"]["fraction"] == 1.0
    run = MlflowClient(tracking_uri=tracking_store).get_run(status["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["valuation.registered_version"] == "1"


@pytest.mark.slow
def test_a_retraining_job_records_its_reason_on_the_run_and_keeps_the_champion(
    start_worker, api_settings, redis_conn, tracking_store
) -> None:
    # What the monitoring policy enqueues (serving/monitoring/retraining.py): the /train job
    # with the reason as a run tag and registry.move_champion=false.
    reason = "live_error: live medape 0.3 vs test 0.1 (margin 10%) on 400 rows with feedback"
    job = enqueue_training(
        training_queue(redis_conn, api_settings), model="gbr",
        overrides="data=sample data.n_train=400 data.n_test=150 cv.folds=0 "
                  "model.params.n_estimators=20 evaluate.thresholds.rmse=1e12 "
                  "evaluate.thresholds.mae=1e12 evaluate.thresholds.r2=-1e12 "
                  "registry.move_champion=false",
        experiment_name="worker-retraining", submitted_by="monitoring", settings=api_settings,
        run_tags={RETRAINING_REASON_TAG: reason})
    worker = start_worker("--burst")
    assert worker.wait(timeout=900) == 0, worker.log()
    job.refresh()
    result = job.return_value()
    assert result["version"] == "1" and result["champion_moved"] is False, result
    run = MlflowClient(tracking_uri=tracking_store).get_run(result["run_id"])
    assert run.data.tags[RETRAINING_REASON_TAG] == reason
    assert "registry.move_champion=false" in run.data.tags["valuation.register_outcome"]


@pytest.mark.slow
def test_a_job_over_its_timeout_is_stopped_cleanly(
    client, auth, start_worker, api_settings, redis_conn
) -> None:
    api_settings.jobs.job_timeout_s = 20  # the app reads its settings per request
    body = {"experiment_config": {"experiment_name": "worker-timeout"},
            "db_config": {"db_type": "sample", "db_config": {"n_train": 60000, "n_test": 10000}}}
    job_id = client.post("/train", json=body, headers=auth).json()["job_id"]
    assert fetch_job(redis_conn, job_id).timeout == 20
    worker = start_worker("--burst")
    assert worker.wait(timeout=300) == 0, worker.log()

    status = _status(client, auth, job_id)
    assert status["status"] == "failed", status
    assert "timeout" in status["error"].lower(), status["error"]
    run_id = status["run_id"]
    tracking = api_settings.mlflow.tracking_uri
    assert MlflowClient(tracking_uri=tracking).get_run(run_id).info.status == "KILLED"
    assert _processes_of_run(run_id) == []


# What /job_status says when each part dies without a goodbye (SIGKILL: nothing can clean up).
KILL_REASONS = {
    # The out-of-memory killer takes the work horse: the worker sees it die.
    "horse": "was killed by signal 9 (SIGKILL",
    # The worker alone dies: its horse is re-parented, notices, and stops the run.
    "worker": "WorkerLost: the worker process",
    # Both at once (a lost host): only the missing heartbeat tells.
    "worker_and_horse": "stopped sending heartbeats",
}


@pytest.mark.slow
@pytest.mark.parametrize("victim", sorted(KILL_REASONS))
def test_a_killed_worker_fails_its_job_and_registers_nothing(
    victim, client, auth, start_worker, tracking_store, redis_conn, record_property
) -> None:
    body = {"experiment_config": {"experiment_name": f"worker-kill-{victim}"},
            "db_config": {"db_type": "sample", "db_config": {"n_train": 20000, "n_test": 5000}}}
    job_id = client.post("/train", json=body, headers=auth).json()["job_id"]
    # A dead worker's job is taken for abandoned once its heartbeat is 1 + 3 s late; only the
    # lost-host case waits for that (elsewhere a survivor reports first, and must win).
    heartbeat = ({"JOB_HEARTBEAT_INTERVAL_S": "1", "JOB_HEARTBEAT_GRACE_S": "3"}
                 if victim == "worker_and_horse" else {})
    worker = start_worker(**heartbeat)
    run_id = wait_for(lambda: (fetch_job(redis_conn, job_id).meta or {}).get("run_id"), 120,
                      "the training run to start", 0.2)
    run_processes = wait_for(lambda: _processes_of_run(run_id), 60,
                             "the run's processes to appear", 0.2)
    # The worker's children are the horse and RQ's scheduler: the horse is the run's ancestor.
    [horse] = [child for child in psutil.Process(worker.process.pid).children()
               if any(child.pid in [p.pid for p in psutil.Process(pid).parents()] + [pid]
                      for pid in run_processes if psutil.pid_exists(pid))]
    targets = {"horse": [horse.pid], "worker": [worker.process.pid],
               "worker_and_horse": [worker.process.pid, horse.pid]}[victim]
    try:
        # Stopped first, then killed: neither sees the other die before its own end.
        for pid in targets:
            os.kill(pid, signal.SIGSTOP)
        for pid in targets:
            os.kill(pid, signal.SIGKILL)

        status = wait_for(lambda: (answer := _status(client, auth, job_id))["status"] != "started"
                          and answer, 120, "the job to leave 'started'", 0.5)
        assert status["status"] == "failed", status
        assert KILL_REASONS[victim] in status["error"], status["error"]
        # The reason the job reports, for the hardening report (bench.faults reads the junit file).
        record_property("job_error", next(line.strip() for line in status["error"].splitlines()
                                          if KILL_REASONS[victim] in line)[:200])
        assert status["run_id"] == run_id
        # The orphaned `mlflow run` is stopped, its MLflow run ended, and nothing registered.
        wait_for(lambda: _processes_of_run(run_id) == [], 60, "the run's processes to be killed")
        tracking = MlflowClient(tracking_uri=tracking_store)
        wait_for(lambda: tracking.get_run(run_id).info.status == "KILLED", 60,
                 "the run to be marked KILLED")
        assert tracking.search_registered_models() == []
        assert tracking.search_model_versions() == []
    finally:
        if horse.is_running():  # the horse outlives a killed worker until it notices
            horse.kill()


def test_a_signal_during_start_up_stops_the_worker_cleanly(redis_conn, api_settings) -> None:
    # RQ registers the worker before it installs its handlers: a SIGTERM in that window is
    # remembered, and the work loop stops at its first check, deregistered.
    worker = build_worker(api_settings, name=f"early-stop-{uuid.uuid4().hex[:8]}")
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.remember_early_stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert worker.early_stop_signal == signal.SIGTERM
        worker.work(burst=False)  # returns instead of waiting for jobs
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert worker.name not in {w.name for w in Worker.all(connection=worker.connection)}
