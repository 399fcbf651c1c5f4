"""Schemathesis against the proxy's own /openapi.json: every operation, authenticated as admin,
must never answer 5xx and must answer what its schema declares.

The app runs in process (ASGI) with the real Redis (a unique queue, purged afterwards), the real
env key store and a real HTTP server playing the model server. The supervisor is the proxy
tests' FixedSupervisor: a real `mlflow models serve` would only slow the run, while the rows are
checked by the same `ValidationRules` either way; with it /predict gets past "nothing served" so
row validation and forwarding are fuzzed too. Bounded: 30 examples per operation.

The app's lifespan runs once for the module, as in a server process (`OneLifespan`): schemathesis
ends an ASGI app's lifespan after each operation's test and starts it again on the next one's
first request, and 23 start-ups (each applying the prediction store's migrations in a child
interpreter, then starting and stopping the writer) were a third of this module's CPU time and
more of its wall time on a busy machine. One lifespan for every operation is also what a
server process does.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from redis import Redis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from serving.app import create_app
from serving.keys.env_store import EnvKeyStore
from tests.support.serving import FixedSupervisor, purge_queue, serving_settings

ADMIN_KEY = f"pv_fuzz_{secrets.token_urlsafe(24)}"
_STATE = Path(tempfile.mkdtemp(prefix="valuation-fuzz-"))
SETTINGS = serving_settings(_STATE, f"sqlite:///{_STATE / 'mlflow.db'}")
# Built at import (schemathesis parametrizes from the schema at collection); nothing connects
# until the first request. The model server's URL is filled in by the fixture below.
SUPERVISOR = FixedSupervisor("http://127.0.0.1:9")
APP = create_app(
    supervisor=SUPERVISOR,
    key_store=EnvKeyStore(ADMIN_KEY),
    redis=Redis(host="127.0.0.1", port=6379, socket_timeout=5),
    settings=SETTINGS,
)


class OneLifespan:
    """`app` for ASGI requests, with its lifespan started on the first request and kept until
    `stop()` (the module's end), whatever lifespan messages the caller sends: the lifespan runs
    in a task of its own on the caller's event loop (schemathesis' one loop for every request),
    fed by queues, as a server runs it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._to_app: asyncio.Queue | None = None
        self._from_app: asyncio.Queue | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start()
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": repr(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            else:  # lifespan.shutdown: the app's own lifespan ends in stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        if self._task is not None:
            if self._task.done():  # the app's lifespan ended on its own: say so
                self._task.result()
                raise RuntimeError("the app's lifespan ended before the module did")
            return
        self._loop = asyncio.get_running_loop()
        self._to_app, self._from_app = asyncio.Queue(), asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = self._loop.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        answer = await self._from_app.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(answer.get("message") or "the app's lifespan failed to start")

    def stop(self) -> None:
        if self._task is None or self._loop is None:
            return

        async def shutdown() -> None:
            assert self._task is not None and self._to_app is not None
            assert self._from_app is not None
            await self._to_app.put({"type": "lifespan.shutdown"})
            answer = await self._from_app.get()
            await self._task  # re-raises what the lifespan failed with
            assert answer["type"] == "lifespan.shutdown.complete", answer

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=120)
        self._task = None


LIFESPAN = OneLifespan(APP)
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = LIFESPAN  # requests go to the app in process (ASGI); its lifespan runs on the first


@pytest.fixture(autouse=True, scope="module")
def upstream_and_cleanup(fake_model_server_module, redis_module) -> Iterator[None]:
    SUPERVISOR.model = replace(SUPERVISOR.model, base_url=fake_model_server_module.url)
    yield
    LIFESPAN.stop()
    purge_queue(redis_module, SETTINGS.jobs.queue)
    purge_queue(redis_module, SETTINGS.monitoring_job.queue)  # POST /monitoring/run's jobs
    for key in redis_module.scan_iter(f"{SETTINGS.monitoring_job.redis_prefix}:*"):
        redis_module.delete(key)
    shutil.rmtree(_STATE, ignore_errors=True)


@pytest.fixture(autouse=True)
def served_tracking_uri() -> None:
    """MLflow's process-wide URI as the app's lifespan set it at start-up: the conftest resets it
    after every test, while here one lifespan serves every operation's test."""
    import mlflow

    mlflow.set_tracking_uri(APP.state.settings.tracking_uri)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_server_error_and_responses_match_the_schema(case) -> None:
    case.call_and_validate(headers={"X-API-Key": ADMIN_KEY},
                           checks=[not_a_server_error, response_schema_conformance])
