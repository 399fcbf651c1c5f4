"""Fixtures for the model-server supervisor and stack tests: a registry with two real versions,
and the real `python -m serving.devstack` topology (the `stack` fixture, one per test module)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from omegaconf import DictConfig

from serving.ports import LOOPBACK, free_port, free_port_run
from serving.processes import kill_group
from valuation.config import PROJECT_ROOT, load_config

MODEL_NAME = "property_friends_best_model"

# Two tiny, different versions trained by the project's own pipeline on synthetic data. The
# thresholds are opened up because a 30-tree model on 400 rows is not meant to be good; the
# aliases are moved by the tests themselves.
PIPELINE_OVERRIDES = [
    "data=sample", "data.n_train=400", "data.n_test=120", "cv.folds=0", "model=lgbm",
    "model.params.n_estimators=30",
    "evaluate.thresholds.rmse=1e12", "evaluate.thresholds.mae=1e12", "evaluate.thresholds.r2=-1e12",
]


@dataclass(frozen=True)
class TrainedRegistry:
    tracking_uri: str
    root: Path
    versions: tuple[str, ...]  # two servable versions, oldest first


def _train_versions(tracking_uri: str, workdir: Path, seeds: Sequence[int]) -> list[str]:
    """Run `steps.main.run_pipeline` once per seed in a child interpreter (keeps MLflow's global
    state out of the test process) and return the registered versions."""
    script = textwrap.dedent(
        """
        import json, sys
        from steps.main import run_pipeline
        versions = []
        for seed in json.loads(sys.argv[2]):
            result = run_pipeline(json.loads(sys.argv[1]) + [f"seed={seed}"])
            versions.append(result.version)
        print("VERSIONS=" + json.dumps(versions))
        """
    )
    import json

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("MLFLOW_RUN_ID", None)
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(PIPELINE_OVERRIDES), json.dumps(list(seeds))],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=900,
    )
    marker = [line for line in done.stdout.splitlines() if line.startswith("VERSIONS=")]
    if done.returncode != 0 or not marker:
        raise RuntimeError(f"pipeline failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-5000:]}")
    versions = json.loads(marker[0].removeprefix("VERSIONS="))
    if any(v is None for v in versions):
        raise RuntimeError(f"pipeline registered nothing: {versions}\n{done.stdout[-3000:]}")
    return [str(v) for v in versions]


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> TrainedRegistry:
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    versions = _train_versions(uri, root, seeds=[1, 2])
    return TrainedRegistry(tracking_uri=uri, root=root, versions=tuple(versions))


def set_champion(tracking_uri: str, version: str, alias: str = "champion") -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(
        MODEL_NAME, alias, str(version)
    )


def supervisor_settings(run_dir: Path, base_port: int, **model_server: object) -> DictConfig:
    """conf/serving.yaml with test-sized timings (fast watch, short backoff)."""
    values = {
        "base_port": base_port, "watch_interval_s": 1, "poll_interval_s": 0.2, "drain_s": 1,
        "startup_timeout_s": 120, "retry_backoff_s": 1, "retry_backoff_max_s": 5,
        "registry_timeout_s": 20, "stop_grace_s": 5, "run_dir": str(run_dir),
        **model_server,
    }
    return load_config([f"model_server.{k}={v}" for k, v in values.items()],
                       config_name="serving")


@pytest.fixture
def supervisor_factory(tmp_path: Path) -> Iterator:
    """Build supervisors that are always stopped at the end of the test."""
    from serving.model_servers.supervisor import ModelServerSupervisor

    made: list[ModelServerSupervisor] = []

    def make(tracking_uri: str, base_port: int, **model_server: object) -> ModelServerSupervisor:
        settings = supervisor_settings(tmp_path / "model-servers", base_port, **model_server)
        supervisor = ModelServerSupervisor(settings, tracking_uri)
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        supervisor.stop()


# --- the whole stack, as `make stack` runs it ---------------------------------------------------
STACK_UP_TIMEOUT_S = 420
TRAINING_TIMEOUT_S = 900
SERVED_TIMEOUT_S = 240  # the watcher notices within seconds; a model server starts in ~10-30 s
# How often the waits below look again: each look is a file read or one cheap request, and every
# wait costs half an interval on average after the awaited thing happened (it was 1-3 s). Under
# uvicorn's 5 s keep-alive, a short interval also keeps the client's pooled connection from
# being closed by the server just as the next poll is sent on it.
POLL_S = 0.5
# Inherited settings that would point the stack at someone else's services or limits.
FOREIGN_ENV_PREFIXES = ("VAULT_", "MLFLOW_", "REDIS_", "STACK_", "MODEL_SERVER_", "RATE_LIMIT_",
                        "AUDIT_", "PREDICTION_STORE_")


@dataclass
class RunningStack:
    process: subprocess.Popen
    url: str
    api_key: str  # the admin key the stack seeds (API_KEY)
    state_dir: Path
    output: Path
    env: dict[str, str]  # what the stack was started with, for CLIs run against it
    replica_urls: tuple[str, ...] = ()  # each proxy replica, when the stack runs several

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key if key is not None else self.api_key}

    def text(self) -> str:
        """What the stack printed so far."""
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # what Ctrl-C does
            try:
                self.process.wait(timeout=180)
            except subprocess.TimeoutExpired:
                kill_group(self.process.pid)
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Extra environment for the module's stack (e.g. RATE_LIMIT_PER_KEY); override per module."""
    return {}


def launch_stack(root: Path, store_uri: str, stack_env: dict[str, str],
                 proxies: int = 1) -> RunningStack:
    """`python -m serving.devstack` on free ports and the store `store_uri`, its own Redis (with a
    password) and audit trail under `root`; returns once it says it is up (fails the test if not).
    `proxies` > 1: that many proxy replicas behind nginx. Stop it with `RunningStack.stop()`."""
    ports = {name: free_port() for name in ("mlflow", "proxy", "redis", "vault", "models")}
    replica_port = free_port_run(proxies) if proxies > 1 else None
    replica_args = ["--proxies", str(proxies), "--replica-port", str(replica_port)] \
        if replica_port is not None else []
    api_key = secrets.token_urlsafe(24)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV_PREFIXES)},
        "API_KEY": api_key,
        "REDIS_PASSWORD": secrets.token_urlsafe(16),  # its own redis-server, password required
        "TRAINING_QUEUE": f"e2e-{ports['proxy']}",
        "MODEL_SERVER_WATCH_INTERVAL_S": "1",
        "STACK_READY_TIMEOUT_S": "300",
        "AUDIT_LOG_PATH": str(root / "audit" / "audit.jsonl"),  # not the checkout's .audit/
        "PREDICTION_STORE_URL": f"sqlite:///{root / 'predictions.db'}",  # nor its predictions.db
        **stack_env,
    }
    output = root / f"stack-{ports['proxy']}.out"  # one per start: a store may see several
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.devstack",
             "--state-dir", str(root / "state"),
             "--backend-store-uri", store_uri,
             "--mlflow-port", str(ports["mlflow"]), "--proxy-port", str(ports["proxy"]),
             "--redis-port", str(ports["redis"]), "--vault-port", str(ports["vault"]),
             "--model-server-port", str(ports["models"]), *replica_args],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    replica_urls = tuple(f"http://{LOOPBACK}:{replica_port + i}" for i in range(proxies)) \
        if replica_port is not None else ()
    running = RunningStack(process, f"http://{LOOPBACK}:{ports['proxy']}", api_key,
                           root / "state", output, env, replica_urls)
    deadline = time.monotonic() + STACK_UP_TIMEOUT_S
    while "The stack is up" not in running.text():
        if process.poll() is not None or time.monotonic() > deadline:
            running.stop()
            pytest.fail(f"the stack did not come up:\n{running.text()[-6000:]}")
        time.sleep(POLL_S)
    return running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_env: dict[str, str]) -> Iterator[RunningStack]:
    """The stack on a throwaway store, for one test module; stopped with Ctrl-C's signal at the
    end of the module."""
    root = tmp_path_factory.mktemp("stack")
    running = launch_stack(root, f"sqlite:///{root / 'mlflow.db'}", stack_env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stack_client(stack: RunningStack) -> Iterator[httpx.Client]:
    """An HTTP client of the running stack's proxy (`client` is the in-process TestClient)."""
    with httpx.Client(base_url=stack.url, timeout=60, trust_env=False) as http:
        yield http


def operator_cli(stack: RunningStack, *arguments: str) -> str:
    """The operator's CLI (`valuation ...`) against the stack's Vault and Redis; its stdout."""
    import json

    state = json.loads((stack.state_dir / "stack.json").read_text())
    redis_port = state["endpoints"]["redis"].split()[0].rsplit(":", 1)[1]
    env = {**stack.env, "VAULT_ADDR": state["endpoints"]["vault"],
           "VAULT_APPROLE_FILE": state["approle_file"], "REDIS_PORT": redis_port}
    done = subprocess.run([str(Path(sys.executable).parent / "valuation"), *arguments], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def operator_key(stack: RunningStack, owner: str, role: str) -> str:
    """A key made with the operator's CLI (`valuation keys create`) against the stack's Vault;
    the proxy learns it within its key-table refresh."""
    return operator_cli(stack, "keys", "create", "--owner", owner, "--role", role).split()[-1]


def wait_for_job(client: httpx.Client, headers: dict[str, str], job_id: str) -> dict:
    """Poll /job_status until the job ends; its last status."""
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    while True:
        status = client.get(f"/job_status/{job_id}", headers=headers)
        assert status.status_code == 200, status.text
        job = status.json()
        if job["status"] in ("finished", "failed", "stopped", "canceled"):
            return job
        assert time.monotonic() < deadline, f"training still {job['status']}: {job}"
        time.sleep(POLL_S)


def wait_for_prediction(client: httpx.Client, headers: dict[str, str], body: dict) -> httpx.Response:
    """Post `body` to /predict until the champion is served (only 503 meanwhile, never a 500)."""
    deadline = time.monotonic() + SERVED_TIMEOUT_S
    while True:
        answer = client.post("/predict", json=body, headers=headers)
        if answer.status_code == 200:
            return answer
        assert answer.status_code == 503, answer.text  # "not served yet"
        assert time.monotonic() < deadline, f"champion not served: {answer.text}"
        time.sleep(POLL_S)


def champion_through_api(client: httpx.Client, stack: RunningStack, train_body: dict,
                         best_model_body: dict, predict_body: dict,
                         previous: str | None = None) -> str:
    """Train through POST /train, promote with POST /best_model, and wait until the proxy
    predicts with the promoted version; returns that version. `previous` is the champion served
    before, which may answer until the supervisor has switched."""
    answer = client.post("/train", json=train_body, headers=stack.headers())
    assert answer.status_code == 202, answer.text
    job = wait_for_job(client, stack.headers(), answer.json()["job_id"])
    assert job["status"] == "finished", job
    answer = client.post("/best_model", json=best_model_body, headers=stack.headers())
    assert answer.status_code == 200, answer.text
    version = answer.json()["version"]
    deadline = time.monotonic() + SERVED_TIMEOUT_S
    while (served := wait_for_prediction(client, stack.headers(), predict_body).json()
           )["model_version"] != version:
        assert served["model_version"] == previous, served
        assert time.monotonic() < deadline, f"version {version} not served: {served}"
        time.sleep(POLL_S)
    return version
