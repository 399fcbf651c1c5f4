"""Schemathesis against the proxy's own /openapi.json: every operation, authenticated as admin,
must never answer 5xx and must answer what its schema declares.

The app runs in this process with the real Redis (a unique queue, purged afterwards), the real
env key store and a real HTTP server playing the model server. The supervisor is the proxy
tests' FixedSupervisor: a real `mlflow models serve` would only slow the run, while the rows are
checked by the same `ValidationRules` either way; with it /predict gets past "nothing served" so
row validation and forwarding are fuzzed too. Bounded: 30 examples per operation.

The app runs once for the module under a real uvicorn (`serve_app`), so its lifespan starts
once, as in a server process: schemathesis would otherwise end an in-process app's lifespan after
each operation's test and start it again (23 start-ups, each applying the prediction store's
migrations in a child interpreter), a third of this module's CPU time.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from redis import Redis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from serving.app import create_app
from serving.keys.env_store import EnvKeyStore
from tests.support.serving import FixedSupervisor, purge_queue, serve_app, serving_settings

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
schema = schemathesis.openapi.from_dict(APP.openapi())
SERVED: dict[str, str] = {}  # the app's URL under a real uvicorn, for the module


@pytest.fixture(autouse=True, scope="module")
def upstream_and_cleanup(fake_model_server_module, redis_module) -> Iterator[None]:
    SUPERVISOR.model = replace(SUPERVISOR.model, base_url=fake_model_server_module.url)
    with serve_app(APP) as url:
        SERVED["url"] = url
        yield
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
    case.call_and_validate(base_url=SERVED["url"], headers={"X-API-Key": ADMIN_KEY},
                           checks=[not_a_server_error, response_schema_conformance])
