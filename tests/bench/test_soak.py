"""The soak's figures (windows, p99 steadiness, memory, the rate it aims at) and its HTTP client
against a real keep-alive HTTP/1.1 server. The soak itself is not run here (it takes minutes)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from bench.common import BenchError
from bench.loadgen import PROXY_FORMAT, marked_bodies
from bench.soak import (
    P99_STEADY_MAX_RATIO,
    Endpoint,
    SoakPlan,
    drive,
    errors_by_status,
    max_proxy_throughput,
    steadiness,
    summarize,
    window_stats,
)
from tests.support.http_server import serve_on_loopback


def test_windows_count_by_issue_time_and_take_latency_from_200s_only():
    outcomes = [
        (-0.5, 999.0, "200"),  # warm-up: not counted
        *[(0.1 * i, 1.0 + i, "200") for i in range(100)],  # 0.0 .. 9.9 s: latencies 1 .. 100 ms
        (5.0, 5000.0, "503"),  # slow error: counted as an error, not in the latency figures
        (12.0, 4.0, "200"), (14.0, 6.0, "200"), (19.9, 10000.0, "ReadTimeout"),
        (21.0, 8.0, "200"), (24.9, 0.0, "client_backlog"),
        (25.0, 1.0, "200"),  # issued after the end: not counted
    ]
    windows = window_stats(outcomes, window_s=10, duration_s=25)
    assert [(w["start_s"], w["end_s"]) for w in windows] == [(0, 10), (10, 20), (20, 25)]
    assert [w["requests"] for w in windows] == [101, 3, 2]
    assert [w["ok"] for w in windows] == [100, 2, 1]
    assert windows[0]["errors"] == {"503": 1}
    assert windows[1]["errors"] == {"ReadTimeout": 1}
    assert windows[2]["errors"] == {"client_backlog": 1}
    assert windows[0]["p50_ms"] == pytest.approx(50.5)
    assert windows[0]["p99_ms"] == pytest.approx(99.01)
    assert windows[0]["max_ms"] == 100.0  # the 5-second 503 is not a latency of a prediction
    assert windows[1]["p50_ms"] == pytest.approx(5.0)
    assert windows[2]["ok_per_s"] == pytest.approx(1 / 5)  # the last window is 5 s long
    assert windows[0]["ok_per_s"] == pytest.approx(10.0)
    assert errors_by_status(outcomes, 25) == {"503": 1, "ReadTimeout": 1, "client_backlog": 1}


def test_a_window_without_answers_has_no_latency():
    [window] = window_stats([(1.0, 3.0, "503")], window_s=10, duration_s=10)
    assert window["ok"] == 0 and window["p99_ms"] is None and window["errors"] == {"503": 1}


@pytest.mark.parametrize(("p99s", "last_over_first", "max_over_min", "steady"), [
    ([10.0, 12.0, 11.0, 15.0], 1.5, 1.5, True),
    ([10.0, 40.0, 12.0, 19.0], 1.9, 4.0, True),  # one slow window in the middle is not a drift
    ([10.0, 12.0, 11.0, 30.0], 3.0, 3.0, False),
    ([20.0, None, 10.0], 0.5, 2.0, True),  # a window without answers is left out
])
def test_steadiness_compares_last_with_first_window(p99s, last_over_first, max_over_min, steady):
    result = steadiness([{"p99_ms": p} for p in p99s])
    assert result["last_over_first"] == pytest.approx(last_over_first)
    assert result["max_over_min"] == pytest.approx(max_over_min)
    assert result["steady"] is steady
    assert (result["last_over_first"] <= P99_STEADY_MAX_RATIO) is steady


def test_no_answers_is_not_steady():
    assert steadiness([{"p99_ms": None}])["steady"] is False


def _samples(proxy: list[float], model: list[float]) -> list[dict[str, float]]:
    return [{"t_s": float(i), "proxy_mb": p, "model_server_mb": m}
            for i, (p, m) in enumerate(zip(proxy, model, strict=True))]


def test_summary_gives_rates_errors_and_memory_per_process():
    plan = SoakPlan(duration_s=20, warmup_s=0, window_s=10, rss_interval_s=1, probe_s=1)
    outcomes = [(0.05 * i, 2.0, "200") for i in range(400)]  # 20 answers/s for 20 s
    flat = summarize(outcomes, plan, 25.0, _samples([100, 101, 100, 102, 101, 100, 101, 101],
                                                      [300, 300, 301, 300, 299, 300, 301, 300]))
    assert flat["achieved_rate_per_s"] == pytest.approx(20.0)
    assert flat["issued"] == flat["ok"] == 400 and flat["errors_total"] == 0
    assert flat["rss"]["proxy"]["start_mb"] == 100 and flat["rss"]["proxy"]["end_mb"] == 101
    assert flat["rss"]["proxy"]["max_mb"] == 102 and flat["rss"]["model_server"]["max_mb"] == 301
    assert flat["verdict"] == {"zero_errors": True, "p99_steady": True, "memory_flat": True,
                               "rate_held": False}  # 20 of 25 req/s: the rate was not held

    growing = summarize([*outcomes, (3.0, 1.0, "503")], plan, 20.0,
                        _samples([100, 120, 140, 160, 180, 200, 220, 240], [300] * 8))
    assert growing["errors_by_status"] == {"503": 1} and growing["errors_total"] == 1
    assert growing["rss"]["proxy"]["flat"] is False and growing["rss"]["model_server"]["flat"] is True
    assert growing["verdict"] == {"zero_errors": False, "p99_steady": True, "memory_flat": False,
                                  "rate_held": True}


def test_the_rate_comes_from_the_proxys_best_level_in_serving_json():
    serving = {"started_at": "t", "quick": False, "results": {
        "anchor": {"8": {"requests_per_s": 900.0}},
        "proxy": {"1": {"requests_per_s": 150.0, "errors": 0}, "8": {"requests_per_s": 410.0, "errors": 0},
                  "32": {"requests_per_s": 395.0, "errors": 0}},
    }}
    found = max_proxy_throughput(serving)
    assert found["requests_per_s"] == 410.0 and found["concurrency"] == 8
    assert max_proxy_throughput(None) is None
    assert max_proxy_throughput({"results": {}}) is None


@pytest.mark.parametrize(("quick", "soak_s", "expected"),
                         [(False, None, 300), (True, None, 30), (True, 12, 12)])
def test_plan_duration(quick, soak_s, expected):
    class Args:
        pass

    args = Args()
    args.quick, args.soak_s = quick, soak_s
    assert SoakPlan.for_args(args).duration_s == expected


def test_only_loopback_is_soaked():
    with pytest.raises(BenchError, match="loopback"):
        Endpoint.from_url("http://example.com:8000/predict", None)


class _Answering(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive: every 7th request gets a 503, every 10th answer closes the connection."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    received: list[bytes] = []
    keys: set[str | None] = set()
    statuses: list[int] = []

    def do_POST(self):  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).received.append(body)
            type(self).keys.add(self.headers.get("X-API-Key"))
            count = len(type(self).received)
            status = 503 if count % 7 == 0 else 200
            type(self).statuses.append(status)
        answer = json.dumps({"predictions": [1.0]} if status == 200 else {"detail": "retry"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if count % 10 == 0:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def answering_server() -> Iterator[str]:
    _Answering.received, _Answering.keys, _Answering.statuses = [], set(), []
    with serve_on_loopback(_Answering) as base_url:
        yield f"{base_url}/predict"


def test_the_client_sends_distinct_bodies_and_counts_every_answer(answering_server):
    records = [{"type": "casa", "sector": "vitacura", "net_usable_area": 100.0 + i, "net_area": 150.0,
                "n_rooms": 3.0, "n_bathroom": 2.0, "latitude": -33.4, "longitude": -70.6 + i / 100}
               for i in range(5)]
    bodies = marked_bodies(records, PROXY_FORMAT, "property_friends_best_model")
    endpoint = Endpoint.from_url(answering_server, "k-soak")
    first, next_index = asyncio.run(drive(endpoint, bodies, rate=60, duration_s=0.5, connections=3))
    second, _ = asyncio.run(drive(endpoint, bodies, rate=60, duration_s=0.5, connections=3,
                                  first_request=next_index))
    outcomes = first + second
    received = _Answering.received
    assert next_index == len(first) == 30  # 60/s for 0.5 s, every one issued and answered
    assert len(received) == len(outcomes) == 60  # 12 passes over 5 rows ...
    assert len(set(received)) == len(received)  # ... and no body sent twice, across both calls
    assert all(len(json.loads(body)["features"]) == 1 for body in received)
    assert _Answering.keys == {"k-soak"}
    # Every answer is counted with its status, through the connections the server closed.
    assert sorted(status for _, _, status in outcomes) == sorted(map(str, _Answering.statuses))
    assert sum(status == "503" for _, _, status in outcomes) == 60 // 7
    assert all(latency > 0 for _, latency, _ in outcomes)
