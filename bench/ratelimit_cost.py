"""What one rate-limit check costs the proxy: the check as it was (a MULTI/INCR/EXPIRE/EXEC
pipeline on the sync client, run through the thread pool) against the check as it is
(`RateLimiter.hit_async`: one EVALSHA of a Lua script on an asyncio client, on the event loop),
without and with leases (one round trip per lease of up to 32 units for a large limit).

Both count against a real Redis (the benchmark stack's own redis-server) under a key prefix of
their own; each is timed sequentially and with 32 checks in flight, in alternating rounds so
background load hits both alike. CPU is this process's (user + system), per check.

    python -m bench.ratelimit_cost [--redis-port 6379] [--checks 2000]
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis import Redis
from starlette.concurrency import run_in_threadpool

from bench.common import parser, progress, results_dir, start_stamp, write_result
from bench.processes import run_part
from serving.ratelimit import Rate, RateLimiter

RESULT_NAME = "ratelimit_cost"

NEVER_REFUSES = Rate(1_000_000_000, 1)
LEASES = {"lease_fraction": 0.01, "max_lease": 32}  # conf/serving.yaml's defaults


def multi_exec_check(redis: Redis, counter: str, window_s: int) -> int:
    """The check before the Lua script: one MULTI/EXEC pipeline of INCR and EXPIRE."""
    pipe = redis.pipeline(transaction=True)
    pipe.incr(counter)
    pipe.expire(counter, window_s + 1)
    count, _ = pipe.execute()
    return int(count)


async def _timed(check: Callable[[], Awaitable[Any]], checks: int, in_flight: int) -> dict[str, float]:
    async def worker(share: int) -> None:
        for _ in range(share):
            await check()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(checks // in_flight) for _ in range(in_flight)))
    done = (checks // in_flight) * in_flight
    return {"cpu_us_per_check": 1e6 * (time.process_time() - cpu) / done,
            "wall_us_per_check": 1e6 * (time.perf_counter() - wall) / done, "checks": done}


async def _compare(port: int, checks: int, rounds: int) -> dict[str, Any]:
    prefix = f"bench-rl-{uuid.uuid4().hex[:8]}"
    redis = Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)
    limiter = RateLimiter(redis, NEVER_REFUSES, prefix=prefix, recheck_after_failure_s=2)
    leased = RateLimiter(redis, NEVER_REFUSES, prefix=prefix, recheck_after_failure_s=2,
                         **LEASES)
    ways: dict[str, Callable[[], Awaitable[Any]]] = {
        "multi_exec_in_thread_pool": lambda: run_in_threadpool(
            multi_exec_check, redis, f"{prefix}:old:{int(time.time())}", 1),
        "lua_async": lambda: limiter.hit_async("new", "predict"),
        "lua_async_leased": lambda: leased.hit_async("leased", "predict"),
    }
    results: dict[str, dict[str, list[dict[str, float]]]] = {w: {"1": [], "32": []} for w in ways}
    try:
        for way in ways.values():  # connections and the script's SHA, before any timing
            await way()
        for index in range(rounds):
            order = list(ways.items()) if index % 2 == 0 else list(ways.items())[::-1]
            for in_flight in (1, 32):
                for name, way in order:
                    results[name][str(in_flight)].append(await _timed(way, checks, in_flight))
    finally:
        await limiter.aclose()
        await leased.aclose()
        for key in redis.scan_iter(f"{prefix}:*"):
            redis.delete(key)
        redis.close()
    return {name: {level: _median_of(runs) for level, runs in levels.items()}
            for name, levels in results.items()}


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: sorted(run[key] for run in runs)[len(runs) // 2] for key in runs[0]}


def ratelimit_cost(redis_port: int, checks: int = 2000, rounds: int = 3) -> dict[str, Any]:
    """Median CPU and wall microseconds per check of each way, sequential ("1") and 32 in flight."""
    return asyncio.run(_compare(redis_port, checks, rounds))


def run(args: Any) -> dict[str, Any]:
    stamp = start_stamp()
    progress(f"rate-limit check: {args.checks} checks per way and level, Redis on port {args.redis_port}")
    data = {**stamp, "redis_port": args.redis_port, "checks": args.checks, "leases": LEASES,
            "ways": ratelimit_cost(args.redis_port, args.checks)}
    path = write_result(results_dir(args), RESULT_NAME, data, args.quick)
    progress(f"wrote {path}")
    return data


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--redis-port", type=int, default=6379, help="a Redis on 127.0.0.1 (keys are removed)")
    cli.add_argument("--checks", type=int, default=2000, help="checks per way, level and round")
    run_part(run, cli)


if __name__ == "__main__":
    main()
