"""Each proxy's copy of the traffic split, kept fresh off the request path.

/predict reads `switch.split`, an attribute: no Redis round trip per request. A background task
re-reads the run-time setting every `traffic.refresh_s`, so `valuation traffic set` reaches every
replica within that interval. When Redis cannot be read, the last split read stays in force
(counted, logged when reads start and stop failing); a key that holds no valid setting is an
error logged with the key's name, and the config's split applies until it is set again.

The challenger's model server is asked of the supervisor (`watch`) while either fraction is on,
and given up (`unwatch`) when both are off again, unless the config serves it anyway
(`model_server.extra_aliases`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError

from serving.logging import get_logger
from serving.traffic.metrics import TrafficMetrics
from serving.traffic.settings import TrafficSettings
from serving.traffic.split import InvalidSplit, TrafficSplit, config_split, read_split

log = get_logger("serving.traffic")


class TrafficSwitch:
    def __init__(self, settings: TrafficSettings, redis: Any, supervisor: Any,
                 challenger_alias: str, metrics: TrafficMetrics) -> None:
        self.settings = settings
        self.split: TrafficSplit = config_split(settings)
        self._redis = redis
        self._supervisor = supervisor
        self._challenger_alias = challenger_alias
        self._metrics = metrics
        self._watching = False
        self._failing: str | None = None  # the read error being reported, until reads work again
        self._apply(self.split)

    def refresh(self) -> None:
        """Read the setting once (blocking: run it in a thread) and apply it."""
        try:
            split = read_split(self._redis, self.settings)
        except RedisError as error:
            self._metrics.setting_errors.inc()
            if self._failing is None:
                log.warning("traffic_setting_unreadable", key=self.settings.redis_key,
                            error=repr(error), keeping=self.split.to_dict())
            self._failing = repr(error)
            return
        except InvalidSplit as error:
            self._metrics.setting_errors.inc()
            if self._failing != str(error):
                log.error("traffic_setting_invalid", error=str(error),
                          using=config_split(self.settings).to_dict())
            self._failing = str(error)
            split = config_split(self.settings)
        else:
            if self._failing is not None:
                log.info("traffic_setting_readable_again", key=self.settings.redis_key)
            self._failing = None
        self._apply(split)

    def _apply(self, split: TrafficSplit) -> None:
        if (split.shadow, split.canary, split.source) != \
                (self.split.shadow, self.split.canary, self.split.source):
            log.info("traffic_split_changed", **split.to_dict())
        self.split = split
        self._metrics.fraction.labels("shadow").set(split.shadow)
        self._metrics.fraction.labels("canary").set(split.canary)
        if split.on != self._watching:
            # The challenger's server starts (or drains) in the supervisor's own thread.
            if split.on:
                self._supervisor.watch(self._challenger_alias)
            else:
                self._supervisor.unwatch(self._challenger_alias)
            self._watching = split.on

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_s)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as error:  # one bad refresh must not end the refreshing
                log.error("traffic_refresh_failed", error=repr(error))

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, settings: TrafficSettings, redis: Any, supervisor: Any,
                      challenger_alias: str, metrics: TrafficMetrics
                      ) -> AsyncIterator[TrafficSwitch]:
        """The switch of one app: read once before the first request, then refreshed."""
        switch = cls(settings, redis, supervisor, challenger_alias, metrics)
        await asyncio.to_thread(switch.refresh)
        task = asyncio.create_task(switch._refresh_forever(), name="traffic-refresh")
        try:
            yield switch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if switch._watching:  # what this app asked of the supervisor, given back
                supervisor.unwatch(challenger_alias)
