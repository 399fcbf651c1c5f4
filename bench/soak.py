"""Soak test of a running proxy: a steady request rate for a bounded time, on loopback only.

    python -m bench.soak --url http://127.0.0.1:8000 --key "$KEY" --rate 200 --duration 300 \
        [--pid PROXY_PID --pid MODEL_SERVER_PID] [--out bench/results/soak.json]

Sends the specification's /predict body at `--rate` requests per second (open loop: requests are
started on schedule whether or not earlier ones finished, so a slow server shows up as latency,
not as a lower rate) from `--concurrency` workers, for `--duration` seconds (at most 1 hour).
Every `--interval` seconds it records count, errors by status, p50/p99 latency and the RSS of
each `--pid`; at the end it says whether errors were zero, p99 stayed within 2x of the first
interval's, and memory grew less than 10 %. Run it at ~80 % of the maximum throughput that
`make bench` measured. Not part of the test suite (CI time is limited).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

MAX_DURATION_S = 3600
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BODY = {
    "model_name": "property_friends_best_model",
    "features": [{"type": "casa", "sector": "lo barnechea", "net_usable_area": 300.0,
                  "net_area": 500.0, "n_rooms": 6.0, "n_bathroom": 5.0,
                  "latitude": -33.3561, "longitude": -70.5072}],
}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rss_mb(pids: list[int]) -> dict[str, float | None]:
    import psutil

    sizes: dict[str, float | None] = {}
    for pid in pids:
        try:
            sizes[str(pid)] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
        except psutil.Error:
            sizes[str(pid)] = None
    return sizes


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"X-API-Key": args.key, "Content-Type": "application/json"}
    payload = json.dumps(BODY).encode()
    intervals: list[dict[str, Any]] = []
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=args.url, limits=limits, timeout=args.timeout,
                                 trust_env=False) as client:
        semaphore = asyncio.Semaphore(args.concurrency * 4)  # bounds in-flight work

        async def one() -> None:
            async with semaphore:
                started = time.perf_counter()
                try:
                    answer = await client.post("/predict", content=payload, headers=headers)
                    statuses[str(answer.status_code)] += 1
                except httpx.HTTPError as error:
                    statuses[type(error).__name__] += 1
                latencies.append((time.perf_counter() - started) * 1000)

        begin = time.monotonic()
        next_report = begin + args.interval
        tasks: set[asyncio.Task] = set()
        sent = 0
        while (now := time.monotonic()) - begin < args.duration:
            due = int((now - begin) * args.rate)
            while sent < due:
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            if now >= next_report:
                intervals.append(_interval(now - begin, latencies, statuses, args.pid))
                latencies.clear()
                statuses.clear()
                next_report += args.interval
            await asyncio.sleep(0.002)
        if tasks:
            await asyncio.wait(tasks, timeout=args.timeout + 1)
        if latencies:
            intervals.append(_interval(time.monotonic() - begin, latencies, statuses, args.pid))
    return _verdict(args, intervals)


def _interval(at: float, latencies: list[float], statuses: Counter[str], pids: list[int]) -> dict:
    errors = {k: v for k, v in statuses.items() if k != "200"}
    row = {"at_s": round(at, 1), "requests": len(latencies), "errors": errors,
           "p50_ms": _percentile(latencies, 0.50), "p99_ms": _percentile(latencies, 0.99),
           "rss_mb": _rss_mb(pids)}
    print(json.dumps(row), flush=True)
    return row


def _verdict(args: argparse.Namespace, intervals: list[dict[str, Any]]) -> dict[str, Any]:
    total = sum(i["requests"] for i in intervals)
    errors = sum(sum(i["errors"].values()) for i in intervals)
    p99s = [i["p99_ms"] for i in intervals if i["p99_ms"] is not None]
    growth = {}
    if intervals:
        for pid in map(str, args.pid):
            first, last = intervals[0]["rss_mb"].get(pid), intervals[-1]["rss_mb"].get(pid)
            growth[pid] = round((last - first) / first, 3) if first and last else None
    return {
        "url": args.url, "rate": args.rate, "duration_s": args.duration, "requests": total,
        "errors": errors,
        "p99_ms_first": p99s[0] if p99s else None, "p99_ms_max": max(p99s) if p99s else None,
        "p99_ms_median": statistics.median(p99s) if p99s else None,
        "rss_growth": growth,
        "zero_errors": errors == 0,
        "p99_steady": bool(p99s) and max(p99s) <= 2 * p99s[0],
        "memory_flat": all(g is not None and g < 0.10 for g in growth.values()),
        "intervals": intervals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="an API key with the predict role")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (max 3600)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--pid", type=int, action="append", default=[],
                        help="a process whose RSS to sample (repeatable)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if urlparse(args.url).hostname not in LOOPBACK:
        parser.error("the soak test only targets loopback (127.0.0.1/localhost)")
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S}]")
    result = asyncio.run(soak(args))
    summary = {k: v for k, v in result.items() if k != "intervals"}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
