"""How each service of the dev stack is started and known to be ready, in start order."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

from omegaconf import DictConfig

from serving.devstack.part import LOG_TAIL_LINES, Part, StackError, say
from serving.devstack.plan import HOST
from serving.devstack.probes import bao_binary, http_ok, redis_ping, rq_worker_registered
from serving.redaction import redact_uri
from valuation.artifact_store import ArtifactStoreUnreachable, is_object_store, require_reachable
from valuation.config import PROJECT_ROOT

if TYPE_CHECKING:
    from serving.devstack.launcher import Stack


def use_external_tracking_server(stack: Stack) -> None:
    """MLFLOW_TRACKING_URI names a tracking server someone else runs: check it answers."""
    plan = stack.plan
    if not http_ok(f"{plan.tracking_uri.rstrip('/')}/health", stack.probe_timeout_s):
        raise StackError(
            f"MLFLOW_TRACKING_URI={redact_uri(plan.tracking_uri)} names a tracking server "
            "that does not answer /health; unset MLFLOW_TRACKING_URI to run one here on "
            "the store `make train` uses (a compose .env value does not work outside "
            "Docker)")
    say(f"mlflow: using the tracking server at {redact_uri(plan.tracking_uri)} "
        "(MLFLOW_TRACKING_URI)")
    stack.endpoints["mlflow"] = plan.tracking_uri


def tracking_server_env(settings: DictConfig) -> dict[str, str]:
    """What the tracking server is run with besides the stack's environment (stack.mlflow_env);
    compose and the chart are checked against it."""
    return {str(name): str(value) for name, value in (settings.stack.mlflow_env or {}).items()}


def start_mlflow(stack: Stack) -> None:
    plan = stack.plan
    assert plan.artifacts_destination is not None and plan.backend_store_uri is not None
    stack.require_free_port("MLflow tracking server", plan.mlflow_port, "MLFLOW_PORT",
                            "--mlflow-port")
    destination = plan.artifacts_destination
    prepare_artifacts_destination(destination, stack.settings.artifact_store)
    part = Part(
        name="mlflow",
        command=[
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", plan.backend_store_uri,
            # Experiments the server creates (MLflow's Default first of all, on a fresh store)
            # get a root that a client opening the database directly (`make train`) can write
            # too (plain files, or the bucket with the S3 env); without it they would get
            # `mlflow-artifacts:`, which only the server can write. --artifacts-destination keeps
            # serving experiments that already have such a root.
            "--default-artifact-root", destination,
            "--artifacts-destination", destination,
            "--serve-artifacts",
            "--host", HOST, "--port", str(plan.mlflow_port),
            "--workers", str(stack.settings.stack.mlflow_workers),
        ],
        env={**stack.base_env(), **tracking_server_env(stack.settings)},
        log_path=plan.logs / "mlflow.log",
        where=plan.tracking_uri,
    )
    say(f"mlflow: starting the tracking server on {redact_uri(plan.backend_store_uri)} "
        f"(artifacts {destination})")
    stack.launch(part)
    stack.wait(part, lambda: http_ok(f"{plan.tracking_uri}/health", stack.probe_timeout_s),
               "answers /health")
    stack.endpoints["mlflow"] = plan.tracking_uri


def start_redis(stack: Stack) -> None:
    port = stack.plan.redis_port
    password = stack.environ.get("REDIS_PASSWORD") or None
    answer = redis_ping(port, password, stack.probe_timeout_s)
    where = f"redis://{HOST}:{port}"
    if answer == "ok":
        say(f"redis: using the Redis already answering on {HOST}:{port}")
        stack.endpoints["redis"] = where + " (already running)"
        return
    if answer != "closed":
        raise StackError(
            f"something listens on {HOST}:{port} but does not answer as Redis with the given "
            f"REDIS_PASSWORD ({answer}); set REDIS_PORT/--redis-port to another port"
        )
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError(f"no Redis answers on {HOST}:{port} and redis-server is not "
                         "installed (apt-get install redis-server)")
    data_dir = stack.plan.state_dir / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    part = Part(name="redis", command=[binary, "-"], env=stack.base_env(),
                log_path=stack.plan.logs / "redis.log", where=where,
                stdin_text=redis_server_config(stack.settings, port, data_dir, password))
    say(f"redis: starting redis-server on {HOST}:{port}")
    stack.launch(part)
    stack.wait(part, lambda: redis_ping(port, password, stack.probe_timeout_s) == "ok", "answers PING")
    stack.endpoints["redis"] = where


def start_vault(stack: Stack) -> None:
    port = stack.plan.vault_port
    stack.require_free_port("OpenBao (Vault) dev server", port, "VAULT_PORT", "--vault-port")
    addr = f"http://{HOST}:{port}"
    root_token = stack.environ.get("VAULT_DEV_ROOT_TOKEN") or secrets.token_urlsafe(24)
    env = stack.base_env()
    env["BAO_DEV_ROOT_TOKEN_ID"] = root_token  # env, not argv: kept out of `ps`
    env["BAO_DEV_LISTEN_ADDRESS"] = f"{HOST}:{port}"
    part = Part(name="vault", command=[bao_binary(), "server", "-dev"], env=env,
                log_path=stack.plan.logs / "vault.log", where=addr)
    say(f"vault: starting an OpenBao dev server (in memory) on {addr}")
    stack.launch(part)
    stack.wait(part, lambda: http_ok(f"{addr}/v1/sys/health", stack.probe_timeout_s), "is unsealed")

    init_env = stack.base_env()
    init_env["VAULT_TOKEN"] = root_token  # only the one-shot bootstrap sees the root token
    out = stack.plan.approle_file
    log_path = stack.plan.logs / "vault-init.log"
    say("vault: bootstrapping (kv-v2, AppRole, policy" +
        (", API_KEY seeded)" if stack.environ.get("API_KEY") else "; API_KEY not set)"))
    with open(log_path, "ab") as log_file:
        done = subprocess.run(
            [sys.executable, "-m", "serving.vault_init", "--out", str(out), "--addr", addr],
            env=init_env, cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
            timeout=stack.ready_timeout_s, check=False,
        )
    if done.returncode != 0 or not out.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        raise StackError(f"serving.vault_init failed (code {done.returncode}); "
                         f"log {log_path}:\n{tail}")
    stack.endpoints["vault"] = addr


def start_worker(stack: Stack) -> None:
    queue = str(stack.settings.jobs.queue)
    part = Part(name="worker", command=[sys.executable, "-m", "serving.worker"],
                env=stack.base_env(), log_path=stack.plan.logs / "worker.log",
                where=f"queue {queue!r} on redis {HOST}:{stack.plan.redis_port}")
    say(f"worker: starting the RQ worker on queue {queue!r}")
    stack.launch(part)
    password = stack.environ.get("REDIS_PASSWORD") or None
    db = int(stack.settings.redis.db)
    stack.wait(part, lambda: rq_worker_registered(stack.plan.redis_port, password, db,
                                                   part.proc.pid if part.proc else -1,
                                                   stack.probe_timeout_s),
               "registered with Redis")
    stack.endpoints["worker"] = part.where


def start_proxy(stack: Stack) -> None:
    port = stack.plan.proxy_port
    stack.require_free_port("proxy", port, "PROXY_PORT", "--proxy-port")
    stack.endpoints["proxy"] = launch_proxy(stack, "proxy", port, {})


def launch_proxy(stack: Stack, name: str, port: int, env_overrides: dict[str, str]) -> str:
    """Start one proxy (uvicorn serving.app:app) on `port`, wait for /health; its URL."""
    url = f"http://{HOST}:{port}"
    env = stack.base_env()
    for env_name, value in (stack.settings.stack.proxy_env or {}).items():
        env.setdefault(str(env_name), str(value))
    env.update(env_overrides)
    part = Part(name=name,
                # --no-access-log: the proxy writes its own JSON line per request (with the
                # request id); uvicorn's plain-text copy cost ~5% of the proxy's CPU.
                command=[sys.executable, "-m", "uvicorn", "serving.app:app",
                         "--host", HOST, "--port", str(port), "--no-access-log"],
                env=env, log_path=stack.plan.logs / f"{name}.log", where=url)
    say(f"{name}: starting uvicorn serving.app:app on {url}")
    stack.launch(part)
    stack.wait(part, lambda: http_ok(f"{url}/health", stack.probe_timeout_s), "answers /health")
    return url

# ---- helpers ----------------------------------------------------------------------------


def prepare_artifacts_destination(destination: str, settings: DictConfig) -> None:
    """A directory is created; a bucket must answer now, before anything is started (its
    endpoint and credentials come from the environment, which every child inherits)."""
    if is_object_store(destination):
        try:
            require_reachable(destination, settings)
        except ArtifactStoreUnreachable as error:
            raise StackError(str(error)) from None
    else:
        Path(url2pathname(urlparse(destination).path)).mkdir(parents=True, exist_ok=True)


def redis_server_config(settings: DictConfig, port: int, data_dir: Path,
                        password: str | None = None) -> str:
    """The configuration of the stack's redis-server, fed on stdin (`redis-server -`) so that the
    password never appears in `ps`. The queue is kept in an append-only file under data_dir
    (fsync policy `stack.redis_appendfsync`): a Redis that is killed and started again with the
    same configuration still has every job that was queued."""
    config = [f"port {port}", f"bind {HOST}", 'save ""', "appendonly yes",
              f"appendfsync {settings.stack.redis_appendfsync}", f"dir {data_dir}",
              "daemonize no"]
    if password:
        config.append(f"requirepass {password}")
    return "\n".join(config) + "\n"
