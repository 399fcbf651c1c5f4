"""Batches: rows/s and latency for 1 to 10,000 rows per request through the proxy, straight to the
model server, and in-process `pyfunc.predict` on the same rows.

Requests are sent one after another (concurrency 1) by a keep-alive httpx client with the bodies
serialized beforehand, so the time is the server's plus the loopback transfer. Each request of a
size carries different rows (a sliding window over distinct rows of test.csv, then train.csv).

    python -m bench.batches [--data-dir DIR] [--quick] [--synthetic ROWS]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

from bench.common import (
    BenchError,
    data_paths,
    distinct_rows,
    feature_records,
    latency_summary,
    load_tables,
    parser,
    progress,
    ratio,
    results_dir,
    start_stamp,
    write_result,
)
from bench.loadgen import INPUTS_FORMAT, PROXY_FORMAT, request_body
from bench.processes import ProcessGroup, run_part
from bench.project_model import tracking_store, train_project_model
from bench.stack_runner import start_stack

RESULT_NAME = "batches"
TARGET_SHARE_AT_1000 = 0.5  # proxy rows/s at 1,000 rows >= half of in-process pyfunc.predict


@dataclass(frozen=True)
class BatchPlan:
    sizes: tuple[int, ...]
    requests: dict[int, int]  # requests timed per size
    warmup: int

    @classmethod
    def for_args(cls, args: Any) -> BatchPlan:
        if args.quick:
            return cls((1, 10, 100, 1000), {1: 20, 10: 20, 100: 10, 1000: 4}, 2)
        return cls((1, 10, 100, 1000, 10000), {1: 300, 10: 300, 100: 100, 1000: 30, 10000: 8}, 3)


def row_pool(test: pd.DataFrame, train: pd.DataFrame, needed: int) -> list[dict[str, Any]]:
    """Distinct rows, test table first, enough for the largest batch."""
    pool = distinct_rows(pd.concat([distinct_rows(test), distinct_rows(train)], ignore_index=True))
    if len(pool) < needed:
        raise BenchError(f"only {len(pool)} distinct rows available; the largest batch needs {needed}")
    return feature_records(pool)


def windows(records: Sequence[dict[str, Any]], size: int, count: int) -> list[list[dict[str, Any]]]:
    """`count` batches of `size` rows, each starting where the previous one ended (wrapping)."""
    out, start = [], 0
    for _ in range(count):
        if start + size > len(records):
            start = 0
        out.append(list(records[start:start + size]))
        start += size
    return out


def time_http(client: httpx.Client, url: str, bodies: Sequence[bytes], headers: dict[str, str],
              expected_rows: int, warmup: int) -> list[float]:
    for body in bodies[:warmup]:
        _post(client, url, body, headers, expected_rows)
    seconds = []
    for body in bodies[warmup:]:
        started = time.perf_counter()
        answer = client.post(url, content=body, headers=headers)
        elapsed = time.perf_counter() - started
        _check(answer, url, expected_rows)
        seconds.append(elapsed)
    return seconds


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], expected_rows: int) -> None:
    _check(client.post(url, content=body, headers=headers), url, expected_rows)


def _check(answer: httpx.Response, url: str, expected_rows: int) -> None:
    if answer.status_code != 200:
        raise BenchError(f"{url} answered {answer.status_code}: {answer.text[:500]}")
    predictions = orjson.loads(answer.content).get("predictions")
    if not isinstance(predictions, list) or len(predictions) != expected_rows:
        raise BenchError(f"{url}: expected {expected_rows} predictions")


def time_in_process(pyfunc: Any, batches: Sequence[list[dict[str, Any]]], warmup: int) -> list[float]:
    for batch in batches[:warmup]:
        pyfunc.predict(batch)
    seconds = []
    for batch in batches[warmup:]:
        started = time.perf_counter()
        pyfunc.predict(batch)
        seconds.append(time.perf_counter() - started)
    return seconds


def summarize(size: int, seconds: Sequence[float], body_bytes: float | None = None) -> dict[str, Any]:
    out = latency_summary(seconds)
    out["rows_per_s"] = size / float(np.median(seconds))
    if body_bytes is not None:
        out["body_kb"] = body_bytes / 1024
    return out


def run(args: Any) -> dict[str, Any]:
    import mlflow

    plan = BatchPlan.for_args(args)
    stamp = start_stamp()
    out_dir = results_dir(args)
    results: dict[str, dict[str, Any]] = {"proxy": {}, "direct": {}, "in_process": {}}
    with tempfile.TemporaryDirectory(prefix="bench-batches-") as tmp_name, \
            tracking_store(Path(tmp_name)) as tracking_uri, \
            ProcessGroup(Path(tmp_name) / "logs") as group:
        tmp = Path(tmp_name)
        paths = data_paths(args, tmp)
        train, test = load_tables(paths)
        records = row_pool(test, train, max(plan.sizes))
        result = train_project_model(paths)
        pyfunc = mlflow.pyfunc.load_model(result.model_uri)
        from valuation.config import load_config

        model_name = load_config([]).registry.model_name
        stack = start_stack(group, tmp, tracking_uri)
        proxy_headers = {"Content-Type": "application/json", "X-API-Key": stack.api_key}
        json_headers = {"Content-Type": "application/json"}
        with httpx.Client(timeout=120.0) as client:
            for size in plan.sizes:
                batches = windows(records, size, plan.requests[size] + plan.warmup)
                proxy_bodies = [orjson.dumps(request_body(b, PROXY_FORMAT, model_name)) for b in batches]
                direct_bodies = [orjson.dumps(request_body(b, INPUTS_FORMAT)) for b in batches]
                rows = [[dict(row) for row in b] for b in batches]  # the pyfunc's declared input
                # Interleave the three ways per size so background load hits them alike.
                proxy_s = time_http(client, f"{stack.proxy_url}/predict", proxy_bodies, proxy_headers,
                                    size, plan.warmup)
                direct_s = time_http(client, f"{stack.model_server_url}/invocations", direct_bodies,
                                     json_headers, size, plan.warmup)
                local_s = time_in_process(pyfunc, rows, plan.warmup)
                results["proxy"][str(size)] = summarize(size, proxy_s,
                                                        np.mean([len(b) for b in proxy_bodies]))
                results["direct"][str(size)] = summarize(size, direct_s,
                                                         np.mean([len(b) for b in direct_bodies]))
                results["in_process"][str(size)] = summarize(size, local_s)
                progress(f"batch {size:>6}: proxy {results['proxy'][str(size)]['rows_per_s']:10.0f} rows/s, "
                         f"direct {results['direct'][str(size)]['rows_per_s']:10.0f} rows/s, "
                         f"in-process {results['in_process'][str(size)]['rows_per_s']:10.0f} rows/s")

    shares = {size: ratio(results["proxy"][size]["rows_per_s"], results["in_process"][size]["rows_per_s"])
              for size in results["proxy"]}
    share_1000 = shares.get("1000")
    data = {
        **stamp,
        "data": paths.describe(),
        "plan": {"sizes": list(plan.sizes), "requests": {str(k): v for k, v in plan.requests.items()},
                 "warmup": plan.warmup},
        "results": results,
        "proxy_share_of_in_process": shares,
        "targets": {"share_at_1000": share_1000,
                    "share_at_1000_target_met": bool(share_1000 is not None
                                                     and share_1000 >= TARGET_SHARE_AT_1000)},
    }
    path = write_result(out_dir, RESULT_NAME, data, args.quick)
    progress(f"wrote {path}")
    return data


def main() -> None:
    run_part(run, parser(__doc__.split("\n\n")[0]))


if __name__ == "__main__":
    main()
