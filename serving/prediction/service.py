"""Prices for validated rows of one served model: the cache first (when on), the rest through the
micro-batcher to the model server, and what the model server priced back into the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from prometheus_client import CollectorRegistry

from serving.model_servers.served import ServedModel
from serving.prediction.batcher import BatchMetrics, PricingBatcher
from serving.prediction.cache import CacheMetrics, PredictionCache, open_cache_redis
from serving.prediction.model_call import call_model_server
from serving.settings import ServingSettings
from serving.upstream import ModelServerClient


class PricingMetrics:
    """The batcher's and the cache's metrics, registered once per app."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch = BatchMetrics(registry)
        self.cache = CacheMetrics(registry)


@dataclass(frozen=True)
class PricedRows:
    prices: list[float]
    cached_rows: list[int]  # indices of the rows answered from the cache


class PricingService:
    def __init__(self, batcher: PricingBatcher, cache: PredictionCache | None) -> None:
        self.batcher = batcher
        self.cache = cache

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: ServingSettings, config: DictConfig, client: ModelServerClient,
                   metrics: PricingMetrics) -> AsyncIterator[PricingService]:
        """The service for one app: its batcher, and its cache when `prediction_cache.enabled`."""

        async def call(served: ServedModel, rows: Sequence[dict[str, Any]]) -> list[float]:
            return await call_model_server(client, served, rows)

        batcher = PricingBatcher(call, settings.batching, metrics.batch)
        cache = None
        if settings.prediction_cache.enabled:
            redis = open_cache_redis(config, settings.prediction_cache)
            cache = PredictionCache(redis, settings.prediction_cache, metrics.cache)
        try:
            yield cls(batcher, cache)
        finally:
            await batcher.close()
            if cache is not None:
                await cache.close()

    async def price(self, served: ServedModel, rows: Sequence[dict[str, Any]]) -> PricedRows:
        if self.cache is None:
            return PricedRows(await self.batcher.price(served, rows), [])
        keys = self.cache.keys(served.name, served.version, rows)
        prices = await self.cache.lookup(keys)
        missing = [index for index, price in enumerate(prices) if price is None]
        if missing:
            priced = await self.batcher.price(served, [rows[index] for index in missing])
            for index, price in zip(missing, priced, strict=True):
                prices[index] = price
            self.cache.store([keys[index] for index in missing], priced)
        priced_here = set(missing)
        cached = [index for index in range(len(rows)) if index not in priced_here]
        return PricedRows(prices, cached)  # type: ignore[arg-type]  (no None is left)
