"""Adaptive micro-batching of model-server calls.

`mlflow models serve` spends about 1.4 ms of CPU on each call around a prediction of 0.4 ms, so
pricing concurrent single rows one call each pays that overhead per row. The batcher coalesces
the rows of concurrent requests for the same served model into one call and hands each request
back its own prices.

It is adaptive, in the manner of BentoML's `max_batch_size`/`max_latency_ms` and MLServer's
`max_batch_size`/`max_batch_time`, with no delay when idle:
- a request that finds no call in flight on its lane goes at once (no added latency at
  concurrency 1);
- while a call is in flight, arrivals wait together, and go as one call when the in-flight call
  returns, when they reach `max_batch_rows`, or `max_wait_ms` after the first of them arrived,
  whichever comes first;
- a request never splits: one with `max_batch_rows` rows or more goes alone.

A lane is one served model server (version and address): explicit versions and aliases,
degraded fallbacks and any other routing batch only with requests for that same server, and
every request of a batch holds its own lease on it (`supervisor.use`).

Every request of a failed call gets the same `PricingFailure` (503, 504, 502). A 422 from the
model server (it refused a row) says nothing about which request's row it was, so a refused
batch is priced again one request at a time: only the request with the bad row gets the 422.
Each waiter is answered in a `finally`, so no request hangs; the model-server client's own
timeout bounds every call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from serving.model_servers.served import ServedModel
from serving.prediction.model_call import PricingFailure
from serving.settings import BatchingSettings

Rows = Sequence[dict[str, Any]]
ModelCall = Callable[[ServedModel, Rows], Awaitable[list[float]]]

_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 4096, 10000)
_WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025,
                 0.05, 0.1, 0.25, 1.0)


class BatchMetrics:
    """What the batcher does, per model-server call (Prometheus, the proxy's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Histogram(
            "valuation_batch_rows", "Rows per model-server call (mean batch size = sum / count)",
            buckets=_SIZE_BUCKETS, registry=registry)
        self.requests = Histogram(
            "valuation_batch_requests", "Prediction requests served by one model-server call",
            buckets=_SIZE_BUCKETS, registry=registry)
        self.wait = Histogram(
            "valuation_batch_wait_seconds",
            "Time a request's rows waited in the batcher before their model-server call was sent",
            buckets=_WAIT_BUCKETS, registry=registry)


@dataclass(eq=False)
class _Waiter:
    served: ServedModel
    rows: Rows
    future: asyncio.Future[list[float]]
    queued_at: float


@dataclass(eq=False)
class _Lane:
    """The requests for one model server: calls in flight, and who waits for the next call."""

    in_flight: int = 0
    waiting: list[_Waiter] = field(default_factory=list)
    waiting_rows: int = 0
    timer: asyncio.TimerHandle | None = None


def _nothing() -> None:
    pass


class PricingBatcher:
    """`await price(served, rows)` -> one price per row, through shared model-server calls."""

    def __init__(self, call: ModelCall, settings: BatchingSettings, metrics: BatchMetrics) -> None:
        self._call = call
        self._enabled = settings.enabled
        self._max_rows = settings.max_batch_rows
        self._max_wait_s = settings.max_wait_ms / 1000
        self._metrics = metrics
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each call ends

    async def price(self, served: ServedModel, rows: Rows) -> list[float]:
        if not self._enabled or len(rows) >= self._max_rows:
            return await self._alone(served, rows)
        key = (served.base_url, served.version)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        if lane.in_flight == 0 and not lane.waiting:
            return await self._at_once(key, lane, served, rows)
        if lane.waiting_rows + len(rows) > self._max_rows:
            self._send(key, lane)  # the batch is full without us: it goes, we start the next
        waiter = _Waiter(served, rows, asyncio.get_running_loop().create_future(),
                         time.perf_counter())
        lane.waiting.append(waiter)
        lane.waiting_rows += len(rows)
        if lane.waiting_rows >= self._max_rows:
            self._send(key, lane)
        elif lane.timer is None:
            lane.timer = asyncio.get_running_loop().call_later(self._max_wait_s, self._send, key, lane)
        return await waiter.future

    async def _alone(self, served: ServedModel, rows: Rows) -> list[float]:
        self._observe(len(rows), 1)
        self._metrics.wait.observe(0.0)
        return await self._call(served, rows)

    async def _at_once(self, key: tuple[str, str], lane: _Lane, served: ServedModel,
                       rows: Rows) -> list[float]:
        """The lane is idle: this request's call goes now, from its own task (no hand-over),
        and whoever arrives meanwhile gathers behind it."""
        lane.in_flight += 1
        try:
            return await self._alone(served, rows)
        finally:
            self._call_ended(key, lane)

    def _send(self, key: tuple[str, str], lane: _Lane) -> None:
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        batch, lane.waiting, lane.waiting_rows = lane.waiting, [], 0
        if not batch:
            return
        lane.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(key, lane, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: tuple[str, str], lane: _Lane, batch: list[_Waiter]) -> None:
        sent_at = time.perf_counter()
        for waiter in batch:
            self._metrics.wait.observe(sent_at - waiter.queued_at)
        ended = False

        def call_ended() -> None:
            nonlocal ended
            if not ended:
                ended = True
                self._call_ended(key, lane)

        try:
            await self._answer(batch, call_ended)
        finally:
            call_ended()

    def _call_ended(self, key: tuple[str, str], lane: _Lane) -> None:
        lane.in_flight -= 1
        if lane.waiting:
            self._send(key, lane)  # what gathered during this call goes now
        elif lane.in_flight == 0 and self._lanes.get(key) is lane:
            del self._lanes[key]  # an idle lane (an old version's) is not kept

    async def _answer(self, batch: list[_Waiter], call_ended: Callable[[], None] = _nothing) -> None:
        """Price the batch in one call and hand each waiter its prices. `call_ended` runs as soon
        as the call returns, before any waiter is woken: the next batch is then scheduled ahead
        of the waiters' own work (answering, audit), so the model server is not left idle while
        the proxy finishes the previous batch's requests."""
        rows = [row for waiter in batch for row in waiter.rows]
        self._observe(len(rows), len(batch))
        try:
            prices = await self._call(batch[0].served, rows)
        except PricingFailure as failure:
            call_ended()
            if failure.status_code == 422 and len(batch) > 1:
                await asyncio.gather(*(self._answer([waiter]) for waiter in batch))
            else:
                _fail(batch, failure)
            return
        except BaseException as error:  # a bug or a cancellation: every waiter learns of it
            call_ended()
            _fail(batch, error if isinstance(error, Exception) else
                  PricingFailure(503, "the prediction was interrupted; retry", "unavailable"))
            raise
        call_ended()
        start = 0
        for waiter in batch:
            end = start + len(waiter.rows)
            if not waiter.future.done():  # its client may have gone away
                waiter.future.set_result(prices[start:end])
            start = end

    def _observe(self, rows: int, requests: int) -> None:
        self._metrics.rows.observe(rows)
        self._metrics.requests.observe(requests)

    async def close(self) -> None:
        """Let calls in flight end (each is bounded by the model-server client's timeout)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _fail(batch: list[_Waiter], error: Exception) -> None:
    for waiter in batch:
        if not waiter.future.done():
            waiter.future.set_exception(error)
