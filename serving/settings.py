"""The serving side's settings: conf/serving.yaml composed with the environment, read once.

Every serving module takes its settings from here, so one file says what can be configured.
Secrets are never in the YAML: they are read from the environment by `secret()`.
"""

from __future__ import annotations

import os
from functools import lru_cache

from omegaconf import DictConfig

from valuation.config import load_config, tracking_uri


@lru_cache(maxsize=1)
def get_settings() -> DictConfig:
    """The composed serving config (cached; call `get_settings.cache_clear()` in tests)."""
    return load_config(config_name="serving")


def mlflow_tracking_uri() -> str:
    settings = get_settings()
    return settings.mlflow.tracking_uri or tracking_uri()


def secret(name: str) -> str | None:
    """A secret from the environment; empty strings count as unset."""
    value = os.environ.get(name)
    return value or None
