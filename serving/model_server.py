"""Blue/green supervision of `mlflow models serve` processes for the registered model's aliases.

`mlflow models serve` loads one model when it starts and never reloads it. So the supervisor
watches the champion alias and, when it moves, starts a second server for the new version,
waits until it answers `/ping` AND a real prediction on the model's own input example works,
switches `current()` to it in one assignment, and only then drains and stops the old server.
A version that cannot start is never switched to; a server that dies is restarted with backoff,
and until it answers again `current()` is None so the proxy says 503 instead of hanging.

All mutation happens in one loop thread; readers (`current`, `served`, `status`, `use`) take a
lock only to copy references, so a request never waits on a model server starting.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from omegaconf import DictConfig

from serving.logging import get_logger
from valuation.config import resolve_path
from valuation.model_runtime.validation import ValidationRules

log = get_logger("serving.model_server")

T = TypeVar("T")

PID_FILE_GLOB = "model-server-*.pid"


@dataclass(frozen=True)
class ServedModel:
    """A model version that answers predictions at `base_url` (`POST {base_url}/invocations`)."""

    name: str
    version: str
    base_url: str
    rules: ValidationRules
    metadata: dict[str, Any]


class ModelLoadError(RuntimeError):
    """A model version cannot be served (metadata, startup or smoke prediction failed)."""


# --------------------------------------------------------------------------------------------
# One model server process
# --------------------------------------------------------------------------------------------


def _set_parent_death_signal() -> None:
    # Runs in the forked child before exec: if the supervisor's thread dies (even by SIGKILL),
    # the kernel sends SIGTERM to `mlflow models serve`, which in turn takes its uvicorn child
    # down (MLflow sets the same signal on it). This is how a killed proxy leaves no orphans.
    _LIBC.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class ModelServerProcess:
    """One `mlflow models serve` child for one model version on one port, in its own process
    group (stopping it stops uvicorn and its workers too)."""

    def __init__(
        self,
        model_name: str,
        version: str,
        *,
        host: str,
        port: int,
        workers: int,
        tracking_uri: str,
        run_dir: Path,
        request_timeout_s: float,
        access_log: bool = False,
    ):
        self.model_name = model_name
        self.version = version
        self.host = host
        self.port = port
        self.workers = workers
        self.tracking_uri = tracking_uri
        self.run_dir = run_dir
        self.request_timeout_s = request_timeout_s
        self.access_log = access_log
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.log_path = run_dir / f"{model_name}-v{version}-p{port}-{stamp}.log"
        self.pid_path = run_dir / f"model-server-{port}.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "models", "serve",
            "--env-manager", "local",
            "-m", f"models:/{self.model_name}/{self.version}",
            "-h", self.host,
            "-p", str(self.port),
            "-w", str(self.workers),
            "-t", str(max(1, math.ceil(self.request_timeout_s))),
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MLFLOW_TRACKING_URI"] = self.tracking_uri
        # MLflow execs a bare `uvicorn`: make sure it is this interpreter's, not whatever is
        # first on PATH (or nothing, when the proxy was started without activating the venv).
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        # uvicorn reads UVICORN_* options from the environment; the proxy already logs every
        # request with its id, so the model server's own access log is off unless asked for.
        env["UVICORN_ACCESS_LOG"] = "true" if self.access_log else "false"
        return env

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            header = f"# {datetime.now(UTC).isoformat()} {' '.join(self.command())}\n"
            log_file.write(header.encode())
            log_file.flush()
            self._proc = subprocess.Popen(
                self.command(),
                env=self.environment(),
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if _LIBC else None,
            )
        self.pid_path.write_text(str(self._proc.pid))

    def exit_code(self) -> int | None:
        """None while running; the exit code once it has exited."""
        return self._proc.poll() if self._proc else None

    def ping(self, client: httpx.Client) -> bool:
        try:
            return client.get(f"{self.base_url}/ping", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, grace_s: float) -> None:
        """SIGTERM the whole process group, SIGKILL it after `grace_s`; idempotent."""
        proc = self._proc
        if proc is not None:
            terminate_process_group(proc, grace_s)
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    def failure_hint(self) -> str:
        """The line of the server's log that says why it failed (the last exception raised by
        the model loading code, not MLflow's "command returned non zero" wrapper)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        for line in reversed(lines):
            text = line.strip()
            if _EXCEPTION_LINE.match(text) and not text.startswith("Exception: Command '"):
                return text[:400]
        useful = [line.strip() for line in lines if line.strip() and '" 200' not in line]
        return " | ".join(useful[-3:])[:400] or "empty log"


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*")


def terminate_process_group(proc: subprocess.Popen, grace_s: float) -> int | None:
    """Stop a child started with `start_new_session=True` and everything it spawned."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # The leader may be gone while grandchildren (uvicorn workers) linger: kill the group anyway.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    return proc.returncode


def kill_leftover_model_servers(run_dir: Path) -> list[int]:
    """Kill model servers whose pid files remain in `run_dir` (their supervisor died hard).

    A pid is only killed when /proc says it still runs `mlflow models serve`, so a recycled pid
    of an unrelated process is left alone."""
    killed = []
    for pid_file in sorted(run_dir.glob(PID_FILE_GLOB)):
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            pid_file.unlink(missing_ok=True)
            continue
        if b"mlflow" in cmdline and b"models serve" in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
        pid_file.unlink(missing_ok=True)
    return killed


# --------------------------------------------------------------------------------------------
# What the registry says about a version
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionInfo:
    metadata: dict[str, Any]
    rules: ValidationRules
    smoke_payload: dict[str, Any]  # a body for POST /invocations that must yield a prediction


def read_version_info(name: str, version: str, tracking_uri: str) -> VersionInfo:
    """Metadata, validation rules and an example request of `models:/name/version`."""
    from mlflow import MlflowClient
    from mlflow.models import Model

    uri = f"models:/{name}/{version}"
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="model-info-") as tmp:
        try:
            location = version_artifact_location(client, name, version)
            model = Model.load(_download(f"{location}/MLmodel", tmp, tracking_uri))
        except Exception as exc:  # MLflow raises many types here; all mean "cannot read it"
            raise ModelLoadError(f"cannot read {uri}/MLmodel: {_one_line(exc)}") from exc
        metadata = dict(model.metadata or {})
        if "validation_rules" not in metadata:
            raise ModelLoadError(
                f"{uri} has no 'validation_rules' in its metadata; it was not logged by this "
                "project's pipeline and its inputs could not be checked"
            )
        try:
            rules = ValidationRules.from_dict(metadata["validation_rules"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{uri} has malformed validation_rules: {exc!r}") from exc
        payload = _logged_serving_example(model, location, uri, tracking_uri, tmp)
    return VersionInfo(metadata=metadata, rules=rules,
                       smoke_payload=payload or example_payload(rules))


def version_artifact_location(client: Any, name: str, version: str) -> str:
    """Where the files of a registered version live.

    Resolved with our own client because MLflow resolves `models:/name/version` artifact URIs
    against the process-global registry URI, whatever tracking URI is passed in."""
    location = str(client.get_model_version_download_uri(name, str(version))).rstrip("/")
    if location.startswith("models:/"):  # a logged model id (MLflow 3): its artifact location
        location = str(client.get_logged_model(location.removeprefix("models:/")).
                       artifact_location).rstrip("/")
    return location


def _download(artifact_uri: str, tmp: str, tracking_uri: str) -> str:
    from mlflow.artifacts import download_artifacts

    return download_artifacts(artifact_uri=artifact_uri, dst_path=tmp, tracking_uri=tracking_uri)


def _logged_serving_example(
    model: Any, location: str, uri: str, tracking_uri: str, tmp: str
) -> dict | None:
    example_info = model.saved_input_example_info or {}
    serving_path = example_info.get("serving_input_path")
    if not serving_path:
        return None
    try:
        return json.loads(Path(_download(f"{location}/{serving_path}", tmp, tracking_uri))
                          .read_text())
    except Exception as exc:  # the example is declared but unreadable: the artifacts are broken
        raise ModelLoadError(f"cannot read {uri}/{serving_path}: {_one_line(exc)}") from exc


def example_payload(rules: ValidationRules) -> dict[str, Any]:
    """One valid row built from the rules, for models logged without an input example."""
    def middle(bounds: tuple[float, float]) -> float:
        return (bounds[0] + bounds[1]) / 2

    area = min(max(100.0, rules.min_area), rules.max_area)
    row = {
        "type": rules.types[0],
        "sector": rules.sectors[0],
        "net_usable_area": area,
        "net_area": area,
        "n_rooms": min(3.0, rules.max_rooms),
        "n_bathroom": min(2.0, rules.max_bathrooms),
        "latitude": middle(rules.latitude),
        "longitude": middle(rules.longitude),
    }
    return {"inputs": [row]}


def smoke_predict(client: httpx.Client, base_url: str, payload: dict, timeout_s: float) -> None:
    """A real prediction through the server; raises ModelLoadError unless it returns numbers."""
    try:
        response = client.post(f"{base_url}/invocations", json=payload, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ModelLoadError(f"example prediction failed: {_one_line(exc)}") from exc
    if response.status_code != 200:
        raise ModelLoadError(
            f"example prediction answered HTTP {response.status_code}: {response.text[:300]}"
        )
    try:
        predictions = response.json()["predictions"]
        ok = len(predictions) > 0 and all(
            isinstance(p, int | float) and math.isfinite(p) for p in predictions
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ModelLoadError(f"example prediction returned no prices: {response.text[:300]}")


def resolve_alias(client: Any, name: str, alias: str) -> str | None:
    """The version `alias` points to; None when the model or alias does not exist.

    Unlike `valuation.registry.alias_version`, a registry that cannot be reached raises, so an
    outage is not mistaken for "there is no champion" (which would stop serving)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        # An unknown model is RESOURCE_DOES_NOT_EXIST; an unknown alias INVALID_PARAMETER_VALUE
        # "... alias X not found". Connection failures are INTERNAL_ERROR and must raise.
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        if exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower():
            return None
        raise


def call_with_timeout(
    fn: Callable[[], T], timeout_s: float, what: str, pending: dict[str, threading.Thread]
) -> T:
    """Run `fn` in a helper thread; raise TimeoutError after `timeout_s`.

    MLflow's HTTP retries cannot be interrupted, only stopped waiting for: the abandoned thread
    finishes on its own, and until it has, further calls of the same kind fail at once instead
    of piling up threads behind an unreachable server."""
    earlier = pending.get(what)
    if earlier is not None and earlier.is_alive():
        raise TimeoutError(f"{what}: an earlier call has not returned yet")
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"model-server-{what}", daemon=True)
    pending[what] = thread
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not answer within {timeout_s:g}s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}"


# --------------------------------------------------------------------------------------------
# The supervisor
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Server:
    process: ModelServerProcess
    info: VersionInfo
    served: ServedModel
    phase: str = "starting"  # starting -> ready -> draining; removed when stopped or dead
    started_at: float = field(default_factory=time.monotonic)
    leases: int = 0
    drain_since: float | None = None
    failed_pings: int = 0

    @property
    def version(self) -> str:
        return self.served.version


@dataclass
class _Failure:
    count: int
    reason: str
    retry_at: float


@dataclass
class _AliasState:
    desired: str | None = None  # the version the alias points to in the registry
    resolved: bool = False  # the registry has answered at least once
    bound: _Server | None = None  # the server that answers for the alias
    problem: str | None = None  # why the alias is not (or not fully) served
    registry_error: str | None = None


class ModelServerSupervisor:
    """Keeps one `mlflow models serve` process per watched alias (the champion, plus
    `model_server.extra_aliases`) serving the version the alias points to."""

    def __init__(self, settings: DictConfig, tracking_uri: str, run_dir: Path | None = None):
        cfg = settings.model_server
        self.model_name: str = settings.registry.model_name
        self.champion_alias: str = settings.registry.champion_alias
        self.aliases: tuple[str, ...] = tuple(
            dict.fromkeys([self.champion_alias, *(cfg.get("extra_aliases") or [])])
        )
        self.tracking_uri = tracking_uri
        self.host: str = cfg.host
        self.base_port = int(cfg.base_port)
        self.port_span = int(cfg.port_span)
        self.workers = int(cfg.workers)
        self.startup_timeout_s = float(cfg.startup_timeout_s)
        self.watch_interval_s = float(cfg.watch_interval_s)
        self.poll_interval_s = float(cfg.poll_interval_s)
        self.drain_s = float(cfg.drain_s)
        self.request_timeout_s = float(cfg.request_timeout_s)
        self.registry_timeout_s = float(cfg.registry_timeout_s)
        self.stop_grace_s = float(cfg.stop_grace_s)
        self.retry_backoff_s = float(cfg.retry_backoff_s)
        self.retry_backoff_max_s = float(cfg.retry_backoff_max_s)
        self.unhealthy_after = int(cfg.unhealthy_after)
        self.access_log = bool(cfg.access_log)
        self.run_dir = (run_dir or resolve_path(cfg.run_dir)).resolve()

        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._servers: list[_Server] = []
        self._alias: dict[str, _AliasState] = {a: _AliasState() for a in self.aliases}
        self._failures: dict[str, _Failure] = {}
        self._registry_client: Any = None
        self._http: httpx.Client | None = None
        self._next_watch = 0.0
        self._pending_calls: dict[str, threading.Thread] = {}

    # ---- public API (any thread) -----------------------------------------------------------

    def start(self) -> None:
        """Start supervising in a background thread; returns at once."""
        if self._thread is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._stop_event.clear()
        # The loop thread spawns the model servers and must outlive them (see
        # _set_parent_death_signal), so it is the only thread that starts processes.
        self._thread = threading.Thread(target=self._run, name="model-server-supervisor",
                                        daemon=True)
        self._thread.start()
        log.info("model_server.supervisor_started", model=self.model_name,
                 aliases=list(self.aliases), tracking_uri=_safe_uri(self.tracking_uri),
                 run_dir=str(self.run_dir))

    def stop(self) -> None:
        """Stop watching and terminate every model server (process groups included)."""
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.registry_timeout_s + self.request_timeout_s + self.stop_grace_s)
        self._thread = None
        with self._lock:
            servers, self._servers = self._servers, []
            for state in self._alias.values():
                state.bound = None
        for server in servers:
            server.process.stop(self.stop_grace_s)
        if servers:
            log.info("model_server.supervisor_stopped",
                     stopped=[s.process.base_url for s in servers])

    def current(self) -> ServedModel | None:
        """The champion being served, or None (no champion, starting, or its server is down)."""
        return self.served()

    def served(self, version: str | None = None, alias: str | None = None) -> ServedModel | None:
        """The champion by default; the server of `alias`, or a specific loaded `version`."""
        server = self._find(version, alias)
        return server.served if server else None

    @contextlib.contextmanager
    def use(self, version: str | None = None, alias: str | None = None
            ) -> Iterator[ServedModel | None]:
        """Like `served()`, and the server is not stopped (up to drain_s + request_timeout_s
        after a switch) while the block runs: wrap each forwarded request in it."""
        with self._lock:
            server = self._find_locked(version, alias)
            if server is not None:
                server.leases += 1
        try:
            yield server.served if server else None
        finally:
            if server is not None:
                with self._lock:
                    server.leases -= 1

    def status(self) -> dict[str, Any]:
        """{"state": serving|starting|no_champion|down, "version", "detail", ...} for the
        champion, plus every alias and server for operators."""
        with self._lock:
            aliases = {name: self._alias_status(name) for name in self.aliases}
            servers = [
                {"version": s.version, "phase": s.phase, "url": s.process.base_url,
                 "pid": s.process.pid, "log": str(s.process.log_path), "in_flight": s.leases}
                for s in self._servers
            ]
        champion = aliases[self.champion_alias]
        return {**champion, "model_name": self.model_name, "alias": self.champion_alias,
                "aliases": aliases, "servers": servers}

    # ---- lookups ---------------------------------------------------------------------------

    def _find(self, version: str | None, alias: str | None) -> _Server | None:
        with self._lock:
            return self._find_locked(version, alias)

    def _find_locked(self, version: str | None, alias: str | None) -> _Server | None:
        if version is None:
            state = self._alias.get(alias or self.champion_alias)
            return state.bound if state else None
        version = str(version)
        if alias is not None:
            state = self._alias.get(alias)
            bound = state.bound if state else None
            return bound if bound is not None and bound.version == version else None
        for server in self._servers:
            if server.version == version and server.phase in ("ready", "draining"):
                return server
        return None

    def _alias_status(self, alias: str) -> dict[str, Any]:
        state = self._alias[alias]
        bound = state.bound
        if bound is not None:
            detail = f"version {bound.version} at {bound.process.base_url}"
            if state.desired != bound.version and state.desired is not None:
                pending = self._pending_detail(state.desired)
                detail += f"; {alias} moved to version {state.desired}: {pending}"
            if state.registry_error:
                detail += f"; registry: {state.registry_error}"
            return {"state": "serving", "version": bound.version, "base_url":
                    bound.process.base_url, "detail": detail}
        if not state.resolved:
            detail = state.registry_error or "reading the registry"
            state_name = "down" if state.registry_error else "starting"
            return {"state": state_name, "version": None, "base_url": None, "detail": detail}
        if state.desired is None:
            return {"state": "no_champion", "version": None, "base_url": None,
                    "detail": f"registered model {self.model_name!r} has no {alias!r} alias"}
        pending = self._pending_detail(state.desired)
        if state.problem:
            return {"state": "down", "version": state.desired, "base_url": None,
                    "detail": f"{state.problem}; {pending}"}
        return {"state": "starting", "version": state.desired, "base_url": None,
                "detail": pending}

    def _pending_detail(self, version: str) -> str:
        starting = [s for s in self._servers if s.version == version and s.phase == "starting"]
        if starting:
            return f"starting version {version} at {starting[0].process.base_url}"
        failure = self._failures.get(version)
        if failure:
            wait = max(0.0, failure.retry_at - time.monotonic())
            return (f"version {version} failed ({failure.reason}); "
                    f"retry #{failure.count + 1} in {wait:.0f}s")
        return f"version {version} will be started"

    # ---- the loop (supervisor thread only) -------------------------------------------------

    def _run(self) -> None:
        self._http = httpx.Client()
        try:
            while not self._stop_event.is_set():
                try:
                    self._tick()
                except Exception as exc:  # one bad tick must not end supervision
                    log.error("model_server.tick_failed", error=_one_line(exc))
                self._stop_event.wait(self.poll_interval_s)
        finally:
            self._http.close()

    def _tick(self) -> None:
        now = time.monotonic()
        watch = now >= self._next_watch
        if watch:
            self._next_watch = now + self.watch_interval_s
            self._refresh_aliases()
        self._reap_exited()
        if watch:
            self._check_health()
        self._advance_starting()
        self._reconcile()
        self._drain()

    def _refresh_aliases(self) -> None:
        for alias, state in self._alias.items():
            try:
                version = call_with_timeout(
                    lambda a=alias: resolve_alias(self._client(), self.model_name, a),
                    self.registry_timeout_s, "registry", self._pending_calls,
                )
            except Exception as exc:
                message = f"cannot read alias {alias!r} from {_safe_uri(self.tracking_uri)}: " \
                          f"{_one_line(exc)}"
                if state.registry_error != message:
                    log.warning("model_server.registry_unavailable", alias=alias, error=message)
                with self._lock:
                    state.registry_error = message
                continue
            with self._lock:
                state.registry_error = None
                state.resolved = True
                if version != state.desired:
                    log.info("model_server.alias_moved", alias=alias, from_version=state.desired,
                             to_version=version)
                    state.desired = version
                    state.problem = None
                    if version is not None:
                        self._failures.pop(version, None)  # a move retries a failed version now

    def _client(self) -> Any:
        if self._registry_client is None:
            from mlflow import MlflowClient

            self._registry_client = MlflowClient(tracking_uri=self.tracking_uri,
                                                 registry_uri=self.tracking_uri)
        return self._registry_client

    def _reap_exited(self) -> None:
        for server in list(self._servers):
            code = server.process.exit_code()
            if code is not None:
                self._lose(server, f"model server for version {server.version} exited with "
                                   f"code {code}: {server.process.failure_hint()}")

    def _check_health(self) -> None:
        assert self._http is not None
        for server in list(self._servers):
            if server.phase != "ready":
                continue
            if server.process.ping(self._http):
                server.failed_pings = 0
                continue
            server.failed_pings += 1
            if server.failed_pings >= self.unhealthy_after:
                self._lose(server, f"model server for version {server.version} stopped "
                                   f"answering /ping ({server.failed_pings} checks)")

    def _lose(self, server: _Server, reason: str) -> None:
        """A server died or hung: unbind it (callers now get None -> 503) and schedule a restart."""
        with self._lock:
            if server in self._servers:
                self._servers.remove(server)
            orphaned_aliases = [a for a, s in self._alias.items() if s.bound is server]
            for alias in orphaned_aliases:
                self._alias[alias].bound = None
                self._alias[alias].problem = reason
        server.process.stop(self.stop_grace_s)
        if server.phase == "draining":
            return
        log.error("model_server.lost", version=server.version, reason=reason,
                  aliases=orphaned_aliases, log=str(server.process.log_path))
        self._record_failure(server.version, reason)

    def _record_failure(self, version: str, reason: str) -> None:
        with self._lock:
            previous = self._failures.get(version)
            count = previous.count + 1 if previous else 1
            delay = min(self.retry_backoff_max_s, self.retry_backoff_s * 2 ** (count - 1))
            self._failures[version] = _Failure(count, reason, time.monotonic() + delay)

    def _advance_starting(self) -> None:
        assert self._http is not None
        for server in list(self._servers):
            if server.phase != "starting":
                continue
            if not self._is_desired(server.version):
                self._discard(server, "its alias moved on before it was ready")
                continue
            if server.process.ping(self._http):
                try:
                    smoke_predict(self._http, server.process.base_url,
                                  server.info.smoke_payload, self.request_timeout_s)
                except ModelLoadError as exc:
                    self._fail_start(server, str(exc))
                    continue
                with self._lock:
                    server.phase = "ready"
                    self._failures.pop(server.version, None)
                log.info("model_server.ready", version=server.version,
                         url=server.process.base_url,
                         seconds=round(time.monotonic() - server.started_at, 1))
            elif time.monotonic() - server.started_at > self.startup_timeout_s:
                self._fail_start(server, f"did not answer /ping within "
                                         f"{self.startup_timeout_s:g}s")

    def _fail_start(self, server: _Server, reason: str) -> None:
        detail = f"{reason}; log: {server.process.log_path}"
        log.error("model_server.start_failed", version=server.version, reason=reason,
                  log=str(server.process.log_path))
        with self._lock:
            self._servers.remove(server)
        server.process.stop(self.stop_grace_s)
        self._record_failure(server.version, detail)

    def _discard(self, server: _Server, why: str) -> None:
        log.info("model_server.discarded", version=server.version, reason=why)
        with self._lock:
            self._servers.remove(server)
        server.process.stop(self.stop_grace_s)

    def _is_desired(self, version: str) -> bool:
        return any(state.desired == version for state in self._alias.values())

    def _reconcile(self) -> None:
        for alias, state in self._alias.items():
            version = state.desired
            if version is None:
                if state.resolved and state.bound is not None:
                    log.warning("model_server.alias_removed", alias=alias,
                                version=state.bound.version)
                    with self._lock:
                        state.bound = None
                continue
            if state.bound is not None and state.bound.version == version:
                continue
            ready = self._server_for(version, "ready")
            if ready is not None:
                with self._lock:
                    previous, state.bound = state.bound, ready  # the switch: one assignment
                    state.problem = None
                log.info("model_server.switched", alias=alias, version=version,
                         url=ready.process.base_url,
                         from_version=previous.version if previous else None)
                continue
            if self._server_for(version, "starting") is not None:
                continue
            failure = self._failures.get(version)
            if failure is not None and time.monotonic() < failure.retry_at:
                continue
            self._launch(version)

    def _server_for(self, version: str, phase: str) -> _Server | None:
        return next((s for s in self._servers if s.version == version and s.phase == phase),
                    None)

    def _launch(self, version: str) -> None:
        try:
            info = call_with_timeout(
                lambda: read_version_info(self.model_name, version, self.tracking_uri),
                self.registry_timeout_s, "model metadata", self._pending_calls,
            )
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ModelLoadError) else _one_line(exc)
            log.error("model_server.version_unusable", version=version, reason=reason)
            self._record_failure(version, reason)
            return
        port = self._free_port()
        if port is None:
            self._record_failure(version, f"no free port in {self.base_port}.."
                                          f"{self.base_port + self.port_span - 1}")
            return
        process = ModelServerProcess(
            self.model_name, version, host=self.host, port=port, workers=self.workers,
            tracking_uri=self.tracking_uri, run_dir=self.run_dir,
            request_timeout_s=self.request_timeout_s, access_log=self.access_log,
        )
        served = ServedModel(self.model_name, version, process.base_url, info.rules,
                             info.metadata)
        server = _Server(process=process, info=info, served=served)
        try:
            process.start()
        except OSError as exc:
            self._record_failure(version, f"cannot start mlflow models serve: {exc}")
            return
        with self._lock:
            self._servers.append(server)
        log.info("model_server.starting", version=version, url=process.base_url,
                 pid=process.pid, log=str(process.log_path))

    def _free_port(self) -> int | None:
        taken = {s.process.port for s in self._servers}
        for port in itertools.islice(itertools.count(self.base_port), self.port_span):
            if port not in taken and port_is_free(self.host, port):
                return port
        return None

    def _drain(self) -> None:
        now = time.monotonic()
        with self._lock:
            bound = {id(s.bound) for s in self._alias.values() if s.bound is not None}
        for server in list(self._servers):
            if id(server) in bound or server.phase == "starting":
                continue
            if server.phase == "ready":
                if self._is_desired(server.version):
                    continue  # the alias still wants it: _reconcile binds it
                with self._lock:
                    server.phase = "draining"
                    server.drain_since = now
                log.info("model_server.draining", version=server.version,
                         url=server.process.base_url, drain_s=self.drain_s)
                continue
            assert server.drain_since is not None
            waited = now - server.drain_since
            if (waited >= self.drain_s and server.leases == 0) or \
                    waited >= self.drain_s + self.request_timeout_s:
                with self._lock:
                    self._servers.remove(server)
                server.process.stop(self.stop_grace_s)
                log.info("model_server.stopped", version=server.version,
                         url=server.process.base_url, in_flight=server.leases)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _safe_uri(uri: str) -> str:
    """A tracking URI without credentials, for logs."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri

