"""Rate limits per API key, counted in Redis so they hold across proxy replicas.

A fixed-window counter: the key `<prefix>:<key_id>:<window index>` is INCRemented, and given an
EXPIRE of one window when it is new, by one Lua script run atomically in Redis (one EVALSHA, one
round trip, one command for Redis to parse instead of MULTI/INCR/EXPIRE/EXEC). A request over the
limit learns how long until its window ends (`Retry-After`). Fixed windows allow up to twice the
limit across a window boundary; that is the accepted price of one round trip and one key per window.

The proxy counts with `hit_async`, on an asyncio Redis client of its own (same host, port,
password and timeouts as the sync client), so a request waits for Redis on the event loop instead
of a hop to the thread pool and back; `hit` is the same check for synchronous callers.

Leases (`hit_async` only): for a large limit one round trip per request is most of what the limit
costs, so a replica reserves a few units at once (INCRBY n) and spends them locally. A lease is
at most `lease_fraction` of the limit and at most `max_lease` units, and never more than is left
in the window, so the replicas together never admit more than the limit; what a replica holds
unspent when its window ends is the price: at most (lease - 1) requests per replica and window
are refused early. Small limits (under 2 / lease_fraction per window) get leases of 1: one
round trip per request and an exact count, as before.

Limits come from `rate_limit:` in conf/serving.yaml: `per_key` (env RATE_LIMIT_PER_KEY, e.g.
`100/second`, `6000/minute`; unset = no limit) and `per_role` overrides (env RATE_LIMIT_PER_ROLE;
`{"admin": null}` lifts the limit for admins). When Redis cannot answer, `RateLimitUnavailable`
is raised; the caller decides whether to fail open (predictions) or closed (everything else,
see `rate_limit.fail_open`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from serving.settings import RateLimitSettings

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")
# KEYS[1]: the window's counter; ARGV[1]: its time to live. Atomic in Redis, so every replica's
# count lands on the same counter and the limit holds across replicas as with MULTI/EXEC.
# ARGV[2]: units counted at once (1, or a lease).
_COUNT_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
if count == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
# What the asyncio client copies from the sync one (the rest are sync-only objects).
_CONNECTION_KWARGS = ("host", "port", "db", "username", "password", "socket_timeout",
                      "socket_connect_timeout", "health_check_interval", "client_name")


class InvalidRate(ValueError):
    """A rate setting that is not `N/second|minute|hour|day`."""


class RateLimitUnavailable(RuntimeError):
    """Redis did not answer: the request's count is unknown."""


@dataclass(frozen=True)
class Rate:
    limit: int
    window_s: int

    def __str__(self) -> str:
        return f"{self.limit} per {self.window_s} s"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rate: Rate | None  # None: no limit applies
    retry_after_s: int = 0


def parse_rate(text: Any) -> Rate | None:
    """`"100/second"` -> Rate(100, 1); None, "" and "none" mean no limit."""
    if text is None:
        return None
    raw = str(text).strip().lower()
    if raw in {"", "none", "null", "off"}:
        return None
    match = _RATE.fullmatch(raw)
    if not match or match.group(2) not in _UNITS or int(match.group(1)) < 1:
        raise InvalidRate(
            f"invalid rate limit {text!r}: expected N/second, N/minute, N/hour or N/day with N >= 1"
        )
    return Rate(int(match.group(1)), _UNITS[match.group(2)])


class RateLimiter:
    """Counts requests per key id in Redis; `hit(key_id, role)` decides on one request."""

    def __init__(
        self,
        redis: Redis,
        default: Rate | None,
        per_role: Mapping[str, Rate | None] | None = None,
        *,
        prefix: str,
        recheck_after_failure_s: float,
        lease_fraction: float = 0.0,
        max_lease: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.default = default
        self.per_role = dict(per_role or {})
        self.prefix = prefix
        self._clock = clock
        # After a failure Redis is not asked again for a moment: each attempt on a dead Redis
        # costs its connect timeout and retries, which would stall every prediction meanwhile.
        self.recheck_after_failure_s = recheck_after_failure_s
        self._down_until = float("-inf")
        self._down_reason = ""
        self._count = redis.register_script(_COUNT_SCRIPT)
        self._async_redis: AsyncRedis | None = None
        self._async_count: Any = None
        self.lease_fraction = lease_fraction
        self.max_lease = max(1, max_lease)
        # (key id, window length) -> (window index, units reserved in Redis and not yet spent)
        self._leases: dict[tuple[str, int], tuple[int, int]] = {}

    @classmethod
    def from_settings(cls, settings: RateLimitSettings, redis: Redis) -> RateLimiter:
        per_role = {role: parse_rate(rate) for role, rate in settings.per_role.items()}
        return cls(redis, parse_rate(settings.per_key), per_role, prefix=settings.key_prefix,
                   recheck_after_failure_s=settings.recheck_after_failure_s,
                   lease_fraction=settings.lease_fraction, max_lease=settings.max_lease)

    def rate_for(self, role: str) -> Rate | None:
        return self.per_role.get(role, self.default)

    def hit(self, key_id: str, role: str) -> Decision:
        """Count one request of `key_id`; raises RateLimitUnavailable when Redis fails."""
        rate = self.rate_for(role)
        if rate is None:
            return Decision(allowed=True, rate=None)
        now, counter = self._window(rate, key_id)
        try:
            count = self._count(keys=[counter], args=[rate.window_s + 1, 1])
        except RedisError as error:
            raise self._failed(error) from None
        return self._decide(rate, now, int(count))

    async def hit_async(self, key_id: str, role: str) -> Decision:
        """`hit` on the event loop, through the limiter's asyncio Redis client, spending a
        lease held for this key and window when there is one (no round trip)."""
        rate = self.rate_for(role)
        if rate is None:
            return Decision(allowed=True, rate=None)
        slot = (key_id, rate.window_s)
        window = int(self._clock() // rate.window_s)
        held_window, held = self._leases.get(slot, (window, 0))
        if held_window == window and held > 0:
            self._leases[slot] = (window, held - 1)
            return Decision(allowed=True, rate=rate)
        now, counter = self._window(rate, key_id)
        lease = self.lease_size(rate)
        try:
            count = int(await self._async_script()(keys=[counter], args=[rate.window_s + 1, lease]))
        except RedisError as error:
            raise self._failed(error) from None
        # Of the `lease` units just counted, those within the limit are ours to spend.
        granted = min(lease, max(0, rate.limit - (count - lease)))
        self._leases[slot] = (int(now // rate.window_s), max(0, granted - 1))
        return self._decide(rate, now, 0 if granted else rate.limit + 1)

    def lease_size(self, rate: Rate) -> int:
        """Units a replica reserves per round trip for `rate` (1: count every request)."""
        return max(1, min(self.max_lease, int(rate.limit * self.lease_fraction)))

    async def aclose(self) -> None:
        """Close the asyncio client's connections (the sync client belongs to the caller)."""
        if self._async_redis is not None:
            await self._async_redis.aclose()
            self._async_redis = self._async_count = None

    def _async_script(self) -> Any:
        # Made on first use, inside the running loop that will own its connections.
        if self._async_count is None:
            given = self.redis.connection_pool.connection_kwargs
            self._async_redis = AsyncRedis(**{k: given[k] for k in _CONNECTION_KWARGS if k in given})
            self._async_count = self._async_redis.register_script(_COUNT_SCRIPT)
        return self._async_count

    def _window(self, rate: Rate, key_id: str) -> tuple[float, str]:
        if time.monotonic() < self._down_until:
            raise RateLimitUnavailable(f"{self._down_reason} (not retried for a moment)")
        now = self._clock()
        return now, f"{self.prefix}:{key_id}:{rate.window_s}:{int(now // rate.window_s)}"

    def _failed(self, error: RedisError) -> RateLimitUnavailable:
        self._down_reason = f"{type(error).__name__}: {error}"
        self._down_until = time.monotonic() + self.recheck_after_failure_s
        return RateLimitUnavailable(self._down_reason)

    @staticmethod
    def _decide(rate: Rate, now: float, count: int) -> Decision:
        if count <= rate.limit:
            return Decision(allowed=True, rate=rate)
        window_end = (int(now // rate.window_s) + 1) * rate.window_s
        return Decision(allowed=False, rate=rate, retry_after_s=max(1, math.ceil(window_end - now)))
