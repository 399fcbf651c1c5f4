"""Prices of repeated rows, answered from Redis.

Portals show the same listing again and again; its price for a given model version never changes.
A row's key is `<prefix>:<model name>:<version>:<SHA-256 of the row's RFC 8785 canonical JSON>`
(the `rfc8785` library: sorted keys, one spelling per number, so `6` and `6.0` are one row). The
version in the key is the one that serves the request, so a moved alias, a degraded fallback or a
pinned version can never be answered with another version's price.

Only prices a model server returned for validated rows are stored, with a TTL. Each Redis round
trip costs the proxy more CPU than hashing and pricing bookkeeping together, so neither reads nor
writes go one per request: a lookup that finds no read in flight sends its MGET at once (no
added latency when traffic is light); lookups arriving while one is in flight wait for it and
then share the next MGET. Stores are written behind the answer the same way: one pipeline of
SETs in flight at a time, the next carrying every price that arrived meanwhile.

Redis down: requests are priced without the cache, never refused. Each failed command is counted,
logged at most once per `unavailable_log_every_s`, and Redis is left alone for
`recheck_after_failure_s`, so an outage does not add a timeout to every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from typing import Any

import rfc8785
from omegaconf import DictConfig
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from serving.logging import get_logger
from serving.settings import PredictionCacheSettings, secret
from valuation.model_runtime.schema import FEATURES

log = get_logger("serving.prediction.cache")


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter(
            "valuation_prediction_cache_rows_total",
            "Rows looked up in the prediction cache: hit, miss, or bypass (Redis unavailable)",
            ["outcome"], registry=registry)
        self.unavailable = Counter(
            "valuation_prediction_cache_unavailable_total",
            "Prediction-cache commands that failed (Redis down or slow), by operation",
            ["operation"], registry=registry)


def open_cache_redis(config: DictConfig, settings: PredictionCacheSettings) -> Redis:
    """An asyncio client of the proxy's Redis (`redis:`; password from env REDIS_PASSWORD),
    with the cache's own short timeout: a slow cache must cost less than pricing without it."""
    return Redis(
        host=config.redis.host,
        port=int(config.redis.port),
        db=int(config.redis.db),
        password=secret("REDIS_PASSWORD"),
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        health_check_interval=int(config.redis.health_check_interval_s),
    )


def row_digest(row: dict[str, Any]) -> str:
    """SHA-256 of the row's eight features in RFC 8785 canonical JSON."""
    return hashlib.sha256(rfc8785.dumps({name: row[name] for name in FEATURES})).hexdigest()


class PredictionCache:
    def __init__(self, redis: Redis, settings: PredictionCacheSettings, metrics: CacheMetrics) -> None:
        self._redis = redis
        self._settings = settings
        self._metrics = metrics
        self._skip_until = float("-inf")
        self._logged_at = float("-inf")
        self._pending: dict[str, bytes] = {}  # prices waiting for the next pipeline of SETs
        self._lookups: list[tuple[list[str], asyncio.Future[list[Any]]]] = []  # for the next MGET
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading = False
        self._writing = False

    def keys(self, model_name: str, version: str, rows: Sequence[dict[str, Any]]) -> list[str]:
        prefix = f"{self._settings.key_prefix}:{model_name}:{version}:"
        return [prefix + row_digest(row) for row in rows]

    async def lookup(self, keys: list[str]) -> list[float | None]:
        """The cached price of each key, None where there is none (or Redis did not answer)."""
        if time.monotonic() < self._skip_until:
            self._metrics.rows.labels("bypass").inc(len(keys))
            return [None] * len(keys)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._lookups.append((keys, future))
        if not self._reading:
            self._reading = True
            self._spawn(self._read())
        values = await future
        if values is None:  # Redis did not answer (counted and logged by _read)
            self._metrics.rows.labels("bypass").inc(len(keys))
            return [None] * len(keys)
        prices = [float(value) if value is not None else None for value in values]
        hits = sum(price is not None for price in prices)
        if hits:
            self._metrics.rows.labels("hit").inc(hits)
        if hits < len(prices):
            self._metrics.rows.labels("miss").inc(len(prices) - hits)
        return prices

    def store(self, keys: Sequence[str], prices: Sequence[float]) -> None:
        """Queue the prices for writing, behind the answer (see the module doc)."""
        if time.monotonic() < self._skip_until:
            return
        self._pending.update((key, repr(price).encode()) for key, price in zip(keys, prices, strict=True))
        if not self._writing:
            self._writing = True
            self._spawn(self._write())

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self) -> None:
        """MGETs until no lookup waits: each carries every lookup queued while the last was out."""
        try:
            while self._lookups:
                waiting, self._lookups = self._lookups, []
                try:
                    values = await self._redis.mget([key for keys, _ in waiting for key in keys])
                except (RedisError, OSError, TimeoutError) as error:
                    self._unavailable("lookup", error)
                    values = None
                start = 0
                for keys, future in waiting:
                    if not future.done():  # its request may have been cancelled meanwhile
                        future.set_result(None if values is None else values[start:start + len(keys)])
                    start += len(keys)
        finally:
            self._reading = False
            for _, future in self._lookups:  # only if this task itself was cancelled
                if not future.done():
                    future.set_result(None)
            if self._lookups:
                self._lookups = []

    async def _write(self) -> None:
        """Pipelines of SETs until no price waits: each carries every price queued meanwhile."""
        try:
            while self._pending:
                pending, self._pending = self._pending, {}
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for key, value in pending.items():
                            pipe.set(key, value, ex=self._settings.ttl_s)
                        await pipe.execute()
                except (RedisError, OSError, TimeoutError) as error:
                    self._unavailable("store", error)
                    self._pending = {}  # Redis is left alone for recheck_after_failure_s
        finally:
            self._writing = False

    def _unavailable(self, operation: str, error: BaseException) -> None:
        now = time.monotonic()
        self._skip_until = now + self._settings.recheck_after_failure_s
        self._metrics.unavailable.labels(operation).inc()
        if now - self._logged_at >= self._settings.unavailable_log_every_s:
            self._logged_at = now
            log.error("prediction_cache_unavailable", operation=operation,
                      error=f"{type(error).__name__}: {error}",
                      effect="prices are computed without the cache until Redis answers again")

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()
