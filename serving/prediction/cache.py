"""Prices of repeated rows, answered from Redis.

Portals show the same listing again and again; its price for a given model version never changes.
A row's key is `<prefix>:<model name>:<version>:<SHA-256 of the row's canonical JSON>`. The
canonical JSON (`canonical_row`) is equivalent to RFC 8785 on validated rows: the eight FEATURES
in their fixed order, every number written as the float it is (so `6` and `6.0` are one row, and
`-0.0` is `0.0`), strings as strings (so `"6"` is not the number 6), serialized by orjson. Two
rows get one key exactly when their RFC 8785 forms are equal (tests/serving/prediction/
test_cache_keys.py checks it against the `rfc8785` library), at an eighth of its cost (about
4 us a row against 31 us). The version in the key is the one that serves the request, so a moved
alias, a degraded fallback or a pinned version can never be answered with another version's price.

Only prices a model server returned for validated rows are stored, with a TTL. Each Redis round
trip costs the proxy more CPU than hashing and pricing bookkeeping together, so neither reads nor
writes go one per request: a lookup that finds no read in flight sends its MGET at once (no
added latency when traffic is light); lookups arriving while one is in flight wait for it and
then share the next MGET. Stores are written behind the answer, one write in flight at a time,
each carrying every price queued before it: the writer first waits `store_linger_ms` (unless
`store_batch_rows` already wait), so that under load one write carries many prices. A write is
one EVALSHA of `STORE_SCRIPT` (SET key value EX ttl for each price, inside Redis): redis-py
spends about 30 us of proxy CPU on each command of a pipeline (packing it and parsing its
reply), so 16 prices cost about 580 us as a pipeline of SETs and about 225 us as one script call.

A lookup that finds nothing is pure cost (a round trip the request waits for), so the cache
watches its own hit rate over the last rows it looked up (about `hit_rate_window_rows`, decayed
by halves). While that rate is below `lookup_hit_rate_floor`, no request waits for Redis: each
skips the lookup (counted as "skipped") and goes straight to the model server, and every
`probe_every`-th one also sends its keys in the next MGET as a probe, whose answer only feeds the
hit rate. (A probe its request waited for would hold that request back from the batch gathering
for the model server, and the batches would shrink.) Every priced row is still
stored, so when rows start repeating the probes find them, the rate climbs back over the floor
and every request looks up again. A skipped lookup never changes a price: the key holds the
serving version, and the model server prices a row as the cache would have.
`lookup_hit_rate_floor: 0` looks up always.

Redis down: requests are priced without the cache, never refused. Each failed command is counted,
logged at most once per `unavailable_log_every_s`, and Redis is left alone for
`recheck_after_failure_s`, so an outage does not add a timeout to every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
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
            "Rows of cache-enabled requests: hit, miss, bypass (Redis unavailable) or skipped "
            "(not looked up: the recent hit rate is below lookup_hit_rate_floor)",
            ["outcome"], registry=registry)
        self.unavailable = Counter(
            "valuation_prediction_cache_unavailable_total",
            "Prediction-cache commands that failed (Redis down or slow), by operation",
            ["operation"], registry=registry)
        # Counted on every request: the children resolved once, not by labels() per call.
        self.hit, self.miss, self.bypass, self.skipped = (
            self.rows.labels(outcome) for outcome in ("hit", "miss", "bypass", "skipped"))


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


def canonical_row(row: Mapping[str, Any]) -> bytes:
    """The row's eight features as canonical JSON: equal exactly when their RFC 8785 forms are
    (see the module doc). Numbers become floats (+ 0.0 turns -0.0 into 0.0); bools, strings and
    anything else keep their JSON type, as RFC 8785 keeps it."""
    return orjson.dumps([
        value + 0.0 if isinstance(value, int | float) and not isinstance(value, bool) else value
        for value in (row[name] for name in FEATURES)])


def row_digest(row: Mapping[str, Any]) -> str:
    """SHA-256 of the row's canonical JSON (`canonical_row`)."""
    return hashlib.sha256(canonical_row(row)).hexdigest()


# KEYS: the rows' keys; ARGV[1]: the TTL in seconds, ARGV[i + 1]: the price of KEYS[i].
STORE_SCRIPT = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS
"""


class PredictionCache:
    def __init__(self, redis: Redis, settings: PredictionCacheSettings, metrics: CacheMetrics) -> None:
        self._redis = redis
        self._store_script = redis.register_script(STORE_SCRIPT)  # EVALSHA; loaded when missing
        self._settings = settings
        self._metrics = metrics
        self._skip_until = float("-inf")
        self._logged_at = float("-inf")
        self._pending: dict[str, bytes] = {}  # prices waiting for the next write
        self._lookups: list[tuple[list[str], asyncio.Future[list[Any] | None]]] = []  # for the next MGET
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading = False
        self._writing = False
        # The recent hit rate: rows looked up and hits among them, both halved whenever the rows
        # reach hit_rate_window_rows (so old traffic fades); requests since the last lookup.
        self._window_rows = 0.0
        self._window_hits = 0.0
        self._since_lookup = 0

    def keys(self, model_name: str, version: str, rows: Sequence[dict[str, Any]]) -> list[str]:
        prefix = f"{self._settings.key_prefix}:{model_name}:{version}:"
        return [prefix + row_digest(row) for row in rows]

    def _hit_rate_is_low(self) -> bool:
        """Whether the recent hit rate is below the floor (never before half a window is seen)."""
        floor = self._settings.lookup_hit_rate_floor
        return (floor > 0 and self._window_rows >= self._settings.hit_rate_window_rows / 2
                and self._window_hits < floor * self._window_rows)

    def _record(self, rows: int, hits: int) -> None:
        self._window_rows += rows
        self._window_hits += hits
        if self._window_rows >= self._settings.hit_rate_window_rows:
            self._window_rows /= 2
            self._window_hits /= 2

    async def lookup(self, keys: list[str]) -> list[float | None]:
        """The cached price of each key, None where there is none (or Redis did not answer, or
        the lookup was skipped because the recent hit rate is low: see the module doc)."""
        if time.monotonic() < self._skip_until:
            self._metrics.bypass.inc(len(keys))
            return [None] * len(keys)
        if self._hit_rate_is_low():
            self._metrics.skipped.inc(len(keys))
            self._since_lookup += 1
            if self._since_lookup >= self._settings.probe_every:
                self._since_lookup = 0
                self._queue_mget(keys).add_done_callback(self._probe_answered)
            return [None] * len(keys)
        self._since_lookup = 0
        values = await self._queue_mget(keys)
        if values is None:  # Redis did not answer (counted and logged by _read)
            self._metrics.bypass.inc(len(keys))
            return [None] * len(keys)
        prices = [float(value) if value is not None else None for value in values]
        hits = sum(price is not None for price in prices)
        self._record(len(prices), hits)
        if hits:
            self._metrics.hit.inc(hits)
        if hits < len(prices):
            self._metrics.miss.inc(len(prices) - hits)
        return prices

    def _queue_mget(self, keys: list[str]) -> asyncio.Future[list[Any] | None]:
        """The values of `keys` from the next MGET (None if Redis does not answer)."""
        future: asyncio.Future[list[Any] | None] = asyncio.get_running_loop().create_future()
        self._lookups.append((keys, future))
        if not self._reading:
            self._reading = True
            self._spawn(self._read())
        return future

    def _probe_answered(self, future: asyncio.Future[list[Any] | None]) -> None:
        """A probe's values only measure the hit rate: its request was priced without them."""
        values = None if future.cancelled() else future.result()
        if values is not None:
            self._record(len(values), sum(value is not None for value in values))

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
        """Writes until no price waits: each carries every price queued meanwhile (gathered for
        store_linger_ms first, unless store_batch_rows already wait)."""
        linger = self._settings.store_linger_ms / 1000
        try:
            while self._pending:
                if linger > 0 and len(self._pending) < self._settings.store_batch_rows:
                    await asyncio.sleep(linger)
                pending, self._pending = self._pending, {}
                try:
                    await self._store_script(keys=list(pending),
                                             args=[self._settings.ttl_s, *pending.values()])
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
