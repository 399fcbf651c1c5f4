"""The app's shared objects (built in the lifespan, kept on `app.state`), for handlers.

`settings` is a FastAPI dependency and `async def` on purpose: FastAPI runs a plain `def`
dependency in a worker thread, a hop that costs more than the lookup itself on the hot path. The
others are called with the request where a handler's helpers need them.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from omegaconf import DictConfig
from redis import Redis

from serving.api.observability import ProxyMetrics
from serving.settings import ServingSettings
from serving.upstream import ModelServerClient


async def settings(request: Request) -> ServingSettings:
    """The proxy's typed settings, built once by `create_app`."""
    return request.app.state.settings


def serving_config(request: Request) -> DictConfig:
    """The composed conf/serving.yaml, for the serving modules that take it whole (jobs)."""
    return request.app.state.serving_config


def supervisor(request: Request) -> Any:
    return request.app.state.supervisor


def http_client(request: Request) -> ModelServerClient:
    return request.app.state.http


def redis(request: Request) -> Redis:
    return request.app.state.redis


def metrics(request: Request) -> ProxyMetrics:
    return request.app.state.metrics
