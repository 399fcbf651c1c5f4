"""Fixtures of every serving test folder: real Redis (a unique queue per test, purged afterwards),
the real env-backed key store, a real model-server supervisor, real HTTP upstreams, a tiny model
trained by the project's own pipeline for the tests that need real predictions, and (from
tests/support/stack.py) a registry of two versions and the real dev stack."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from omegaconf import DictConfig
from redis import Redis

from serving.app import create_app
from serving.devstack.services import redis_server_config
from serving.keys.env_store import EnvKeyStore
from serving.model_servers.supervisor import ModelServerSupervisor
from serving.ports import free_port
from tests.support.serving import (
    FakeModelServer,
    TrainedModel,
    purge_queue,
    serve_fake_model_server,
    serving_settings,
    wait_for,
)
from tests.support.stack import (  # noqa: F401  (fixtures: pytest finds them by name here)
    stack,
    stack_client,
    stack_env,
    supervisor_factory,
    trained_registry,
)
from valuation.config import load_config

# --- Redis -------------------------------------------------------------------------------------


@pytest.fixture
def redis_conn() -> Iterator[Redis]:
    connection = Redis(host="127.0.0.1", port=6379, db=0, socket_timeout=5)
    yield connection
    connection.close()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of our own on a free port, for tests that kill it: yields (process,
    connection, restart)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is required (apt-get install redis-server)")
    port = free_port()
    # The stack's own configuration (append-only file in tmp_path): what survives a kill there
    # survives it here.
    config = redis_server_config(load_config(config_name="serving"), port, tmp_path)

    def launch() -> subprocess.Popen:
        process = subprocess.Popen([binary, "-"], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process.stdin.write(config.encode())
        process.stdin.close()
        return process

    process = launch()
    connection = Redis(host="127.0.0.1", port=port, socket_timeout=0.5, socket_connect_timeout=0.5)

    def answers() -> bool:
        try:
            return bool(connection.ping())
        except Exception:
            return False

    wait_for(answers, 20, "our redis-server to answer")
    started = [process]

    def restart() -> None:
        started.append(launch())
        wait_for(answers, 20, "our redis-server to answer again")

    yield process, connection, restart
    for each in started:
        if each.poll() is None:
            each.kill()
            each.wait(timeout=10)
    connection.close()


# --- settings, keys, supervisor ----------------------------------------------------------------


@pytest.fixture(scope="session")
def empty_registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tracking store with no registered model (so no champion)."""
    return f"sqlite:///{tmp_path_factory.mktemp('empty-registry') / 'mlflow.db'}"


@pytest.fixture
def api_settings(tmp_path: Path, empty_registry: str, redis_conn: Redis) -> Iterator[DictConfig]:
    settings = serving_settings(tmp_path, empty_registry)
    yield settings
    purge_queue(redis_conn, settings.jobs.queue)
    purge_queue(redis_conn, settings.monitoring_job.queue)


@pytest.fixture
def api_key() -> str:
    return f"pv_test_{secrets.token_urlsafe(24)}"


@pytest.fixture
def key_store(api_key: str) -> EnvKeyStore:
    """The real key store used without Vault: API_KEY is the one (admin) key."""
    return EnvKeyStore(api_key)


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"X-API-Key": api_key}


@pytest.fixture(scope="session")
def idle_supervisor(
    tmp_path_factory: pytest.TempPathFactory, empty_registry: str
) -> Iterator[ModelServerSupervisor]:
    """A real supervisor watching a registry that has no champion: it serves nothing."""
    settings = serving_settings(tmp_path_factory.mktemp("idle-supervisor"), empty_registry)
    supervisor = ModelServerSupervisor(settings, empty_registry)
    supervisor.start()
    wait_for(lambda: supervisor.status()["state"] != "starting", 60, "the supervisor to settle")
    yield supervisor
    supervisor.stop()


@pytest.fixture
def make_client(
    api_settings: DictConfig, redis_conn: Redis, key_store: EnvKeyStore,
    idle_supervisor: ModelServerSupervisor,
) -> Iterator[Callable[..., TestClient]]:
    """Build the app with injected dependencies and run its lifespan; closed after the test."""
    opened: list[TestClient] = []

    def make(**dependencies: Any) -> TestClient:
        app = create_app(
            supervisor=dependencies.get("supervisor", idle_supervisor),
            key_store=dependencies.get("key_store", key_store),
            redis=dependencies.get("redis", redis_conn),
            settings=dependencies.get("settings", api_settings),
        )
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


# --- upstreams for the fault paths -------------------------------------------------------------


@pytest.fixture
def fake_model_server() -> Iterator[FakeModelServer]:
    with serve_fake_model_server() as state:
        yield state


# --- a real served model (trained_model: tests/conftest.py) ------------------------------------


@pytest.fixture(scope="session")
def serving_supervisor(trained_model: TrainedModel) -> Iterator[ModelServerSupervisor]:
    """The real supervisor running `mlflow models serve` for the tiny model's champion."""
    settings = serving_settings(trained_model.root, trained_model.tracking_uri)
    supervisor = ModelServerSupervisor(settings, trained_model.tracking_uri)
    supervisor.start()
    try:
        wait_for(lambda: supervisor.current() is not None, 300, "the champion to be served", 0.5)
    except AssertionError:
        status = supervisor.status()
        supervisor.stop()
        raise AssertionError(f"model server did not come up: {status}") from None
    yield supervisor
    supervisor.stop()
