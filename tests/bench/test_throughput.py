"""bench.throughput's pieces: the in-process design it measures (on the session's real champion),
the batch-size histogram read from a real Prometheus endpoint, the targets' arithmetic and the
report section. The whole part runs with `python -m bench.throughput --quick --synthetic 2000`."""

from __future__ import annotations

import copy

import mlflow
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from bench.report_throughput import throughput_section
from bench.soak import max_proxy_throughput
from bench.throughput import BATCH_ROWS_METRIC, batch_histogram, comparison, targets_met
from serving.ports import free_port
from valuation.synthetic import generate_frame


def _level(rps: float, p50: float, cpu: float, errors: int = 0, batch: float | None = None) -> dict:
    return {"requests_per_s": float(rps), "p50_ms": p50, "p95_ms": 2 * p50, "p99_ms": 3 * p50,
            "errors": errors, "server_cpu_ms_per_request": cpu, "mean_batch_rows": batch}


LEVELS = {
    "anchor": {"1": _level(150, 6.0, 9.0), "8": _level(120, 60, 9.0), "32": _level(100, 300, 9.5)},
    "proxy": {"1": _level(480, 1.9, 2.0), "8": _level(640, 11, 2.0), "32": _level(600, 50, 2.1)},
    "proxy_no_limit": {"1": _level(500, 1.8, 1.9), "8": _level(680, 10, 1.9), "32": _level(640, 48, 2.0)},
    "inprocess": {"1": _level(1500, 0.6, 0.7), "8": _level(1400, 5, 0.7), "32": _level(1300, 24, 0.75)},
}


def test_targets_take_the_batching_proxy_when_measured_and_compare_p50_with_todays():
    without = targets_met(LEVELS)
    assert without["proxy_measured"] == "proxy" and "p50_c1_extra_ms" not in without
    assert without["over_inprocess_c32"] == pytest.approx(600 / 1300)
    assert without["over_inprocess_c32_met"] is False and without["over_inprocess_c8_met"] is False

    levels = copy.deepcopy(LEVELS)
    levels["proxy_batching"] = {"1": _level(470, 2.05, 2.0, batch=1.0), "8": _level(1500, 5, 0.8, batch=6.1),
                                "32": _level(1700, 18, 0.6, batch=20.0, errors=2)}
    batched = targets_met(levels)
    assert batched["proxy_measured"] == "proxy_batching"
    assert batched["over_inprocess_c32"] == pytest.approx(1700 / 1300) and batched["over_inprocess_c32_met"]
    assert batched["over_inprocess_c8"] == pytest.approx(1500 / 1400) and batched["over_inprocess_c8_met"]
    assert batched["p50_c1_extra_ms"] == pytest.approx(0.15) and batched["p50_c1_met"]
    assert batched["errors_total"] == 2


def test_the_limits_share_is_the_difference_between_the_two_proxies():
    shares = comparison(LEVELS, (1, 8))
    assert shares["1"]["limit_cpu_share"] == pytest.approx(0.1 / 2.0)
    assert shares["8"]["limit_rps_cost"] == pytest.approx(1 - 640 / 680)
    assert shares["8"]["proxy_over_inprocess_rps"] == pytest.approx(640 / 1400)


def test_the_mean_batch_comes_from_the_proxys_histogram_on_a_real_metrics_endpoint():
    registry = CollectorRegistry()
    rows = Histogram(BATCH_ROWS_METRIC, "rows per model-server call", registry=registry,
                     buckets=(1, 2, 4, 8, 16, 32, 64))
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert batch_histogram(url) == (0.0, 0.0)
        for size in (1, 3, 8):
            rows.observe(size)
        assert batch_histogram(url) == (12.0, 3.0)
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert batch_histogram(url) is None  # nothing answers: no figure rather than a made-up one


def test_the_soak_takes_the_measured_production_proxys_maximum():
    throughput = {"started_at": "t", "quick": False, "results": LEVELS,
                  "targets": {"proxy_measured": "proxy"}}
    found = max_proxy_throughput(throughput, "proxy")
    assert found["requests_per_s"] == 640 and found["concurrency"] == 8


def test_the_report_section_shows_every_target_the_verdicts_and_what_was_not_measured():
    result = {"started_at": "2026-12-02T13:00:00+00:00", "load_avg_1m_at_start": 9.5,
              "machine": {"cores": 2}, "data": "real (client CSVs)", "plan": {"concurrency": [1, 8, 32]},
              "results": LEVELS, "comparison": comparison(LEVELS, (1, 8, 32)), "targets": targets_met(LEVELS),
              "not_measured": {"proxy_batching": "this build has no micro-batching switch"},
              "ratelimit_check": {"lua_async": {"1": {"cpu_us_per_check": 60.0, "wall_us_per_check": 150.0}}}}
    text = throughput_section(result)
    assert "load average 9.5 on 2 cores" in text
    assert "| 32 | in-process design (one FastAPI process) | 1,300 |" in text
    assert "| 8 | proxy, batching off, no rate limit | 680 |" in text
    assert "no micro-batching switch" in text
    verdict = ("| proxy, batching off (limit + audit) ÷ in-process, req/s at concurrency 32 | ≥ 1.2 | 0.46 "
               "| **no** |")
    assert verdict in text
    assert "| lua_async | 1 | 60.0 | 150 |" in text
    assert throughput_section(None).endswith("_Not measured yet: run `python -m bench.throughput`._")


@pytest.mark.slow
def test_the_inprocess_design_checks_the_key_validates_and_prices_like_the_pyfunc(trained_model,
                                                                                   monkeypatch):
    from bench import inprocess_app
    from valuation.config import load_config

    model_uri = f"models:/{load_config([]).registry.model_name}/{trained_model.version}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_model.tracking_uri)
    mlflow.set_tracking_uri(trained_model.tracking_uri)
    monkeypatch.setenv(inprocess_app.MODEL_URI_ENV, model_uri)
    monkeypatch.setenv(inprocess_app.API_KEY_ENV, "the-key")
    rows = generate_frame(30, seed=5).drop(columns=["price"]).head(3).to_dict(orient="records")
    expected = mlflow.pyfunc.load_model(model_uri).predict(rows)
    with TestClient(inprocess_app.app) as client:
        assert client.post("/predict", json={"features": rows}).status_code == 401
        wrong = client.post("/predict", json={"features": rows}, headers={"X-API-Key": "other"})
        assert wrong.status_code == 401
        bad = client.post("/predict", json={"features": [{**rows[0], "net_area": -1.0}]},
                          headers={"X-API-Key": "the-key"})
        assert bad.status_code == 422 and "net_area" in bad.text
        answer = client.post("/predict", json={"features": rows}, headers={"X-API-Key": "the-key"})
    assert answer.status_code == 200
    assert answer.json()["predictions"] == pytest.approx([float(p) for p in expected])
