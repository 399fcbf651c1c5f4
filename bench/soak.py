"""Soak: a steady request rate through the project's proxy for minutes; errors, p99 per window, memory.

    python -m bench.soak [--data-dir DIR] [--quick] [--soak-s S] [--rate R] [--results-dir DIR]
    API_KEY=... python -m bench.soak --url http://127.0.0.1:8000 --rate R [--soak-s S]   # a running stack

Part of `make bench`, after `serving`: starts the stack as the serving part does (without the
anchor), reads the highest single-row throughput the serving part measured through the proxy
(`serving.json` beside this part's result; measured here with a short wrk run when absent) and
sends 80 % of that rate for `--soak-s` seconds (default 300, `--quick` 30), one distinct test row per
request, after a short warm-up. Open loop: requests are issued on schedule whether or not earlier
ones have finished, so a slowing server shows as latency (a request waits for a free connection on
the client's clock), not as a lower rate. Every 10-second window gets its p50/p99 and errors by
status; the RSS of the proxy and of the model server's process tree is sampled throughout.

With `--url` the load goes to a stack that is already running (loopback only; the key from env
API_KEY, never the command line; `--proxy-pid`/`--model-server-pid` to sample their memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from bench.common import (
    BenchError,
    parser,
    progress,
    ratio,
    read_result,
    results_dir,
    start_stamp,
    write_result,
)
from bench.loadgen import proxy_bodies, unmark
from bench.processes import sigterm_as_interrupt
from bench.resources import RssSampler, stack_rss_probes

RESULT_NAME = "soak"
LOAD_FRACTION = 0.8  # of the maximum single-row throughput measured through the proxy
DEFAULT_SOAK_S = 300.0
QUICK_SOAK_S = 30.0
MAX_SOAK_S = 3600.0
WINDOW_S = 10.0
P99_STEADY_MAX_RATIO = 2.0  # last window's p99 over the first window's: "steady" up to this
RATE_HELD_MIN = 0.95  # achieved / target rate below this means the client or server fell behind
REQUEST_TIMEOUT_S = 10.0  # the proxy's own forward timeout is 10 s (conf/serving.yaml)
BACKLOG_S = 5.0  # requests waiting for a connection beyond this many seconds of load are dropped
PROBE_CONCURRENCY = (8, 32)  # wrk levels tried when serving.json is absent
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
PROCESSES = {"proxy_mb": "proxy", "model_server_mb": "model_server"}


@dataclass(frozen=True)
class SoakPlan:
    duration_s: float
    warmup_s: float
    window_s: float
    rss_interval_s: float
    probe_s: float  # per wrk level when the maximum throughput must be measured here

    @classmethod
    def for_args(cls, args: Any) -> SoakPlan:
        duration = args.soak_s or (QUICK_SOAK_S if args.quick else DEFAULT_SOAK_S)
        if not 0 < duration <= MAX_SOAK_S:
            raise BenchError(f"--soak-s must be in (0, {MAX_SOAK_S:.0f}]")
        if args.quick:
            return cls(duration, 3.0, WINDOW_S, 1.0, 3.0)
        return cls(duration, 10.0, WINDOW_S, 2.0, 10.0)


# --- the client ------------------------------------------------------------------------------------
# A minimal HTTP/1.1 keep-alive client on asyncio streams: it costs a fraction of what an httpx
# request costs in CPU, which matters when client and servers share two cores. Its own CPU share
# is measured and reported.

Outcome = tuple[float, float, str]  # (issued at, seconds since the measured start; latency ms; status)


class ProtocolError(Exception):
    """The server's answer was not the HTTP/1.1 this client reads (Content-Length bodies only)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    path: str
    api_key: str | None

    @classmethod
    def from_url(cls, url: str, api_key: str | None) -> Endpoint:
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK_HOSTS:
            raise BenchError(f"the soak only targets loopback, not {parts.hostname!r}")
        return cls(parts.hostname, parts.port or 80, parts.path or "/predict", api_key)

    def request(self, body: str) -> bytes:
        payload = body.encode()
        key = f"X-API-Key: {self.api_key}\r\n" if self.api_key else ""
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{key}"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
        return head.encode() + payload


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes) -> tuple[int, bool]:
    """Send one request and read its whole answer; (status, whether the connection stays open)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise ProtocolError(f"bad status line {lines[0][:80]!r}") from None
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" not in headers:
        raise ProtocolError("an answer without Content-Length")
    await reader.readexactly(int(headers["content-length"]))
    return status, headers.get("connection", "").lower() != "close"


async def drive(endpoint: Endpoint, bodies: Sequence[str], rate: float, duration_s: float,
                connections: int, first_request: int = 0,
                timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[list[Outcome], int]:
    """Issue `rate` requests/s for `duration_s` over at most `connections` keep-alive connections.

    Request i carries body i mod len(bodies), unmarked for pass i // len(bodies), so no two requests
    repeat a body (counting from `first_request`, which a later call continues from). Returns every
    outcome and the index after the last request issued.
    """
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    outcomes: list[Outcome] = []
    backlog = max(connections, int(rate * BACKLOG_S))
    loop = asyncio.get_running_loop()
    begin = loop.time()

    async def connection() -> None:
        reader = writer = None
        try:
            while True:
                issued, request = await queue.get()
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(
                            asyncio.open_connection(endpoint.host, endpoint.port), timeout_s)
                    status, keep = await asyncio.wait_for(exchange(reader, writer, request), timeout_s)
                    outcomes.append((issued - begin, (loop.time() - issued) * 1000, str(status)))
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError,
                        ValueError, TimeoutError) as error:
                    outcomes.append((issued - begin, (loop.time() - issued) * 1000, type(error).__name__))
                    keep = False
                finally:
                    queue.task_done()
                if not keep and writer is not None:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    index = first_request
    issued_count = 0
    try:
        while True:
            due = begin + issued_count / rate
            if due - begin >= duration_s:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            if queue.qsize() >= backlog:  # the server is this far behind: do not queue without end
                outcomes.append((now - begin, 0.0, "client_backlog"))
            else:
                cycle, position = divmod(index, len(bodies))
                queue.put_nowait((now, endpoint.request(unmark(bodies[position], cycle))))
            index += 1
            issued_count += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.join(), timeout_s * 2)
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return outcomes, index


# --- figures (pure) -------------------------------------------------------------------------------

def window_stats(outcomes: Sequence[Outcome], window_s: float, duration_s: float) -> list[dict[str, Any]]:
    """Per window of issue time: requests, errors by status, req/s answered 200, and p50/p99/max of
    the 200 answers (a fast 503 must not make latency look better)."""
    count = max(1, math.ceil(duration_s / window_s - 1e-9))
    latencies: list[list[float]] = [[] for _ in range(count)]
    statuses: list[Counter[str]] = [Counter() for _ in range(count)]
    for issued, latency, status in outcomes:
        if not 0 <= issued < duration_s:
            continue
        index = min(int(issued // window_s), count - 1)
        statuses[index][status] += 1
        if status == "200":
            latencies[index].append(latency)
    windows = []
    for index in range(count):
        start, end = index * window_s, min((index + 1) * window_s, duration_s)
        values = np.asarray(latencies[index], dtype=float)
        ok = int(values.size)
        windows.append({
            "start_s": start, "end_s": end, "requests": sum(statuses[index].values()), "ok": ok,
            "ok_per_s": ok / (end - start),
            "errors": {k: v for k, v in sorted(statuses[index].items()) if k != "200"},
            "p50_ms": float(np.percentile(values, 50)) if ok else None,
            "p99_ms": float(np.percentile(values, 99)) if ok else None,
            "max_ms": float(values.max()) if ok else None,
        })
    return windows


def steadiness(windows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How p99 moved over the run: last window over first, highest over lowest window."""
    p99s = [w["p99_ms"] for w in windows if w.get("p99_ms") is not None]
    if not p99s:
        return {"windows": 0, "steady": False}
    last_over_first = ratio(p99s[-1], p99s[0])
    return {
        "windows": len(p99s), "p99_first_ms": p99s[0], "p99_last_ms": p99s[-1],
        "p99_min_ms": min(p99s), "p99_max_ms": max(p99s), "p99_median_ms": float(np.median(p99s)),
        "last_over_first": last_over_first, "max_over_min": ratio(max(p99s), min(p99s)),
        "steady": last_over_first is not None and last_over_first <= P99_STEADY_MAX_RATIO,
    }


def errors_by_status(outcomes: Sequence[Outcome], duration_s: float) -> dict[str, int]:
    counts = Counter(status for issued, _, status in outcomes if 0 <= issued < duration_s and status != "200")
    return dict(sorted(counts.items()))


def rss_summary(samples: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """Start, end and max RSS per process, and whether it stayed flat (the serving part's rule)."""
    from bench.serving import flatness

    out: dict[str, dict[str, Any]] = {}
    for key, name in PROCESSES.items():
        values = [s[key] for s in samples if key in s]
        if values:
            out[name] = {"start_mb": values[0], "end_mb": values[-1], **flatness(values),
                         "max_mb": max(values)}
    return out


def max_proxy_throughput(serving: Mapping[str, Any] | None, target: str = "proxy") -> dict[str, Any] | None:
    """The proxy's best single-row requests/s in a serving (or throughput) result, with its
    concurrency; `target` names the result's proxy variant."""
    levels = ((serving or {}).get("results") or {}).get(target) or {}
    if not levels:
        return None
    connections, best = max(levels.items(), key=lambda item: item[1]["requests_per_s"])
    return {"requests_per_s": best["requests_per_s"], "concurrency": int(connections),
            "errors": best.get("errors"), "measured_at": serving.get("started_at"),
            "quick": bool(serving.get("quick"))}


def summarize(outcomes: Sequence[Outcome], plan: SoakPlan, target_rate: float,
              samples: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Everything soak.json says about one measured run."""
    windows = window_stats(outcomes, plan.window_s, plan.duration_s)
    errors = errors_by_status(outcomes, plan.duration_s)
    ok = sum(w["ok"] for w in windows)
    p99 = steadiness(windows)
    rss = rss_summary(samples)
    achieved = ok / plan.duration_s
    return {
        "target_rate_per_s": target_rate,
        "achieved_rate_per_s": achieved,
        "issued": sum(w["requests"] for w in windows),
        "ok": ok,
        "errors_total": sum(errors.values()),
        "errors_by_status": errors,
        "windows": windows,
        "p99": p99,
        "rss": rss,
        "rss_samples": list(samples),
        "verdict": {
            "zero_errors": not errors,
            "p99_steady": p99["steady"],
            "memory_flat": bool(rss) and all(r["flat"] for r in rss.values()),
            "rate_held": achieved >= RATE_HELD_MIN * target_rate,
        },
    }


# --- the part --------------------------------------------------------------------------------------

def soak(endpoint: Endpoint, bodies: Sequence[str], rate: float, connections: int, plan: SoakPlan,
         probes: Mapping[str, Callable[[], float]]) -> dict[str, Any]:
    """Warm up, then the measured run with RSS sampled; the summary with the client's CPU share."""
    progress(f"soak: {rate:.0f} req/s over {connections} connections, {plan.warmup_s:.0f} s warm-up "
             f"then {plan.duration_s:.0f} s measured, windows of {plan.window_s:.0f} s")
    _, next_request = asyncio.run(drive(endpoint, bodies, rate, plan.warmup_s, connections))
    cpu_before, wall_before = time.process_time(), time.monotonic()
    with RssSampler(probes, plan.rss_interval_s) as sampler:
        outcomes, _ = asyncio.run(drive(endpoint, bodies, rate, plan.duration_s, connections, next_request))
    client_cpu = time.process_time() - cpu_before
    out = summarize(outcomes, plan, rate, sampler.samples)
    out["connections"] = connections
    out["client_cpu_cores"] = client_cpu / (time.monotonic() - wall_before)
    for window in out["windows"]:
        progress(f"  {window['start_s']:4.0f}-{window['end_s']:<4.0f} s  {window['ok_per_s']:7.1f} req/s  "
                 f"p50 {window['p50_ms'] or 0:7.2f} ms  p99 {window['p99_ms'] or 0:7.2f} ms  "
                 f"errors {sum(window['errors'].values())}")
    verdict, p99 = out["verdict"], out["p99"]
    by_status = f" {out['errors_by_status']}" if out["errors_by_status"] else ""
    progress(f"soak: {out['achieved_rate_per_s']:.1f} of {rate:.1f} req/s, {out['errors_total']} errors"
             f"{by_status}, p99 last/first {p99.get('last_over_first') or 0:.2f} "
             f"(max/min {p99.get('max_over_min') or 0:.2f}), memory "
             f"{'flat' if verdict['memory_flat'] else 'NOT flat'}, "
             f"client CPU {out['client_cpu_cores']:.2f} cores")
    return out


def find_max_throughput(args: Any, setup: Any, plan: SoakPlan) -> dict[str, Any]:
    """The throughput part's production proxy (the newest maximum: rate limit and audit on, with
    batching when measured), else the serving part's figure from the results dir, else a short wrk
    measurement of this stack."""
    throughput = read_result(results_dir(args), "throughput")
    if throughput:
        variant = (throughput.get("targets") or {}).get("proxy_measured", "proxy")
        found = max_proxy_throughput(throughput, variant)
        if found:
            progress(f"maximum single-row throughput via the proxy ({variant}) from throughput.json: "
                     f"{found['requests_per_s']:.1f} req/s at c={found['concurrency']}")
            return {**found, "source": f"throughput.json ({variant})"}
    found = max_proxy_throughput(read_result(results_dir(args), "serving"))
    if found:
        progress(f"maximum single-row throughput via the proxy from serving.json: "
                 f"{found['requests_per_s']:.1f} req/s at c={found['concurrency']}")
        return {**found, "source": "serving.json"}
    from bench.loadgen import require_wrk
    from bench.serving import ServingPlan, measure

    require_wrk()
    progress("no serving.json beside this result: measuring the proxy's maximum with wrk")
    probe = ServingPlan(PROBE_CONCURRENCY, plan.probe_s, plan.probe_s / 3, 0, 0, 0)
    levels = {str(c): measure(setup.targets["proxy"], c, probe) for c in PROBE_CONCURRENCY}
    found = max_proxy_throughput({"results": {"proxy": levels}, "quick": args.quick})
    return {**found, "source": f"measured here (wrk, {plan.probe_s:.0f} s per level)"}


def soak_bodies(args: Any, workdir: Path) -> tuple[list[str], str]:
    """One single-row proxy body per distinct test row (for --url; the part gets them from its setup)."""
    bodies, paths = proxy_bodies(args, workdir)
    return bodies, paths.describe()


def run(args: Any) -> dict[str, Any]:
    """Start the stack (as the serving part does), find 80 % of the maximum rate, soak, write soak.json."""
    from bench.serving import serving_setup
    from bench.throughput import NEVER_REFUSING_LIMIT

    plan = SoakPlan.for_args(args)
    stamp = start_stamp()
    # As production runs: a per-key limit is checked on every request (set high: never refuses).
    os.environ.setdefault("RATE_LIMIT_PER_KEY", NEVER_REFUSING_LIMIT)
    with serving_setup(args, with_anchor=False) as setup:
        maximum = find_max_throughput(args, setup, plan)
        rate = args.rate or LOAD_FRACTION * maximum["requests_per_s"]
        proxy = setup.targets["proxy"]
        bodies = proxy.bodies.read_text().splitlines()
        result = soak(Endpoint.from_url(proxy.url, proxy.api_key), bodies, rate,
                      max(8, maximum["concurrency"]), plan,
                      stack_rss_probes(setup.stack.proxy_pid, setup.stack.model_server_pid))
    data = {**stamp, "data": setup.data, "distinct_bodies": setup.distinct_bodies,
            "project": setup.project, "plan": asdict(plan), "load_fraction": LOAD_FRACTION,
            "max_throughput": maximum, "rate_from_flag": bool(args.rate),
            "rate_limit_per_key": os.environ.get("RATE_LIMIT_PER_KEY") or None, **result}
    path = write_result(results_dir(args), RESULT_NAME, data, args.quick)
    progress(f"wrote {path}")
    return data


def run_against(args: Any) -> dict[str, Any]:
    """Soak a stack that is already running at --url (no throughput lookup: --rate is required)."""
    if not args.rate:
        raise BenchError("--url needs --rate (about 80 % of the maximum `make bench` measured)")
    plan = SoakPlan.for_args(args)
    endpoint = Endpoint.from_url(f"{args.url.rstrip('/')}/predict", os.environ.get("API_KEY"))
    stamp = start_stamp()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        bodies, data = soak_bodies(args, Path(tmp))
    result = soak(endpoint, bodies, args.rate, args.connections, plan,
                  stack_rss_probes(args.proxy_pid, args.model_server_pid))
    out = {**stamp, "data": data, "url": args.url, "plan": asdict(plan), "rate_from_flag": True, **result}
    path = write_result(results_dir(args), RESULT_NAME, out, args.quick)
    progress(f"wrote {path}")
    return out


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--soak-s", type=float, default=None,
                     help=f"measured seconds (default {DEFAULT_SOAK_S:.0f}; --quick {QUICK_SOAK_S:.0f})")
    cli.add_argument("--rate", type=float, default=None,
                     help=f"requests/s (default {LOAD_FRACTION * 100:.0f} %% of the measured maximum)")
    cli.add_argument("--url", default=None, help="soak this running stack's proxy instead (loopback only)")
    cli.add_argument("--connections", type=int, default=32, help="with --url: keep-alive connections")
    cli.add_argument("--proxy-pid", type=int, default=None, help="with --url: sample this process's RSS")
    cli.add_argument("--model-server-pid", type=int, default=None,
                     help="with --url: sample this process tree's RSS")
    args = cli.parse_args()
    with sigterm_as_interrupt():
        if args.url:
            run_against(args)
        else:
            run(args)


if __name__ == "__main__":
    main()
