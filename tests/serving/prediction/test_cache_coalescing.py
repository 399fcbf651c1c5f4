"""The prediction cache's round trips to the real Redis: concurrent lookups share MGETs and
concurrent stores share writes, each caller still getting its own prices; a low hit rate leaves
only background probes, and no request waits for Redis; stores linger into one write."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from serving.prediction.cache import CacheMetrics, PredictionCache
from serving.settings import PredictionCacheSettings
from tests.serving.prediction.support import synthetic_rows


class CountingRedis(Redis):
    """The real asyncio client, counting the MGETs and the writes (EVALSHAs of the store
    script) it sends."""

    mgets = 0
    writes = 0

    async def mget(self, *args, **kwargs):
        CountingRedis.mgets += 1
        return await super().mget(*args, **kwargs)

    async def evalsha(self, *args, **kwargs):
        CountingRedis.writes += 1
        return await super().evalsha(*args, **kwargs)


def test_concurrent_lookups_share_mgets_and_stores_share_writes(prefix) -> None:
    settings = PredictionCacheSettings(enabled=True, ttl_s=600, key_prefix=prefix, timeout_s=2,
                                       unavailable_log_every_s=60, recheck_after_failure_s=5)
    rows = synthetic_rows(40, seed=5)

    async def scenario() -> tuple[list[list[float | None]], list[list[float | None]]]:
        cache = PredictionCache(CountingRedis(host="127.0.0.1", port=6379), settings,
                                CacheMetrics(CollectorRegistry()))
        keys = [cache.keys("m", "3", [row]) for row in rows]
        # The first 20 rows are priced and stored by 20 concurrent requests (no linger here).
        for index, key in enumerate(keys[:20]):
            cache.store(key, [1000.0 + index])
        await asyncio.sleep(0)
        while cache._writing:  # the writes behind the answers finish
            await asyncio.sleep(0.01)
        stored_with = CountingRedis.writes
        first = await asyncio.gather(*(cache.lookup(key) for key in keys))
        mgets = CountingRedis.mgets
        second = await asyncio.gather(*(cache.lookup(key) for key in keys[::-1]))
        await cache.close()
        assert stored_with <= 2, stored_with  # one write, or two when the first left early
        assert mgets <= 2, mgets  # the first lookup alone, the other 39 together
        return first, second

    CountingRedis.mgets = CountingRedis.writes = 0
    first, second = asyncio.run(scenario())
    assert first == [[1000.0 + i] for i in range(20)] + [[None]] * 20
    assert second == first[::-1]


def _settings(prefix: str, **extra) -> PredictionCacheSettings:
    return PredictionCacheSettings(enabled=True, ttl_s=600, key_prefix=prefix, timeout_s=2,
                                   unavailable_log_every_s=60, recheck_after_failure_s=5, **extra)


def _rows_counted(metrics: CacheMetrics) -> dict[str, float]:
    return {outcome: metrics.rows.labels(outcome)._value.get()
            for outcome in ("hit", "miss", "bypass", "skipped")}


async def _settled(cache: PredictionCache) -> None:
    """Until the cache's reads and writes in flight (a probe's MGET among them) are done."""
    await asyncio.sleep(0)
    while cache._reading or cache._writing:
        await asyncio.sleep(0.005)


def test_a_low_hit_rate_leaves_only_background_probes_and_repeats_bring_lookups_back(prefix) -> None:
    settings = _settings(prefix, lookup_hit_rate_floor=0.5, hit_rate_window_rows=8, probe_every=4)
    rows = synthetic_rows(60, seed=6)

    async def scenario() -> None:
        metrics = CacheMetrics(CollectorRegistry())
        cache = PredictionCache(CountingRedis(host="127.0.0.1", port=6379), settings, metrics)
        keys = [cache.keys("m", "3", [row]) for row in rows]
        # Distinct rows, one request at a time: every request looks up until half a window (4
        # rows) has missed; then no request waits for Redis, and every 4th sends a probe whose
        # answer only measures the hit rate. Every row is still stored.
        answers = []
        for index, key in enumerate(keys[:20]):
            answers.append(await cache.lookup(key))
            cache.store(key, [2000.0 + index])
            await _settled(cache)
        assert answers == [[None]] * 20
        assert CountingRedis.mgets == 4 + 4  # the first 4, then probes at requests 8, 12, 16, 20
        assert _rows_counted(metrics) == {"hit": 0, "miss": 4, "bypass": 0, "skipped": 16}
        # The same rows again: the probes (requests 4, 8, 12, 16) hit, the rate climbs over the
        # floor, and from then on every request looks up and gets its stored price. A probe's
        # own request is answered without it (it was sent to the model server at once).
        again = []
        for key in keys[:20]:
            again.append(await cache.lookup(key))
            await _settled(cache)
        found = [i for i, answer in enumerate(again) if answer != [None]]
        # Hits reach half the decayed window (2 of 4 rows) with the 4th probe (request 16).
        assert found == [16, 17, 18, 19], again
        assert all(again[i] == [2000.0 + i] for i in found)  # a skipped lookup changed no price
        assert _rows_counted(metrics) == {"hit": 4, "miss": 4, "bypass": 0, "skipped": 32}
        # Distinct rows again: the rate sinks below the floor and requests skip the lookup again.
        for key in keys[20:60]:
            await cache.lookup(key)
            await _settled(cache)
        assert _rows_counted(metrics)["skipped"] > 32
        # While the rate is low no request suspends, not even the one that sends a probe: each
        # lookup finishes at its first step, and the probe's MGET goes out behind it.
        mgets = CountingRedis.mgets
        for row in synthetic_rows(4, seed=66):
            pending = cache.lookup(cache.keys("m", "3", [row]))
            with pytest.raises(StopIteration) as finished:
                pending.send(None)
            assert finished.value.value == [None]
        await _settled(cache)
        assert CountingRedis.mgets - mgets == 1  # one of any 4 requests in a row is a probe
        await cache.close()

    CountingRedis.mgets = CountingRedis.writes = 0
    asyncio.run(scenario())


def test_with_the_floor_at_zero_every_request_looks_up(prefix) -> None:
    settings = _settings(prefix, lookup_hit_rate_floor=0, hit_rate_window_rows=8, probe_every=4)

    async def scenario() -> None:
        metrics = CacheMetrics(CollectorRegistry())
        cache = PredictionCache(CountingRedis(host="127.0.0.1", port=6379), settings, metrics)
        for row in synthetic_rows(30, seed=7):
            assert await cache.lookup(cache.keys("m", "3", [row])) == [None]
        assert CountingRedis.mgets == 30
        assert _rows_counted(metrics) == {"hit": 0, "miss": 30, "bypass": 0, "skipped": 0}
        await cache.close()

    CountingRedis.mgets = CountingRedis.writes = 0
    asyncio.run(scenario())


def test_stores_linger_into_one_write_unless_a_batch_already_waits(prefix, redis_conn) -> None:
    rows = synthetic_rows(30, seed=8)

    async def scenario(settings: PredictionCacheSettings, spread: int) -> float:
        cache = PredictionCache(CountingRedis(host="127.0.0.1", port=6379), settings,
                                CacheMetrics(CollectorRegistry()))
        keys = [cache.keys("m", "4", [row]) for row in rows[:spread]]
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, key in enumerate(keys):  # prices arriving over several event-loop turns
            cache.store(key, [3000.0 + index])
            await asyncio.sleep(0.005 if index % 5 == 4 else 0)
        while cache._writing:
            await asyncio.sleep(0.002)
        written = loop.time() - start
        assert [await cache.lookup(key) for key in keys] == [[3000.0 + i] for i in range(spread)]
        assert all(0 < redis_conn.ttl(key[0]) <= 600 for key in keys)
        await cache.close()
        return written

    CountingRedis.writes = 0
    written = asyncio.run(scenario(_settings(prefix, store_linger_ms=150, store_batch_rows=500), 20))
    assert CountingRedis.writes == 1  # 20 prices over ~20 ms of arrivals: one write
    assert written >= 0.15

    CountingRedis.writes = 0
    asyncio.run(scenario(_settings(prefix + "-b", store_linger_ms=0), 20))
    assert CountingRedis.writes > 1  # no linger: a write as soon as the first price waits
    for key in redis_conn.scan_iter(f"{prefix}-b:*"):
        redis_conn.delete(key)

    CountingRedis.writes = 0
    written = asyncio.run(scenario(_settings(prefix, store_linger_ms=5000, store_batch_rows=1), 1))
    assert CountingRedis.writes == 1 and written < 2  # a full batch does not wait the linger


def test_a_store_script_redis_does_not_know_is_loaded_again(prefix, redis_conn) -> None:
    """After a Redis restart or SCRIPT FLUSH the script's SHA is unknown: the write loads it and
    the prices still land, with their TTL (simulated with an unknown SHA, the shared Redis's
    script cache left alone)."""
    rows = synthetic_rows(3, seed=9)

    async def scenario() -> list[str]:
        cache = PredictionCache(CountingRedis(host="127.0.0.1", port=6379), _settings(prefix),
                                CacheMetrics(CollectorRegistry()))
        cache._store_script.sha = "0" * 40
        keys = cache.keys("m", "5", rows)
        cache.store(keys, [1.5, 2.5, 3.5])
        await cache.close()
        return keys

    keys = asyncio.run(scenario())
    assert [float(redis_conn.get(key)) for key in keys] == [1.5, 2.5, 3.5]
    assert all(0 < redis_conn.ttl(key) <= 600 for key in keys)
