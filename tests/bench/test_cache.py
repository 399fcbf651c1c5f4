"""bench.cache's pieces: the two streams, the hit counts read from the proxy's own cache metrics on a
real Prometheus endpoint, the cache emptied on a real Redis, the summary, the target and the report
section. The whole part runs with `python -m bench.cache --quick --synthetic 2000`."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from redis import Redis

from bench.cache import (
    LONGITUDE_STEP,
    cache_rows,
    clear_cache,
    distinct_stream,
    ideal_hit_rate,
    rows_between,
    summarize,
    targets,
    zipf_indices,
)
from bench.common import feature_records, servable_rows
from bench.report_cache import cache_section
from serving.ports import free_port
from serving.prediction.cache import CacheMetrics, row_digest
from valuation.model_runtime.schema import FEATURES
from valuation.synthetic import generate_frame


def test_the_zipf_stream_repeats_popular_rows_as_the_exponent_says():
    indices = zipf_indices(500, 20_000, 1.1)
    assert np.array_equal(indices, zipf_indices(500, 20_000, 1.1))  # seeded: the same stream each run
    counts = np.bincount(indices, minlength=500)
    harmonic = (np.arange(1, 501, dtype=float) ** -1.1).sum()
    assert counts.max() / 20_000 == pytest.approx(1 / harmonic, rel=0.1)  # rank 1's share
    assert ideal_hit_rate(indices, 20_000) == pytest.approx(1 - len(np.unique(indices)) / 20_000)
    assert ideal_hit_rate([3, 3, 4, 3], 4) == 0.5 and ideal_hit_rate([3, 3], 0) is None
    flatter = zipf_indices(500, 20_000, 0.5)
    assert ideal_hit_rate(flatter, 20_000) < ideal_hit_rate(indices, 20_000)


def test_the_distinct_stream_never_repeats_a_row_as_the_cache_keys_it():
    rows = servable_rows(generate_frame(300, seed=3))[list(FEATURES)].drop_duplicates()
    stream = distinct_stream(rows, 1000)
    records = feature_records(stream)
    assert len(records) == 1000
    assert len({row_digest(r) for r in records}) == 1000
    assert len(servable_rows(stream)) == 1000
    moved = stream["longitude"].iloc[len(rows)] - rows["longitude"].iloc[0]
    assert moved == pytest.approx(LONGITUDE_STEP)
    assert stream.drop(columns="longitude").iloc[len(rows)].equals(rows.drop(columns="longitude").iloc[0])


def test_hits_come_from_the_proxys_cache_counter_on_a_real_metrics_endpoint():
    registry = CollectorRegistry()
    metrics = CacheMetrics(registry)  # the proxy's own counter, so a renamed metric fails here
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        before = cache_rows(url)
        metrics.rows.labels("hit").inc(30)
        metrics.rows.labels("miss").inc(10)
        after = cache_rows(url)
        assert rows_between(before, after) == {"hit": 30, "miss": 10, "bypass": 0, "skipped": 0,
                                               "hit_rate": 0.75}
        metrics.rows.labels("skipped").inc(40)  # rows not looked up count as not answered by it
        assert rows_between(after, cache_rows(url))["hit_rate"] == 0.0
        assert rows_between(before, cache_rows(url))["hit_rate"] == 30 / 80
        empty = CollectorRegistry()
        other = free_port()
        server2, thread2 = start_http_server(other, addr="127.0.0.1", registry=empty)
        try:
            # A build without the cache: no such counter.
            assert cache_rows(f"http://127.0.0.1:{other}/metrics") is None
        finally:
            server2.shutdown()
            thread2.join(timeout=5)
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert cache_rows(url) is None  # nothing answers: no figure rather than a made-up one
    assert rows_between(None, after)["hit_rate"] is None


def test_emptying_the_cache_deletes_its_keys_and_nothing_else():
    prefix = f"test-bench-cache-{uuid.uuid4().hex[:8]}"
    client = Redis(host="127.0.0.1", port=6379)
    other = f"{prefix}-other:kept"
    try:
        client.mset({f"{prefix}:model:1:{i}": "1.0" for i in range(2500)})
        client.set(other, "1")
        assert clear_cache(6379, prefix) == 2500
        assert not list(client.scan_iter(match=f"{prefix}:*")) and client.get(other) == b"1"
        assert clear_cache(None, prefix) == 0  # no Redis of its own: nothing to empty
    finally:
        client.delete(other)
        client.close()


def _run(rps: float, hit_rate: float | None, errors: int = 0, cycle: int = 0, bypass: int = 0) -> dict:
    return {"requests_per_s": rps, "p50_ms": 10.0, "server_cpu_ms_per_request": 2.0, "errors": errors,
            "hit_rate": hit_rate, "ideal_hit_rate": hit_rate, "bypass": bypass, "max_cycle": cycle}


def test_the_summary_takes_medians_and_the_target_holds_only_within_five_percent_on_distinct_rows():
    runs = {
        "cache_on": {"zipf": {"8": [_run(900, 0.7), _run(1000, 0.72), _run(1100, 0.71)]},
                     "distinct": {"8": [_run(480, 0.0), _run(490, 0.0), _run(470, 0.0, errors=1)]}},
        "cache_off": {"zipf": {"8": [_run(500, None), _run(505, None), _run(495, None)]},
                      "distinct": {"8": [_run(500, None), _run(500, None), _run(500, None)]}},
    }
    summary = summarize(runs, (8,))
    assert summary["zipf"]["8"]["ratio"] == pytest.approx(1000 / 500)
    assert summary["zipf"]["8"]["hit_rate"] == pytest.approx(0.71)
    assert summary["distinct"]["8"]["ratio"] == pytest.approx(480 / 500)
    assert summary["distinct"]["8"]["errors"] == 1
    verdict = targets(summary)
    assert verdict["met"] is True and verdict["errors_total"] == 1
    runs["cache_on"]["distinct"]["8"] = [_run(470, 0.0, cycle=1, bypass=4)] * 3
    worse = summarize(runs, (8,))
    assert targets(worse)["met"] is False  # 470 / 500 = 0.94 < 0.95

    result = {"started_at": "2026-12-02T19:00:00+00:00", "load_avg_1m_at_start": 3.0, "machine": {"cores": 2},
              "data": "synthetic (valuation.synthetic)", "quick": True, "distinct_rows": 500,
              "plan": {"rounds": 3, "duration_s": 20, "stream_rows": 120_000, "zipf_s": 1.1},
              "summary": worse, "targets": targets(worse)}
    text = cache_section(result)
    assert "| Zipf (repeated rows) | 8 | 500 | 1,000 | 2.00 | 71.0 % | 71.0 % |" in text
    assert "| distinct rows | 8 | 500 | 470 | 0.94 | 0.0 % |" in text
    assert "0.94 at concurrency 8 → **not met**" in text
    assert "started a stream over within a run (distinct c=8)" in text
    assert "12 lookups bypassed the cache" in text
    assert "quick smoke run" in text
    assert cache_section(None).endswith("_Not measured yet: run `python -m bench.cache`._")
