"""The prediction cache's round trips to the real Redis: concurrent lookups share MGETs and
concurrent stores share pipelines, each caller still getting its own prices."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from serving.prediction.cache import CacheMetrics, PredictionCache
from serving.settings import PredictionCacheSettings
from tests.serving.prediction.support import synthetic_rows


class CountingRedis(Redis):
    """The real asyncio client, counting the MGETs and pipelines it sends."""

    mgets = 0
    pipelines = 0

    async def mget(self, *args, **kwargs):
        CountingRedis.mgets += 1
        return await super().mget(*args, **kwargs)

    def pipeline(self, *args, **kwargs):
        CountingRedis.pipelines += 1
        return super().pipeline(*args, **kwargs)


def test_concurrent_lookups_share_mgets_and_stores_share_pipelines(prefix) -> None:
    settings = PredictionCacheSettings(enabled=True, ttl_s=600, key_prefix=prefix, timeout_s=2,
                                       unavailable_log_every_s=60, recheck_after_failure_s=5)
    rows = synthetic_rows(40, seed=5)

    async def scenario() -> tuple[list[list[float | None]], list[list[float | None]]]:
        cache = PredictionCache(CountingRedis(host="127.0.0.1", port=6379), settings,
                                CacheMetrics(CollectorRegistry()))
        keys = [cache.keys("m", "3", [row]) for row in rows]
        # The first 20 rows are priced and stored by 20 concurrent requests.
        for index, key in enumerate(keys[:20]):
            cache.store(key, [1000.0 + index])
        await asyncio.sleep(0)
        while cache._writing:  # the write-behind pipelines finish
            await asyncio.sleep(0.01)
        stored_with = CountingRedis.pipelines
        first = await asyncio.gather(*(cache.lookup(key) for key in keys))
        mgets = CountingRedis.mgets
        second = await asyncio.gather(*(cache.lookup(key) for key in keys[::-1]))
        await cache.close()
        assert stored_with <= 2, stored_with  # one pipeline, or two when the first left early
        assert mgets <= 2, mgets  # the first lookup alone, the other 39 together
        return first, second

    CountingRedis.mgets = CountingRedis.pipelines = 0
    first, second = asyncio.run(scenario())
    assert first == [[1000.0 + i] for i in range(20)] + [[None]] * 20
    assert second == first[::-1]
