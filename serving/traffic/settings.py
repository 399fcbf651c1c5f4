"""`traffic:` of conf/serving.yaml, typed (read by the proxy at start-up and by the CLI)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf
from pydantic import BaseModel, ConfigDict, Field


class TrafficSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    shadow: float = Field(0.0, ge=0, le=1)
    canary: float = Field(0.0, ge=0, le=1)
    redis_key: str = Field("valuation:traffic", min_length=1)
    refresh_s: float = Field(1.0, gt=0)
    max_background_in_flight: int = Field(32, ge=1)


def traffic_settings(config: Any) -> TrafficSettings:
    """The typed `traffic:` section of a composed serving config."""
    return TrafficSettings.model_validate(OmegaConf.to_container(config.traffic, resolve=True))
