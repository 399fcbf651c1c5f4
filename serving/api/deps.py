"""The app's shared objects (built in the lifespan, kept on `app.state`) as FastAPI dependencies."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from omegaconf import DictConfig
from redis import Redis

from serving.api.observability import ProxyMetrics
from serving.upstream import ModelServerClient
from valuation.config import tracking_uri as default_tracking_uri


def settings(request: Request) -> DictConfig:
    return request.app.state.settings


def supervisor(request: Request) -> Any:
    return request.app.state.supervisor


def http_client(request: Request) -> ModelServerClient:
    return request.app.state.http


def redis(request: Request) -> Redis:
    return request.app.state.redis


def metrics(request: Request) -> ProxyMetrics:
    return request.app.state.metrics


def tracking_uri_of(app_settings: DictConfig) -> str:
    """The MLflow tracking (and registry) URI of these settings."""
    return app_settings.mlflow.tracking_uri or default_tracking_uri()


def tracking_uri(request: Request) -> str:
    return tracking_uri_of(settings(request))
