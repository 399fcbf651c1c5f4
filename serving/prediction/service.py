"""Prices for validated rows of one served model, through the micro-batcher to the model server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from prometheus_client import CollectorRegistry

from serving.model_servers.served import ServedModel
from serving.prediction.batcher import BatchMetrics, PricingBatcher
from serving.prediction.model_call import call_model_server
from serving.settings import ServingSettings
from serving.upstream import ModelServerClient


class PricingMetrics:
    """The batcher's metrics, registered once per app."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch = BatchMetrics(registry)


@dataclass(frozen=True)
class PricedRows:
    prices: list[float]
    cached_rows: list[int]  # indices of the rows answered from a cache (none yet)


class PricingService:
    def __init__(self, batcher: PricingBatcher) -> None:
        self.batcher = batcher

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: ServingSettings, config: DictConfig, client: ModelServerClient,
                   metrics: PricingMetrics) -> AsyncIterator[PricingService]:
        """The service for one app, with its batcher."""

        async def call(served: ServedModel, rows: Sequence[dict[str, Any]]) -> list[float]:
            return await call_model_server(client, served, rows)

        batcher = PricingBatcher(call, settings.batching, metrics.batch)
        try:
            yield cls(batcher)
        finally:
            await batcher.close()

    async def price(self, served: ServedModel, rows: Sequence[dict[str, Any]]) -> PricedRows:
        return PricedRows(await self.batcher.price(served, rows), [])
