"""The app's shared objects (built in the lifespan, kept on `app.state`) as FastAPI dependencies."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import Request
from omegaconf import DictConfig
from redis import Redis

from serving.api.observability import ProxyMetrics


def settings(request: Request) -> DictConfig:
    return request.app.state.settings


def supervisor(request: Request) -> Any:
    return request.app.state.supervisor


def http_client(request: Request) -> httpx.AsyncClient:
    return request.app.state.http


def redis(request: Request) -> Redis:
    return request.app.state.redis


def metrics(request: Request) -> ProxyMetrics:
    return request.app.state.metrics
