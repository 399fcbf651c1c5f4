"""The dev stack's run: start the services in order, watch them, stop them in reverse order."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from serving.devstack import replicas, services
from serving.devstack.part import Part, StackError, say
from serving.devstack.plan import HOST, StackPlan
from serving.model_servers.process import kill_leftover_model_servers
from serving.ports import port_is_free

# Env the proxy and worker must not inherit from whoever ran `make stack`: root tokens, and
# credentials of some other Vault that would win over the AppRole file written here.
STRIPPED_ENV = ("VAULT_TOKEN", "VAULT_DEV_ROOT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID",
                "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


class Interrupted(Exception):
    """Ctrl-C/SIGTERM arrived while a part was starting."""


class Stack:
    """The running dev stack: its parts in start order, where they answer, and the stop flag."""

    def __init__(self, settings: DictConfig, plan: StackPlan, environ: Mapping[str, str]):
        self.settings = settings
        self.plan = plan
        self.environ = dict(environ)
        self.ready_timeout_s = float(settings.stack.ready_timeout_s)
        self.stop_grace_s = float(settings.stack.stop_grace_s)
        self.probe_timeout_s = float(settings.stack.probe_timeout_s)
        self.ready_poll_s = float(settings.stack.ready_poll_s)
        self.watch_poll_s = float(settings.stack.watch_poll_s)
        self.parts: list[Part] = []  # started parts, in start order
        self.endpoints: dict[str, str] = {}
        self.replica_parts: list[str] = []  # parts that are proxy replicas behind the balancer
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
        except Interrupted:
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
            services.start_mlflow(self)
        else:
            services.use_external_tracking_server(self)
        proxies = ((replicas.start_proxy_replicas, replicas.start_balancer)
                   if plan.proxies > 1 else (services.start_proxy,))
        for start in (services.start_redis, services.start_vault, services.start_worker,
                      *proxies):
            if self._stopping:
                raise Interrupted
            start(self)

    # ---- helpers ----------------------------------------------------------------------------

    def launch(self, part: Part) -> None:
        try:
            part.start()
        except OSError as error:
            raise StackError(f"{part.name}: cannot start {part.command[0]}: {error}") from error
        self.parts.append(part)
        self._write_state()

    def wait(self, part: Part, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self._stopping:
                raise Interrupted
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
            time.sleep(self.ready_poll_s)

    def require_free_port(self, what: str, port: int, env_name: str, flag: str) -> None:
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
        killed = self._kill_leftover_model_servers()
        if killed:
            say(f"killed {len(killed)} model server(s) left over by an earlier stack")

    def _kill_leftover_model_servers(self) -> list[int]:
        return [pid for run_dir in self.plan.model_server_dirs
                for pid in kill_leftover_model_servers(run_dir)]

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
        # The CLI finds this stack's Vault through the state file; no VAULT_* to export.
        lines.append("  valuation keys create --owner me --role predict")
        if not self.environ.get("API_KEY"):
            lines.append("  (API_KEY is not set: no key was seeded; create one as above)")
        print("\n".join(lines) + "\n", flush=True)

    def _watch(self) -> Part | None:
        """Wait for Ctrl-C/SIGTERM; return the part that died on its own, if one does. A proxy
        replica may die while another one lives: the balancer sends its traffic to the others,
        as a load balancer does for a lost instance, and the stack says so and goes on."""
        lost: set[str] = set()
        while not self._stopping:
            for part in self.parts:
                if part.exit_code() is None or part.name in lost:
                    continue
                if part.name in self.replica_parts and len(lost) + 1 < len(self.replica_parts):
                    lost.add(part.name)
                    say(f"{part.name} exited with code {part.exit_code()}; the balancer "
                        f"routes around it (log {part.log_path})")
                    continue
                return part
            time.sleep(self.watch_poll_s)
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
        killed = self._kill_leftover_model_servers()
        if killed:
            say(f"killed {len(killed)} model server(s) the proxy left behind")
        with contextlib.suppress(FileNotFoundError):
            (self.plan.state_dir / "stack.pid").unlink()
        self.parts = []
        say("stopped")
