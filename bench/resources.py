"""CPU time and memory of process trees (a server and everything it spawned), sampled with psutil."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from serving.processes import kill_group

MB = 1024 * 1024


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants."""
    total = 0.0
    for proc in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def tree_rss_mb(pid: int) -> float:
    total = 0
    for proc in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total / MB


def stack_rss_probes(proxy_pid: int | None, model_server_pid: int | None) -> dict[str, Callable[[], float]]:
    """RssSampler probes for a stack: the proxy process and the model server's whole process tree
    (its uvicorn workers); a pid left out (None) is not sampled."""
    probes: dict[str, Callable[[], float]] = {}
    if proxy_pid is not None:
        probes["proxy_mb"] = lambda: psutil.Process(proxy_pid).memory_info().rss / MB
    if model_server_pid is not None:
        probes["model_server_mb"] = lambda: sum(p.memory_info().rss
                                                for p in process_tree(model_server_pid)) / MB
    return probes


def listening_ports(pid: int) -> list[int]:
    """TCP ports on which `pid` or a descendant listens (finds the model servers a stack started)."""
    ports: set[int] = set()
    for proc in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    ports.add(conn.laddr.port)
    return sorted(ports)


@dataclass
class RssSampler:
    """Calls each named probe (returning MB) every `interval_s` seconds in a background thread."""

    probes: Mapping[str, Callable[[], float]]
    interval_s: float = 2.0
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)

    def _run(self) -> None:
        while True:
            sample = {"t_s": round(time.monotonic() - self._started, 2)}
            for name, probe in self.probes.items():
                with contextlib.suppress(psutil.Error):  # a process that is gone has no sample
                    sample[name] = round(probe(), 1)
            self.samples.append(sample)
            if self._stop.wait(self.interval_s):
                return


@dataclass(frozen=True)
class CommandUsage:
    wall_s: float
    peak_tree_rss_mb: float  # highest sampled sum over the whole process tree
    max_rss_mb: float  # the largest single process (kernel's ru_maxrss of the reaped tree)
    returncode: int


def measure_command(command: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                    log_path: Path, interval_s: float = 0.2, timeout_s: float = 7200) -> CommandUsage:
    """Run `command` to completion; wall time and peak memory of it and everything it spawns."""
    peak = 0.0
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=dict(env) if env is not None else None, cwd=cwd,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            while True:
                # wait4 reaps the child with its rusage; ru_maxrss covers its waited-for descendants too.
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                peak = max(peak, tree_rss_mb(proc.pid))
                if time.perf_counter() - started > timeout_s:
                    raise TimeoutError(f"{command[:3]} still running after {timeout_s:.0f} s")
                time.sleep(interval_s)
        except BaseException:
            kill_group(proc.pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            raise
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
    max_rss_kb = usage.ru_maxrss if usage else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return CommandUsage(wall_s=wall, peak_tree_rss_mb=max(peak, max_rss_kb / 1024),
                        max_rss_mb=max_rss_kb / 1024, returncode=proc.returncode)
