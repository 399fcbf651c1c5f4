"""`prediction_store:` of conf/serving.yaml, typed (read by the proxy at start-up and by the CLI)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf
from pydantic import BaseModel, ConfigDict, Field

from valuation.config import resolve_path

# The embedded default: one SQLite file in the project, shared by every proxy replica of `make
# stack`, the worker and the CLI (a relative SQLite path is taken from the project root).
DEFAULT_URL = "sqlite:///predictions.db"


class PredictionStoreSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    enabled: bool = True
    url: str | None = None
    migrate_on_start: bool = True
    buffer_rows: int = Field(100_000, ge=1)
    batch_rows: int = Field(2_000, ge=1)
    flush_interval_s: float = Field(0.5, gt=0)
    retry_backoff_s: float = Field(1.0, gt=0)
    retry_backoff_max_s: float = Field(30.0, gt=0)
    drop_log_interval_s: float = Field(60.0, gt=0)
    close_timeout_s: float = Field(10.0, ge=0)
    connect_timeout_s: int = Field(5, ge=1)
    write_timeout_s: float = Field(60.0, gt=0)
    feedback_max_rows: int = Field(10_000, ge=1)
    import_batch_rows: int = Field(1_000, ge=1)
    rejected_suffix: str = ".rejected.csv"

    @property
    def database_url(self) -> str:
        return database_url(self.url)


def store_settings(config: Any) -> PredictionStoreSettings:
    """The typed `prediction_store:` section of a composed serving config."""
    return PredictionStoreSettings.model_validate(OmegaConf.to_container(config.prediction_store,
                                                                         resolve=True))


def database_url(configured: str | None) -> str:
    """`configured` (default: DEFAULT_URL), a relative SQLite path made absolute under the
    project root, so every process opens the same file whatever its working directory."""
    url = configured or DEFAULT_URL
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(resolve_path(url.removeprefix(prefix)))
    return url
