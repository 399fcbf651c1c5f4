"""The serving side's settings: conf/serving.yaml composed with the environment, read once.

Every serving module takes its settings from here, so one file says what can be configured.
Secrets are never in the YAML: they are read from the environment by `secret()`.

`get_settings()` is the composed config as a DictConfig. The proxy (serving/app.py and its
handlers) reads `ServingSettings` instead: typed, checked and frozen once at start-up, because
reading an OmegaConf node on every request costs several microseconds per value and a misspelt or
mistyped value should stop the start, not a request.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serving.prediction_store.settings import PredictionStoreSettings
from serving.roles import ROLES
from serving.traffic.settings import TrafficSettings
from valuation.config import load_config, tracking_uri


@lru_cache(maxsize=1)
def get_settings() -> DictConfig:
    """The composed serving config (cached; call `get_settings.cache_clear()` in tests)."""
    return load_config(config_name="serving")


def mlflow_tracking_uri() -> str:
    """The tracking URI of the serving settings (see `valuation.config.tracking_uri`)."""
    return tracking_uri(get_settings().mlflow.tracking_uri)


def secret(name: str) -> str | None:
    """A secret from the environment; empty strings count as unset."""
    value = os.environ.get(name)
    return value or None


class _Section(BaseModel):
    # A section lists what the proxy reads; keys that only other serving modules read stay in
    # the DictConfig and are ignored here.
    model_config = ConfigDict(frozen=True, extra="ignore")


class RegistrySettings(_Section):
    model_name: str
    champion_alias: str
    challenger_alias: str


class CollectorSettings(_Section):
    """`proxy.gc:` of conf/serving.yaml (serving/collector.py)."""

    freeze_after_start: bool = False
    thresholds: tuple[int, int, int] | None = None

    @field_validator("thresholds")
    @classmethod
    def _positive_youngest(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and (value[0] < 1 or min(value) < 0):
            raise ValueError("the youngest generation's threshold must be 1 or more "
                             "(0 would turn the collector off), the others 0 or more")
        return value


class ProxySettings(_Section):
    log_level: str
    max_rows: int
    max_body_bytes: int
    upstream_connect_timeout_s: float
    upstream_max_connections: int
    upstream_keepalive_s: float
    ready_timeout_s: float
    validate_in_thread_rows: int
    degraded_fallback: bool
    gc: CollectorSettings = CollectorSettings()


class PredictExtrasSettings(_Section):
    """/predict's intervals (serving/api/extras.py): the level given when none is asked, and
    whether every prediction gets one unasked."""

    interval_default_level: float = Field(0.8, ge=0.5, le=0.99)
    interval_unasked: bool = False


PER_ROLE_ENV = "RATE_LIMIT_PER_ROLE"  # rate_limit.per_role of conf/serving.yaml
PER_ROLE_EXAMPLE = '{"admin": null, "predict": "100/second"}'


class RateLimitSettings(_Section):
    per_key: str | None
    per_role: dict[str, str | None]
    key_prefix: str
    fail_open: frozenset[str]
    unavailable_log_every_s: float
    recheck_after_failure_s: float
    lease_fraction: float = 0.0  # serving/ratelimit.py: units a replica reserves per round trip
    max_lease: int = 1

    @field_validator("per_role", mode="before")
    @classmethod
    def _per_role(cls, value: object) -> object:
        """The env's text (a JSON object) or the YAML's mapping, checked: known roles, rates
        serving/ratelimit.py takes. Unset or empty: no override."""
        from serving.ratelimit import InvalidRate, parse_rate  # it imports this module

        if value is None or (isinstance(value, str) and not value.strip()):
            return {}
        decoded = value
        if isinstance(value, str):
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = None
        if not isinstance(decoded, dict):
            raise ValueError(f"{PER_ROLE_ENV} must be a JSON object of role to rate (null: no "
                             f"limit), e.g. {PER_ROLE_EXAMPLE}; got {value!r}")
        for role, rate in decoded.items():
            # A misspelt role would leave its keys on per_key unnoticed.
            if role not in ROLES:
                raise ValueError(f"{PER_ROLE_ENV}: unknown role {role!r}; roles are "
                                 f"{', '.join(ROLES)}")
            if rate is not None and not isinstance(rate, str):
                raise ValueError(f"{PER_ROLE_ENV}, role {role!r}: invalid rate limit {rate!r}: "
                                 "expected a string N/second, N/minute, N/hour or N/day, or null")
            try:
                parse_rate(rate)
            except InvalidRate as error:
                raise ValueError(f"{PER_ROLE_ENV}, role {role!r}: {error}") from error
        return decoded


class ModelServerSettings(_Section):
    request_timeout_s: float


class JobsSettings(_Section):
    queue: str
    result_ttl_s: int


class BatchingSettings(_Section):
    """`batching:` of conf/serving.yaml (serving/prediction/batcher.py)."""

    enabled: bool
    max_batch_rows: int = Field(ge=1)
    max_wait_ms: float = Field(ge=0)


class PredictionCacheSettings(_Section):
    """`prediction_cache:` of conf/serving.yaml (serving/prediction/cache.py)."""

    enabled: bool
    ttl_s: int = Field(ge=1)
    key_prefix: str = Field(min_length=1)
    timeout_s: float = Field(gt=0)
    unavailable_log_every_s: float
    recheck_after_failure_s: float
    store_linger_ms: float = Field(0, ge=0)
    store_batch_rows: int = Field(500, ge=1)
    lookup_hit_rate_floor: float = Field(0, ge=0, le=1)
    hit_rate_window_rows: int = Field(256, ge=2)
    probe_every: int = Field(16, ge=1)


class ServingSettings(_Section):
    """What the proxy reads, typed. `tracking_uri` is resolved (never null)."""

    registry: RegistrySettings
    proxy: ProxySettings
    rate_limit: RateLimitSettings
    model_server: ModelServerSettings
    jobs: JobsSettings
    batching: BatchingSettings
    prediction_cache: PredictionCacheSettings
    prediction_store: PredictionStoreSettings
    tracking_uri: str
    predict_extras: PredictExtrasSettings = PredictExtrasSettings()
    traffic: TrafficSettings = TrafficSettings()

    @classmethod
    def from_config(cls, config: DictConfig) -> ServingSettings:
        values = OmegaConf.to_container(config, resolve=True)
        return cls.model_validate(
            {**values, "tracking_uri": tracking_uri(config.mlflow.tracking_uri)}
        )
