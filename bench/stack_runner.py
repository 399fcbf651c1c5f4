"""Run the project's stack (`python -m serving.devstack`, what `make stack` runs) on throwaway ports,
state directory and store, and find its proxy and model-server processes."""

from __future__ import annotations

import os
import secrets
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench.common import LOOPBACK, BenchError, progress
from bench.processes import ProcessGroup
from bench.resources import process_tree
from serving.ports import free_port, free_port_run

STACK_READY_TIMEOUT_S = 420  # tracking server, OpenBao, worker, proxy, then the model server's load


@dataclass(frozen=True)
class RunningStack:
    proxy_url: str  # the proxy, or the balancer in front of the replicas
    api_key: str
    stack_pid: int
    proxy_pid: int  # the (first) proxy process
    model_server_port: int
    model_server_pid: int  # the `mlflow models serve` launcher; its tree includes the uvicorn workers
    all_model_server_ports: tuple[int, ...]
    redis_port: int | None = None  # the stack's own redis-server (own_redis), else the shared one

    @property
    def model_server_url(self) -> str:
        return f"http://{LOOPBACK}:{self.model_server_port}"


def start_stack(group: ProcessGroup, workdir: Path, tracking_uri: str,
                proxies: int = 1, *, name: str = "stack", env_overrides: Mapping[str, str] | None = None,
                own_redis: bool = False,
                ready_timeout_s: float = STACK_READY_TIMEOUT_S) -> RunningStack:
    """Start the stack serving the champion registered in `tracking_uri` (a SQLite store in
    `workdir`) and wait until its proxy says it is ready. `proxies` > 1: that many replicas
    behind the stack's nginx (`make stack PROXIES=N`); the balancer's /ready answers 200 once
    a replica serves, so each replica is waited for on its own port too. Several stacks run side
    by side under distinct `name`s (state directory, process name), each configured by its
    `env_overrides`; `own_redis`: the stack starts a redis-server of its own on a free port
    instead of using the shared one, as a deployment has its own."""
    state_dir = workdir / (name if proxies == 1 else f"{name}-{proxies}-proxies")
    ports = {part: free_port() for part in ("mlflow", "proxy", "vault", "redis")}
    model_server_port = free_port_run(4)
    replica_port = free_port_run(proxies) if proxies > 1 else None
    api_key = secrets.token_urlsafe(32)
    env = dict(os.environ)
    env.update({
        "API_KEY": api_key,  # seeded as an admin key; never printed
        "MLFLOW_TRACKING_URI": tracking_uri,
        # A queue of its own: the shared Redis may carry other people's training queue.
        "TRAINING_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
        "MONITORING_QUEUE": f"bench-monitoring-{uuid.uuid4().hex[:8]}",
        "MONITORING_REDIS_PREFIX": f"bench-monitoring:{uuid.uuid4().hex[:8]}",
        # Never the checkout's predictions.db: a store of the run's own (or env_overrides').
        "PREDICTION_STORE_URL": f"sqlite:///{state_dir / 'predictions.db'}",
    })
    env.update(env_overrides or {})
    command = [
        sys.executable, "-m", "serving.devstack",
        "--state-dir", str(state_dir),
        "--backend-store-uri", tracking_uri,
        "--artifacts-destination", str(workdir / "mlartifacts"),
        "--mlflow-port", str(ports["mlflow"]),
        "--proxy-port", str(ports["proxy"]),
        "--vault-port", str(ports["vault"]),
        "--model-server-port", str(model_server_port),
    ]
    if replica_port is not None:
        command += ["--proxies", str(proxies), "--replica-port", str(replica_port)]
    if own_redis:
        command += ["--redis-port", str(ports["redis"])]
    progress(f"starting the stack: proxy on {LOOPBACK}:{ports['proxy']}, "
             f"model servers from port {model_server_port}")
    proc = group.start(name, command, env=env)
    proxy_url = f"http://{LOOPBACK}:{ports['proxy']}"
    replica_ports = [ports["proxy"]] if replica_port is None else \
        [replica_port + i for i in range(proxies)]
    for port in replica_ports:
        _wait_ready(f"http://{LOOPBACK}:{port}", proc, group, name, ready_timeout_s)
    proxy_pid = _listening_pid(proc.pid, replica_ports[0])
    servers = _model_servers(proxy_pid, range(model_server_port, model_server_port + 16))
    if not servers:
        raise BenchError(f"the stack is ready but no model server listens from port {model_server_port}")
    port = min(servers)
    return RunningStack(proxy_url=proxy_url, api_key=api_key, stack_pid=proc.pid, proxy_pid=proxy_pid,
                        model_server_port=port, model_server_pid=servers[port],
                        all_model_server_ports=tuple(sorted(servers)),
                        redis_port=ports["redis"] if own_redis else None)


def _wait_ready(proxy_url: str, proc, group: ProcessGroup, name: str = "stack",
                timeout_s: float = STACK_READY_TIMEOUT_S) -> None:
    started = time.monotonic()
    last = ""
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() - started < timeout_s:
            if proc.poll() is not None:
                raise BenchError(f"the stack exited with code {proc.returncode}:\n{group.log_tail(name)}")
            try:
                answer = client.get(f"{proxy_url}/ready")
                if answer.status_code == 200:
                    progress(f"stack ready after {time.monotonic() - started:.0f} s")
                    return
                last = answer.text[:300]
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(1.0)
    raise BenchError(f"the stack's proxy was not ready within {timeout_s:g} s (last: {last})\n"
                     f"{group.log_tail(name)}")


def _listening_pid(root_pid: int, port: int) -> int:
    for proc in process_tree(root_pid):
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in proc.net_connections(kind="tcp")):
                return proc.pid
        except psutil.Error:
            continue
    raise BenchError(f"no process of the stack listens on port {port}")


def _model_servers(proxy_pid: int, ports: range) -> dict[int, int]:
    """{port: pid of the proxy's child that leads that model server's process tree}."""
    try:
        children = psutil.Process(proxy_pid).children()
    except psutil.Error:
        return {}
    found: dict[int, int] = {}
    for child in children:
        for proc in process_tree(child.pid):
            try:
                for conn in proc.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports:
                        found[conn.laddr.port] = child.pid
            except psutil.Error:
                continue
    return found
