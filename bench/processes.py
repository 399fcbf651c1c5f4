"""Child processes the benchmarks start, and the guarantee that they all stop.

Every server runs in its own session (process group), so stopping the group also stops what it
spawned (uvicorn workers, the model servers under `serving.devstack`). `ProcessGroup` stops everything
it started on normal exit, on an exception, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil

from bench.common import BenchError, progress
from bench.resources import process_tree
from serving.processes import kill_group, signal_group


class ProcessGroup:
    """Starts named processes (each its own process group) and stops all of them on exit."""

    def __init__(self, log_dir: Path, grace_s: float = 10.0):
        self.grace_s = grace_s  # SIGTERM -> SIGKILL per process group
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()

    def start(self, name: str, command: list[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        if name in self._procs and self._procs[name].poll() is None:
            raise BenchError(f"process {name!r} is already running")
        log = open(self.log_path(name), "wb")  # noqa: SIM115 - the child owns it until it exits
        try:
            proc = subprocess.Popen(
                command, env=dict(env) if env is not None else None, cwd=cwd,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()
        self._procs[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_path(name)
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is not None:
            stop_process_group(proc, self.grace_s)

    def stop_all(self) -> None:
        for name in list(self._procs)[::-1]:
            self.stop(name)


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process's group, wait, then SIGKILL what is left (the leader may be gone while
    its children linger, so the group is signalled either way)."""
    pgid = proc.pid  # start_new_session=True: the child leads its own group
    # Descendants that started sessions of their own (a stack's model servers) are outside the
    # group: remember them now, and kill any that outlive their parent's shutdown.
    descendants = process_tree(proc.pid)[1:]
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc.poll() is not None and not signal_group(pgid, 0) and not _any_alive(descendants):
            return
        time.sleep(0.1)
    kill_group(pgid)
    # psutil checks that each pid still belongs to the process seen before (its create time).
    lingering = [p for p in descendants if _any_alive([p])]
    for child in lingering:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, still = psutil.wait_procs(lingering, timeout=3)
    for child in still:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(still, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _any_alive(processes: list[psutil.Process]) -> bool:
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            continue
    return False


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so `with ProcessGroup(...)` blocks clean up on it too;
    a BenchError ends the program with its message (no traceback), Ctrl-C with exit code 130."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except BenchError as error:
        sys.exit(f"bench: {error}")
    except KeyboardInterrupt:
        progress("interrupted; every process this part started has been stopped")
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_part(run: Callable[[Any], Any], cli: argparse.ArgumentParser) -> None:
    """A part's command line: parse `cli` (bench.common.parser plus the part's own flags), then
    `run(args)` with SIGTERM and Ctrl-C stopping every server it started."""
    args = cli.parse_args()
    with sigterm_as_interrupt():
        run(args)


def wait_until_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float, what: str,
                     log_tail: Callable[[], str] | None = None,
                     headers: Mapping[str, str] | None = None) -> float:
    """Poll `url` until it answers 200; fail early when `proc` exits. Returns seconds waited."""
    started = time.monotonic()
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() - started < timeout_s:
            if proc.poll() is not None:
                raise BenchError(f"{what} exited with code {proc.returncode} before it was ready"
                                 + (f":\n{log_tail()}" if log_tail else ""))
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url, headers=dict(headers or {})).status_code == 200:
                    waited = time.monotonic() - started
                    progress(f"{what} ready after {waited:.1f} s")
                    return waited
            time.sleep(0.25)
    raise BenchError(f"{what} did not answer 200 at {url} within {timeout_s:.0f} s")
