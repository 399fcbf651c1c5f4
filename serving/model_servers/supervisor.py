"""Blue/green supervision of `mlflow models serve` processes for the registered model's aliases.

`mlflow models serve` loads one model when it starts and never reloads it. So the supervisor
watches the champion alias and, when it moves, starts a second server for the new version,
waits until it answers `/ping` AND a real prediction on the model's own input example works,
switches `current()` to it in one assignment, and only then drains and stops the old server.
A version that cannot start is never switched to; a server that dies is restarted with backoff,
and until it answers again `current()` is None so the proxy says 503 instead of hanging.

All mutation happens in one loop thread; readers (`current`, `served`, `status`, `use`) take a
lock only to copy references, so a request never waits on a model server starting.

Each supervised server is in one `ServerPhase`; "gone" means removed from the supervisor and its
process group stopped. A failure is recorded per version and retried after a backoff that doubles
per failure in a row (`retry_backoff_s` up to `retry_backoff_max_s`); an alias move retries at once.

| phase    | event                                                      | next phase           |
|----------|------------------------------------------------------------|----------------------|
| (none)   | an alias names a version with no server, no retry pending  | STARTING             |
| STARTING | answers /ping and the smoke prediction returns prices      | READY                |
| STARTING | the smoke prediction fails, no /ping within                | gone, failure noted  |
|          | startup_timeout_s, or it exits                             |                      |
| STARTING | its alias moves to another version first                   | gone                 |
| READY    | an alias that wants its version is bound to it (switch)    | READY                |
| READY    | no alias wants its version any more                        | DRAINING             |
| READY    | exits, or unhealthy_after /ping checks fail in a row       | gone, failure noted; |
|          |                                                            | its aliases -> 503   |
| DRAINING | drain_s passed and nothing in flight, or drain_s +         | gone                 |
|          | request_timeout_s passed                                   |                      |
| DRAINING | exits                                                      | gone, no restart     |
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from omegaconf import DictConfig

from serving.logging import get_logger
from serving.model_servers.process import ModelServerProcess, smoke_predict
from serving.model_servers.registry import VersionInfo, read_version_info, resolve_alias
from serving.model_servers.served import ModelLoadError, ServedModel
from serving.model_servers.timeouts import call_with_timeout, describe_error
from serving.ports import port_is_free
from serving.redaction import redact_uri
from valuation.config import resolve_path

log = get_logger("serving.model_servers")


class ServerPhase(StrEnum):
    """Where one supervised model server is in its life (see the table above)."""

    STARTING = "starting"  # launched; not yet answering /ping and the smoke prediction
    READY = "ready"  # answers; may be bound to aliases
    DRAINING = "draining"  # no alias wants it; finishing in-flight requests before it stops


@dataclass(eq=False)
class _Server:
    process: ModelServerProcess
    info: VersionInfo
    served: ServedModel
    phase: ServerPhase = ServerPhase.STARTING
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
    `model_server.extra_aliases`, plus the aliases asked for at run time with `watch`, e.g. the
    challenger while shadow or canary traffic is on) serving the version the alias points to."""

    def __init__(self, settings: DictConfig, tracking_uri: str, run_dir: Path | None = None):
        cfg = settings.model_server
        self.model_name: str = settings.registry.model_name
        self.champion_alias: str = settings.registry.champion_alias
        self.aliases: tuple[str, ...] = tuple(
            dict.fromkeys([self.champion_alias, *(cfg.get("extra_aliases") or [])])
        )
        self._configured_aliases = self.aliases  # never unwatched
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
        self.ping_timeout_s = float(cfg.ping_timeout_s)
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
        # Aliases asked for (True) or given up (False) by `watch`/`unwatch`, applied by the loop
        # thread at its next tick: only that thread changes the set of watched aliases.
        self._watch_requests: dict[str, bool] = {}

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
                 aliases=list(self.aliases), tracking_uri=redact_uri(self.tracking_uri),
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

    def watch(self, alias: str) -> None:
        """Also serve `alias` from the next tick on (its version is read from the registry at
        once). Returns at once; `served(alias=...)` answers once its server is ready."""
        with self._lock:
            self._watch_requests[alias] = True

    def unwatch(self, alias: str) -> None:
        """Stop serving an alias given by `watch`: its server drains unless another alias wants
        its version. Aliases of the config (the champion, extra_aliases) stay watched."""
        with self._lock:
            self._watch_requests[alias] = False

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
                {"version": s.version, "phase": s.phase.value, "url": s.process.base_url,
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
            if server.version == version and server.phase in (ServerPhase.READY, ServerPhase.DRAINING):
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
        starting = [s for s in self._servers if s.version == version and s.phase is ServerPhase.STARTING]
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
                    log.error("model_server.tick_failed", error=describe_error(exc))
                self._stop_event.wait(self.poll_interval_s)
        finally:
            self._http.close()

    def _tick(self) -> None:
        self._apply_watch_requests()
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

    def _apply_watch_requests(self) -> None:
        with self._lock:
            requests, self._watch_requests = self._watch_requests, {}
            for alias, wanted in requests.items():
                if wanted and alias not in self._alias:
                    self._alias[alias] = _AliasState()
                    self._next_watch = 0.0  # read its version now, not at the next watch
                elif not wanted and alias in self._alias and alias not in self._configured_aliases:
                    del self._alias[alias]  # its server is no longer bound: _drain stops it
                else:
                    continue
                log.info("model_server.watching" if wanted else "model_server.unwatching",
                         alias=alias)
            self.aliases = tuple(self._alias)

    def _refresh_aliases(self) -> None:
        for alias, state in self._alias.items():
            try:
                version = call_with_timeout(
                    lambda a=alias: resolve_alias(self._client(), self.model_name, a),
                    self.registry_timeout_s, "registry", self._pending_calls,
                )
            except Exception as exc:
                message = f"cannot read alias {alias!r} from {redact_uri(self.tracking_uri)}: " \
                          f"{describe_error(exc)}"
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
            if server.phase is not ServerPhase.READY:
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
        if server.phase is ServerPhase.DRAINING:
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
            if server.phase is not ServerPhase.STARTING:
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
                    server.phase = ServerPhase.READY
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
            ready = self._server_for(version, ServerPhase.READY)
            if ready is not None:
                with self._lock:
                    previous, state.bound = state.bound, ready  # the switch: one assignment
                    state.problem = None
                log.info("model_server.switched", alias=alias, version=version,
                         url=ready.process.base_url,
                         from_version=previous.version if previous else None)
                continue
            if self._server_for(version, ServerPhase.STARTING) is not None:
                continue
            failure = self._failures.get(version)
            if failure is not None and time.monotonic() < failure.retry_at:
                continue
            self._launch(version)

    def _server_for(self, version: str, phase: ServerPhase) -> _Server | None:
        return next((s for s in self._servers if s.version == version and s.phase is phase),
                    None)

    def _launch(self, version: str) -> None:
        try:
            info = call_with_timeout(
                lambda: read_version_info(self.model_name, version, self.tracking_uri),
                self.registry_timeout_s, "model metadata", self._pending_calls,
            )
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ModelLoadError) else describe_error(exc)
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
            request_timeout_s=self.request_timeout_s, ping_timeout_s=self.ping_timeout_s,
            access_log=self.access_log,
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
            if id(server) in bound or server.phase is ServerPhase.STARTING:
                continue
            if server.phase is ServerPhase.READY:
                if self._is_desired(server.version):
                    continue  # the alias still wants it: _reconcile binds it
                with self._lock:
                    server.phase = ServerPhase.DRAINING
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
