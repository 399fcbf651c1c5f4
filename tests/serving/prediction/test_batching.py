"""Adaptive micro-batching (serving/prediction/batcher.py) against real model servers: the real
app behind a real uvicorn server, the real supervisor running `mlflow models serve` for a model
trained by the project's own pipeline, and real concurrent HTTP clients."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.api.schemas import SPEC_PREDICT_BODY
from serving.app import create_app
from serving.ports import free_port
from serving.processes import kill_group
from tests.serving.prediction.support import metric, synthetic_rows, unbatched_prices
from tests.support.serving import (
    MODEL_NAME,
    FixedSupervisor,
    serve_app,
    serving_settings,
    wait_for,
)

pytestmark = pytest.mark.slow

CLIENTS = 10
REQUESTS_PER_CLIENT = 12
CLIENT_TIMEOUT_S = 30.0  # far above a prediction: a request this slow counts as hung


def audit_lines(path: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {line["request_id"]: line for line in lines if line["action"] == "predict"}


def run_clients(count: int, work) -> list[Any]:
    """`work(client_index, http)` in `count` threads at once; every result, or the test fails if
    a client is stuck."""
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def client(index: int) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT_S, trust_env=False) as http:
            start.wait()
            results[index] = work(index, http)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CLIENT_TIMEOUT_S * REQUESTS_PER_CLIENT)
    assert not any(thread.is_alive() for thread in threads), "a client is stuck in a request"
    return results


@pytest.fixture
def proxy_for(tmp_path, redis_conn, key_store, api_key, trained_model):
    """Start the real app with `supervisor` behind uvicorn: yields (url, headers, audit path)."""
    opened = []

    def start(supervisor, **overrides):
        settings = serving_settings(tmp_path, trained_model.tracking_uri,
                                    batching={"enabled": True, "max_batch_rows": 64,
                                              "max_wait_ms": 20}, **overrides)
        app = create_app(supervisor=supervisor, key_store=key_store, redis=redis_conn,
                         settings=settings)
        served = serve_app(app)
        url = served.__enter__()
        opened.append(served)
        return url, {"X-API-Key": api_key}, Path(settings.audit.path)

    yield start
    for served in opened:
        served.__exit__(None, None, None)


def test_concurrent_clients_each_get_their_own_prices(proxy_for, serving_supervisor) -> None:
    url, headers, audit_path = proxy_for(serving_supervisor)
    served = serving_supervisor.current()
    rows = synthetic_rows(40)
    reference = unbatched_prices(served.base_url, rows)

    def client(index: int, http: httpx.Client) -> list[tuple[list[int], httpx.Response]]:
        pick = random.Random(index)
        answers = []
        for _ in range(REQUESTS_PER_CLIENT):
            chosen = pick.sample(range(len(rows)), pick.randint(1, 3))
            body = {"model_name": MODEL_NAME, "features": [rows[i] for i in chosen]}
            answers.append((chosen, http.post(f"{url}/predict", json=body, headers=headers)))
        return answers

    answers = [answer for per_client in run_clients(CLIENTS, client) for answer in per_client]
    audit = audit_lines(audit_path)
    for chosen, answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_version"] == served.version
        assert body["predictions"] == pytest.approx([reference[i] for i in chosen], rel=1e-9)
        line = audit[body["request_id"]]  # one audit line per request, with its own rows
        assert line["inputs"] == [rows[i] for i in chosen]
        assert line["outputs"] == body["predictions"]
    assert len({answer.json()["request_id"] for _, answer in answers}) == len(answers)
    # Batching happened: fewer model-server calls than requests, some serving several.
    calls = metric(url, "valuation_batch_requests_count")
    assert metric(url, "valuation_batch_requests_sum") == len(answers)
    assert calls < len(answers), f"{calls} model-server calls for {len(answers)} requests"
    assert metric(url, "valuation_batch_rows_sum") == sum(len(c) for c, _ in answers)
    assert metric(url, "valuation_batch_wait_seconds_count") == len(answers)


def test_one_request_at_a_time_goes_at_once_alone(proxy_for, serving_supervisor) -> None:
    url, headers, _ = proxy_for(serving_supervisor)
    with httpx.Client(timeout=CLIENT_TIMEOUT_S, trust_env=False) as http:
        for _ in range(5):
            answer = http.post(f"{url}/predict", json=SPEC_PREDICT_BODY, headers=headers)
            assert answer.status_code == 200, answer.text
    # Nothing was in flight when each arrived: each went alone, without waiting.
    assert metric(url, "valuation_batch_requests_count") == 5
    assert metric(url, "valuation_batch_requests_sum") == 5
    assert metric(url, "valuation_batch_wait_seconds_sum") == 0.0


def test_a_bad_row_leaves_the_other_requests_priced(proxy_for, serving_supervisor) -> None:
    url, headers, _ = proxy_for(serving_supervisor)
    rows = synthetic_rows(20, seed=5)
    reference = unbatched_prices(serving_supervisor.current().base_url, rows)
    bad = {**rows[0], "sector": "atlantis"}

    def client(index: int, http: httpx.Client) -> list[tuple[int, httpx.Response]]:
        answers = []
        for turn in range(REQUESTS_PER_CLIENT):
            features = [rows[index], bad] if index == 0 else [rows[(index + turn) % len(rows)]]
            answer = http.post(f"{url}/predict", headers=headers,
                               json={"model_name": MODEL_NAME, "features": features})
            answers.append(((index + turn) % len(rows), answer))
        return answers

    results = run_clients(CLIENTS, client)
    for _, answer in results[0]:
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["detail"]
        assert (error["row"], error["field"]) == (1, "sector")
    for per_client in results[1:]:
        for row, answer in per_client:
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == pytest.approx([reference[row]], rel=1e-9)


def test_a_row_the_model_server_refuses_fails_only_its_own_request(
    proxy_for, serving_supervisor
) -> None:
    """The model server refuses a row the proxy let through: the batch it was in is priced again
    one request at a time, so only that request gets the 422. The proxy's rules and the model's
    are the same object in production; a wider rule set here (a stand-in supervisor pointing at
    the real model server) is the only way to make the real model server refuse a row."""
    served = serving_supervisor.current()
    wider = type(served.rules).from_dict(
        {**served.rules.to_dict(), "sectors": [*served.rules.sectors, "atlantis"]})
    url, headers, _ = proxy_for(FixedSupervisor(served.base_url, served.version, wider))
    rows = synthetic_rows(20, seed=6)
    reference = unbatched_prices(served.base_url, rows)
    refused = {**rows[0], "sector": "atlantis"}

    def client(index: int, http: httpx.Client) -> list[tuple[int, httpx.Response]]:
        answers = []
        for turn in range(REQUESTS_PER_CLIENT):
            row = (index + turn) % len(rows)
            features = [refused] if index == 0 else [rows[row]]
            answers.append((row, http.post(f"{url}/predict", headers=headers,
                                           json={"model_name": MODEL_NAME, "features": features})))
        return answers

    results = run_clients(CLIENTS, client)
    for _, answer in results[0]:
        assert answer.status_code == 422, answer.text
        assert "atlantis" in answer.json()["detail"][0]["message"]
    for per_client in results[1:]:
        for row, answer in per_client:
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == pytest.approx([reference[row]], rel=1e-9)


def test_an_upstream_killed_mid_batch_gives_every_waiter_503(
    proxy_for, supervisor_factory, trained_model
) -> None:
    """The real model server is frozen (SIGSTOP) so that requests pile up in flight, then killed
    (SIGKILL): every request of every batch in flight gets the same 503; none hangs."""
    supervisor = supervisor_factory(trained_model.tracking_uri, free_port())
    supervisor.start()
    wait_for(lambda: supervisor.current() is not None, 300, "the champion to be served", 0.5)
    url, headers, _ = proxy_for(supervisor)
    with httpx.Client(timeout=CLIENT_TIMEOUT_S, trust_env=False) as http:  # warm connections
        assert http.post(f"{url}/predict", json=SPEC_PREDICT_BODY, headers=headers).status_code == 200
    sent_before = metric(url, "valuation_batch_requests_sum")
    [server] = supervisor.status()["servers"]
    os.killpg(server["pid"], signal.SIGSTOP)
    try:
        waiting = 8
        results: list[httpx.Response] = []

        def client(index: int, http: httpx.Client) -> httpx.Response:
            return http.post(f"{url}/predict", json=SPEC_PREDICT_BODY, headers=headers)

        pump = threading.Thread(target=lambda: results.extend(run_clients(waiting, client)),
                                daemon=True)
        pump.start()
        wait_for(lambda: metric(url, "valuation_batch_requests_sum") - sent_before >= waiting, 30,
                 "every request to be in a model-server call", 0.05)
    finally:
        kill_group(server["pid"])
    pump.join(CLIENT_TIMEOUT_S + 10)
    assert not pump.is_alive(), "a request hangs"
    assert len(results) == waiting
    assert [r.status_code for r in results] == [503] * waiting, [r.text for r in results]
    assert {r.json()["detail"] for r in results} == {
        f"model version {server['version']} is unreachable; retry shortly"}
    calls = metric(url, "valuation_batch_requests_count")
    assert calls - 1 < waiting, "the requests were not batched"
