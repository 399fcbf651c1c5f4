"""Liveness, readiness, request ids and Prometheus metrics."""

from __future__ import annotations

import re

from redis import Redis

from tests.support.serving import FixedSupervisor, free_port


def test_health_needs_no_key_and_no_dependency(make_client) -> None:
    # Redis on a port nothing listens on: liveness must not care.
    dead_redis = Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.5,
                       socket_connect_timeout=0.5)
    client = make_client(redis=dead_redis)
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_ready_names_the_model_server_when_nothing_is_served(client) -> None:
    answer = client.get("/ready")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "not_ready"
    assert body["failed"] == ["model_server"]
    assert body["checks"]["model_server"]["state"] == "no_champion"
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["key_store"]["ok"] is True


def test_ready_names_redis_when_it_is_down(make_client, fake_model_server) -> None:
    dead_redis = Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.5,
                       socket_connect_timeout=0.5)
    client = make_client(redis=dead_redis, supervisor=FixedSupervisor(fake_model_server.url))
    answer = client.get("/ready")
    assert answer.status_code == 503
    assert answer.json()["failed"] == ["redis"]
    assert "Connection" in answer.json()["checks"]["redis"]["detail"]


def test_ready_when_every_dependency_answers(make_client, fake_model_server) -> None:
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url))
    answer = client.get("/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ready"
    assert answer.json()["failed"] == []


def test_ready_fails_when_the_served_server_stops_answering(make_client) -> None:
    client = make_client(supervisor=FixedSupervisor(f"http://127.0.0.1:{free_port()}"))
    answer = client.get("/ready")
    assert answer.status_code == 503
    assert answer.json()["failed"] == ["model_server"]
    assert "does not answer" in answer.json()["checks"]["model_server"]["detail"]


def test_request_id_is_echoed_or_generated(client) -> None:
    given = client.get("/health", headers={"X-Request-ID": "client-trace-42"})
    assert given.headers["X-Request-ID"] == "client-trace-42"
    generated = client.get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
    # An id that could forge log lines is replaced, not echoed.
    forged = client.get("/health", headers={"X-Request-ID": "x\" injected=1 " + "y" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["X-Request-ID"])


def test_errors_carry_the_request_id(client) -> None:
    answer = client.get("/job_status/abc", headers={"X-Request-ID": "trace-7"})
    assert answer.status_code == 401
    assert answer.json()["request_id"] == "trace-7"


def test_metrics_count_requests_by_route_and_status(client, auth) -> None:
    client.get("/health")
    client.get("/job_status/unknown-1", headers=auth)
    client.get("/job_status/unknown-2", headers=auth)
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'valuation_http_requests_total{endpoint="/health",method="GET",status="200"} 1.0' in text
    # Job ids are folded into the route template: bounded label values.
    assert ('valuation_http_requests_total{endpoint="/job_status/{job_id}",method="GET",'
            'status="404"} 2.0') in text
    assert "unknown-1" not in text
    assert "valuation_http_request_duration_seconds_bucket" in text


def test_an_unexpected_error_is_json_with_the_request_id_not_a_trace(make_client, auth) -> None:
    client = make_client(supervisor=_BrokenSupervisor())
    answer = client.post("/predict", headers={**auth, "X-Request-ID": "trace-500"},
                         json={"model_name": "property_friends_best_model", "features": [{}]})
    assert answer.status_code == 500
    assert answer.json() == {
        "detail": "internal error; quote the request id when reporting it",
        "request_id": "trace-500",
    }
    assert answer.headers["X-Request-ID"] == "trace-500"
    assert "Traceback" not in answer.text and "RuntimeError" not in answer.text


class _BrokenSupervisor(FixedSupervisor):
    """A supervisor whose state is corrupted: the one fault no real component produces on
    demand, and the one the catch-all error path exists for."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", broken_status=True)

    def current(self):
        return None  # forces the status() call that raises
