"""The traffic split in force: the share of requests shadowed and canaried.

The config's fractions are the default. `valuation traffic set` writes a run-time setting to one
Redis key (JSON: the fractions, when and by whom), which every proxy replica reads; deleting the
key (`valuation traffic reset`) returns to the config.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from serving.traffic.settings import TrafficSettings

SOURCE_CONFIG = "config"
SOURCE_RUNTIME = "runtime"


class InvalidSplit(ValueError):
    """A fraction outside 0..1, or a stored setting that is not one."""


@dataclass(frozen=True)
class TrafficSplit:
    shadow: float = 0.0
    canary: float = 0.0
    source: str = SOURCE_CONFIG  # config, or runtime (the Redis key)
    set_at: str | None = None  # ISO 8601 UTC, for a run-time setting
    set_by: str | None = None

    def __post_init__(self) -> None:
        for name in ("shadow", "canary"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or not 0 <= value <= 1:
                raise InvalidSplit(f"traffic {name} must be a fraction from 0 to 1, got {value!r}")

    @property
    def on(self) -> bool:
        return self.shadow > 0 or self.canary > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_split(settings: TrafficSettings) -> TrafficSplit:
    return TrafficSplit(shadow=settings.shadow, canary=settings.canary)


def parse_split(raw: bytes | str | None, settings: TrafficSettings) -> TrafficSplit:
    """The split a value of the Redis key gives (None: no run-time setting, the config's).
    Raises InvalidSplit naming the key for a value that is not a setting."""
    if raw is None:
        return config_split(settings)
    try:
        value = json.loads(raw)
        return TrafficSplit(shadow=float(value["shadow"]), canary=float(value["canary"]),
                            source=SOURCE_RUNTIME, set_at=value.get("set_at"),
                            set_by=value.get("set_by"))
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise InvalidSplit(f"Redis key {settings.redis_key!r} does not hold a traffic setting "
                           f"({error}); set it again with `valuation traffic set`") from None


def read_split(redis: Any, settings: TrafficSettings) -> TrafficSplit:
    """The split in force (one GET). Redis errors propagate: the caller decides."""
    return parse_split(redis.get(settings.redis_key), settings)


def write_split(redis: Any, settings: TrafficSettings, *, shadow: float, canary: float,
                actor: str) -> TrafficSplit:
    """Store a run-time setting for every proxy replica; returns it."""
    split = TrafficSplit(shadow=shadow, canary=canary, source=SOURCE_RUNTIME,
                         set_at=datetime.now(UTC).isoformat(timespec="seconds"), set_by=actor)
    redis.set(settings.redis_key, json.dumps({"shadow": split.shadow, "canary": split.canary,
                                              "set_at": split.set_at, "set_by": split.set_by}))
    return split


def clear_split(redis: Any, settings: TrafficSettings) -> TrafficSplit:
    """Drop the run-time setting: the config's fractions apply again."""
    redis.delete(settings.redis_key)
    return config_split(settings)
