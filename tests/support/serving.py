"""Helpers of the proxy tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from redis import Redis
from rq import Queue

from serving.jobs.queue import SERIALIZER
from serving.model_servers.served import ServedModel
from serving.ports import free_port
from tests.support.http_server import serve_on_loopback
from valuation.config import PROJECT_ROOT, load_config
from valuation.model_runtime.validation import ValidationRules

MODEL_NAME = "property_friends_best_model"
TEST_SECTORS = ("la reina", "las condes", "lo barnechea", "providencia", "vitacura")

# A tiny model from the real pipeline on synthetic data: thresholds opened up so it registers.
TINY_PIPELINE = [
    "data=sample", "data.n_train=600", "data.n_test=200", "cv.folds=0", "model=gbr",
    "model.params.n_estimators=30", "model.params.max_depth=3",
    "evaluate.thresholds.rmse=1e12", "evaluate.thresholds.mae=1e12",
    "evaluate.thresholds.r2=-1e12", "experiment_name=api-tests",
]


def serving_settings(tmp_path: Path, tracking_uri: str, **overrides: Any) -> DictConfig:
    """conf/serving.yaml with a unique queue, no Vault, and a tmp tracking store and run dir."""
    base = composed_config("serving")
    patch: dict[str, Any] = {
        "jobs": {"queue": f"test-api-{uuid.uuid4().hex[:12]}"},
        # Monitoring runs (POST /monitoring/run) and their figures: a queue and keys of its own.
        "monitoring_job": {"queue": f"test-monitoring-{uuid.uuid4().hex[:12]}",
                           "redis_prefix": f"test-monitoring:{uuid.uuid4().hex[:12]}"},
        "vault": {"addr": None, "port": None},
        "mlflow": {"tracking_uri": tracking_uri},
        "model_server": {"run_dir": str(tmp_path / "model-servers"), "base_port": free_port()},
        "audit": {"path": str(tmp_path / "audit" / "audit.jsonl")},
        "prediction_store": {"url": f"sqlite:///{tmp_path / 'predictions.db'}"},
        # The run-time traffic split (serving/traffic/): a key of its own, never a stray one.
        "traffic": {"redis_key": f"test-traffic:{uuid.uuid4().hex[:12]}"},
        # Python's collector is the test process's, shared by every app a test run starts (a
        # full collection at each start would cost seconds): tests/serving/test_collector.py
        # checks the tuning; stacks started as processes use the configured one.
        "proxy": {"gc": {"freeze_after_start": False, "thresholds": None}},
    }
    settings = OmegaConf.merge(base, patch, overrides)
    OmegaConf.set_readonly(settings, None)  # the copy is the caller's to change, as load_config's
    return settings


def composed_config(config_name: str) -> DictConfig:
    """conf/<config_name>.yaml as load_config composes it, composed once per environment (its
    interpolations read the environment): Hydra's compose is most of an app fixture's set-up.
    Callers merge it into a copy or read it; none may change it."""
    # pytest names the running test in the environment: not something the config reads.
    environment = frozenset(item for item in os.environ.items()
                            if item[0] != "PYTEST_CURRENT_TEST")
    return _composed(config_name, environment)


@lru_cache(maxsize=8)
def _composed(config_name: str, environment: frozenset[tuple[str, str]]) -> DictConfig:
    del environment  # part of the cache key only
    config = load_config(config_name=config_name)
    OmegaConf.set_readonly(config, True)
    return config


def purge_queue(connection: Redis, queue_name: str) -> None:
    """Delete a test queue, its registries and every job that went through it."""
    queue = Queue(queue_name, connection=connection, serializer=SERIALIZER)
    job_ids = set(queue.job_ids)
    for registry in (queue.started_job_registry, queue.finished_job_registry,
                     queue.failed_job_registry, queue.deferred_job_registry,
                     queue.scheduled_job_registry, queue.canceled_job_registry):
        job_ids.update(registry.get_job_ids())
    for job_id in job_ids:
        for key in connection.scan_iter(f"rq:*{job_id}*"):
            connection.delete(key)
    for key in connection.scan_iter(f"rq:*{queue_name}*"):
        connection.delete(key)
    connection.srem("rq:queues", f"rq:queue:{queue_name}")


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def queue_length(connection: Redis, settings: DictConfig) -> int:
    return Queue(settings.jobs.queue, connection=connection, serializer=SERIALIZER).count


def make_rules(max_rows: int = 10_000) -> ValidationRules:
    cfg = composed_config("config").validation
    rules = ValidationRules.from_config(cfg, TEST_SECTORS)
    return ValidationRules.from_dict({**rules.to_dict(), "max_rows": max_rows})


class FixedSupervisor:
    """Stands in for ModelServerSupervisor where a fault must be produced on demand: a model
    server that dies or hangs *after* the supervisor last checked it. The real supervisor unbinds
    such a server within a poll interval, so that window cannot be hit reliably for real. It
    points at a real HTTP server (or a closed port) and has the supervisor's public API."""

    def __init__(self, base_url: str, version: str = "7", rules: ValidationRules | None = None,
                 broken_status: bool = False) -> None:
        self.model = ServedModel(MODEL_NAME, version, base_url, rules or make_rules(), {})
        self.broken_status = broken_status

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def current(self) -> ServedModel | None:
        return self.model

    def served(self, version: str | None = None, alias: str | None = None) -> ServedModel | None:
        if version is not None and version != self.model.version:
            return None
        if alias is not None and alias != "champion":
            return None
        return self.model

    @contextmanager
    def use(self, version: str | None = None, alias: str | None = None):
        yield self.served(version, alias)

    def status(self) -> dict[str, Any]:
        if self.broken_status:
            raise RuntimeError("supervisor state corrupted (test fault)")
        return {"state": "serving", "version": self.model.version, "detail": "fixed",
                "servers": [{"version": self.model.version}]}


@dataclass
class FakeModelServer:
    """A real HTTP server playing a model server's part: answers /invocations as told by `mode`
    (ok, slow, bad_request, error, garbage) and keeps the bodies it received."""

    url: str
    mode: str = "ok"
    received: list[dict[str, Any]] = field(default_factory=list)
    delay_s: float = 3.0


@dataclass(frozen=True)
class TrainedModel:
    tracking_uri: str
    root: Path
    version: str
    experiment_name: str


# MLflow state a child must not inherit from the test process (other tests may have set it).
_INHERITED_MLFLOW_ENV = ("MLFLOW_RUN_ID", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID",
                         "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_URI")


def child_env(**values: str) -> dict[str, str]:
    """This process's environment minus inherited MLflow state and Vault settings, plus
    `values`, with the project importable."""
    env = {k: v for k, v in os.environ.items()
           if k not in _INHERITED_MLFLOW_ENV and not k.startswith("VAULT_")}
    return {**env, "PYTHONPATH": str(PROJECT_ROOT), **values}


def run_pipeline_in_child(tracking_uri: str, workdir: Path, overrides: list[str],
                          **env: str) -> dict[str, Any]:
    """`steps.main.run_pipeline(overrides)` in a child interpreter (MLflow's global state stays
    out of the test process), with `env` added to its environment; returns the PipelineResult as
    a dict."""
    script = textwrap.dedent(
        """
        import dataclasses, json, sys
        from steps.main import run_pipeline
        result = run_pipeline(json.loads(sys.argv[1]))
        print("RESULT=" + json.dumps(dataclasses.asdict(result)))
        """
    )
    done = subprocess.run([sys.executable, "-c", script, json.dumps(overrides)], cwd=workdir,
                          env=child_env(MLFLOW_TRACKING_URI=tracking_uri, **env),
                          capture_output=True, text=True, timeout=900)
    marker = [line for line in done.stdout.splitlines() if line.startswith("RESULT=")]
    if done.returncode != 0 or not marker:
        raise RuntimeError(f"pipeline failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(marker[-1].removeprefix("RESULT="))


@contextmanager
def serve_fake_model_server() -> Iterator[FakeModelServer]:
    """Run a FakeModelServer on a free loopback port until the block ends."""
    state = FakeModelServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            self._answer(200, b"\n" if self.path == "/ping" else b"{}")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.received.append(body)
            rows = body["inputs"]
            if state.mode == "slow":
                time.sleep(state.delay_s)
            if state.mode == "bad_request":
                self._answer(400, json.dumps({"error_code": "INVALID_PARAMETER_VALUE",
                                              "message": "row 0, field 'sector': rejected"}).encode())
            elif state.mode == "error":
                self._answer(500, b'{"error_code": "INTERNAL_ERROR", "message": "boom"}')
            elif state.mode == "garbage":
                self._answer(200, b'{"predictions": ["a lot"]}')
            else:
                prices = [1000.0 * (i + 1) for i in range(len(rows))]
                self._answer(200, json.dumps({"predictions": prices}).encode())

        def _answer(self, status: int, payload: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the proxy gave up first (the timeout test)

    with serve_on_loopback(Handler) as url:
        state.url = url
        yield state


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn server on a free loopback port (in a thread) until
    the block ends; yields its base URL. For tests that need real concurrent HTTP clients."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 60, "the proxy to listen", 0.05)
        if not server.started:
            raise AssertionError("the proxy did not start (see the log above)")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
