"""The batcher's scheduling (serving/prediction/batcher.py) with a model call the test controls:
when a call returns, the batch that gathered behind it is sent before the requests it served
resume, so the model server is not idle while the proxy answers them. (The batcher against real
model servers: test_batching.py.)"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from serving.model_servers.served import ServedModel
from serving.prediction.batcher import BatchMetrics, PricingBatcher
from serving.settings import BatchingSettings


def served_model() -> ServedModel:
    return ServedModel(name="m", version="1", base_url="http://127.0.0.1:9", rules=None, metadata={})


async def scenario() -> list[str]:
    events: list[str] = []
    release: dict[str, asyncio.Event] = {}

    async def call(served: ServedModel, rows) -> list[float]:
        names = ",".join(row["name"] for row in rows)
        events.append(f"call {names}")
        release[names] = asyncio.Event()
        await release[names].wait()
        return [float(len(row["name"])) for row in rows]

    batcher = PricingBatcher(call, BatchingSettings(enabled=True, max_batch_rows=64,
                                                    max_wait_ms=10_000),
                             BatchMetrics(CollectorRegistry()))
    served = served_model()

    async def request(name: str) -> None:
        prices = await batcher.price(served, [{"name": name}])
        events.append(f"{name} resumed with {prices}")

    first = asyncio.create_task(request("a"))  # the lane is idle: goes at once, alone
    await asyncio.sleep(0)
    second = [asyncio.create_task(request(n)) for n in ("bb", "cc")]  # gather behind it
    await asyncio.sleep(0)
    release["a"].set()
    await first
    while "bb,cc" not in release:  # the gathered batch went when "a" returned
        await asyncio.sleep(0)
    third = asyncio.create_task(request("ddd"))  # gathers behind "bb,cc"
    await asyncio.sleep(0)
    release["bb,cc"].set()
    while "ddd" not in release:
        await asyncio.sleep(0)
    release["ddd"].set()
    await asyncio.gather(*second, third)
    await batcher.close()
    return events


def test_the_next_batch_is_sent_before_the_served_requests_resume() -> None:
    events = asyncio.run(scenario())
    assert events.index("call ddd") < events.index("bb resumed with [2.0]")
    assert events.index("call ddd") < events.index("cc resumed with [2.0]")
    # Each request still gets its own prices, in one call per batch.
    assert [e for e in events if e.startswith("call")] == ["call a", "call bb,cc", "call ddd"]
    assert "ddd resumed with [3.0]" in events
