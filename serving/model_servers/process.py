"""One `mlflow models serve` child for one model version: start, check, stop, clean up after.

The child leads its own process group (stopping it stops uvicorn and its workers too) and gets
SIGTERM if the supervisor's thread dies, so a killed proxy leaves no model server behind; pid
files let the next start clear servers left by a supervisor that died harder than that.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

from serving.model_servers.served import ModelLoadError
from serving.model_servers.timeouts import describe_error
from serving.processes import kill_group, own_group_options, terminate_process_group

PID_FILE_GLOB = "model-server-*.pid"


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
        ping_timeout_s: float,
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
        self.ping_timeout_s = ping_timeout_s
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
                **own_group_options(),
            )
        self.pid_path.write_text(str(self._proc.pid))

    def exit_code(self) -> int | None:
        """None while running; the exit code once it has exited."""
        return self._proc.poll() if self._proc else None

    def ping(self, client: httpx.Client) -> bool:
        try:
            return client.get(f"{self.base_url}/ping",
                              timeout=self.ping_timeout_s).status_code == 200
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
        if b"mlflow" in cmdline and b"models serve" in cmdline and kill_group(pid):
            killed.append(pid)
        pid_file.unlink(missing_ok=True)
    return killed


def smoke_predict(client: httpx.Client, base_url: str, payload: dict, timeout_s: float) -> None:
    """A real prediction through the server; raises ModelLoadError unless it returns numbers."""
    try:
        response = client.post(f"{base_url}/invocations", json=payload, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ModelLoadError(f"example prediction failed: {describe_error(exc)}") from exc
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
