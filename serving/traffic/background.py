"""Pricing a request's rows a second time, after the client was answered: the challenger's shadow
price, or the champion's price of a canary request (so the promotion gate has both prices of
every such row). Both go to the prediction store with served_alias `shadow`: priced, not answered.

A background pricing never touches the client's answer: it starts once the answer is built, goes
through the same micro-batcher (the lane of its own model server, so it batches only with
requests for that version) and cache, checks the rows with its version's own rules, and is
bounded (`traffic.max_background_in_flight` per proxy; beyond that it is skipped). Every outcome
is counted in `valuation_traffic_background_pricings_total{purpose,outcome}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from serving.logging import get_logger
from serving.prediction.model_call import PricingFailure
from serving.prediction.rows import row_errors
from serving.prediction_store.proxy import submit_prices
from serving.settings import ProxySettings
from serving.traffic.metrics import TrafficMetrics

log = get_logger("serving.traffic")

SHADOW = "shadow"  # the challenger prices a request the champion answered
CANARY_REFERENCE = "canary_reference"  # the champion prices a request the challenger answered
STORED_ALIAS = "shadow"


@dataclass(frozen=True)
class BackgroundJob:
    purpose: str  # SHADOW or CANARY_REFERENCE
    version: str | None  # the version to price with (None: whatever the alias serves)
    alias: str | None  # None: the champion


class BackgroundPricing:
    def __init__(self, pricing: Any, supervisor: Any, proxy: ProxySettings,
                 metrics: TrafficMetrics, max_in_flight: int) -> None:
        self._pricing = pricing
        self._supervisor = supervisor
        self._proxy = proxy
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, job: BackgroundJob, rows: Sequence[Any], *, writer: Any, request_id: str,
              key_id: str | None) -> None:
        """Price `rows` with `job`'s version in a task of its own; returns at once."""
        if len(self._tasks) >= self._max_in_flight:
            self._count(job, "busy")
            return
        task = asyncio.create_task(self._price(job, list(rows), writer, request_id, key_id))
        self._tasks.add(task)  # a reference until it ends (asyncio keeps only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _price(self, job: BackgroundJob, rows: list[Any], writer: Any, request_id: str,
                     key_id: str | None) -> None:
        try:
            with self._supervisor.use(version=job.version, alias=job.alias) as served:
                if served is None:  # the alias moved or its server went down meanwhile
                    self._count(job, "no_challenger")
                    return
                if await row_errors(rows, served.rules, self._proxy):
                    # The answering version took these rows; this one's rules refuse them.
                    self._count(job, "invalid_rows")
                    return
                priced = await self._pricing.price(served, rows)
            submit_prices(writer, request_id=request_id, key_id=key_id, served=served,
                          features=rows, prices=priced.prices, alias=STORED_ALIAS)
            self._count(job, "ok")
            if job.purpose == SHADOW:
                self._metrics.requests.labels(STORED_ALIAS).inc()
        except PricingFailure as failure:
            self._count(job, "failed")
            log.warning("background_pricing_failed", purpose=job.purpose, version=job.version,
                        request_id=request_id, status=failure.status_code,
                        detail=str(failure.detail)[:300])
        except Exception as error:  # a task's error would otherwise only reach asyncio's log
            self._count(job, "failed")
            log.error("background_pricing_error", purpose=job.purpose, version=job.version,
                      request_id=request_id, error=repr(error))

    def _count(self, job: BackgroundJob, outcome: str) -> None:
        self._metrics.background.labels(job.purpose, outcome).inc()

    async def close(self) -> None:
        """Cancel what is still pricing (the proxy is stopping; those prices are lost)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
