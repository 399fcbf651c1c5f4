"""The FastAPI proxy: API keys, row validation, predictions forwarded to the model servers,
training jobs on Redis/RQ.

    uvicorn serving.app:app --host 127.0.0.1 --port 8000

Importing this module builds nothing but the routes and the typed settings: the lifespan starts
the model-server supervisor, opens one pooled keep-alive HTTP client to the model servers,
connects to Redis and builds the API-key store, and closes what it opened on shutdown. Tests pass
their own dependencies to `create_app`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from omegaconf import DictConfig
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from serving.api import (
    feedback,
    health,
    inference_v2,
    jobs,
    model_rules,
    models,
    monitoring,
    predict,
    training,
)
from serving.api.errors import install_exception_handlers
from serving.api.observability import ProxyMetrics, RequestContextMiddleware
from serving.collector import tune_after_start
from serving.logging import configure_logging, get_logger
from serving.monitoring.metrics import MonitoringCollector
from serving.prediction.service import PricingMetrics, PricingService
from serving.prediction_store.proxy import start_store
from serving.prediction_store.writer import StoreMetrics
from serving.ratelimit import RateLimiter
from serving.settings import ServingSettings, get_settings
from serving.traffic.background import BackgroundPricing
from serving.traffic.metrics import TrafficMetrics
from serving.traffic.switch import TrafficSwitch
from serving.ui import install_ui
from serving.upstream import ModelServerClient

log = get_logger("serving.app")

DESCRIPTION = """
Prices residential property in Santiago, Chile (in UF) with the registered model
`property_friends_best_model`, and trains new versions on request.

Send your key in the `X-API-Key` header (the **Authorize** button here does it for you).
Roles: `predict` may call /predict; `train` also /train, /job_status and /feedback; `admin`
everything.
`/health`, `/ready` and `/metrics` need no key.
"""

OPENAPI_TAGS = [
    {"name": "predict", "description": "Prices from the served model"},
    {"name": "inference (Open Inference Protocol V2)",
     "description": "KServe/Triton V2 endpoints: one input per feature column, output `price`"},
    {"name": "feedback", "description": "Observed prices (ground truth) for monitoring and retraining"},
    {"name": "training", "description": "Training jobs run by the worker (MLflow Project)"},
    {"name": "models", "description": "Registry: champion selection and what is served"},
    {"name": "health", "description": "Probes and metrics"},
    {"name": "ui", "description": "Web pages (HTML; the key is typed in the page). Also served: "
                                 "their assets under /ui/static and, for admin keys, the RQ "
                                 "dashboard under /rq"},
]


def create_app(
    supervisor: Any | None = None,
    key_store: Any | None = None,
    redis: Any | None = None,
    settings: DictConfig | None = None,
    audit_log: Any | None = None,
) -> FastAPI:
    """The proxy app. `settings` is the composed conf/serving.yaml (default: `get_settings()`);
    the handlers get it typed and checked (`ServingSettings`), built here once. Dependencies left
    as None are built (and closed) by the lifespan."""
    config = settings if settings is not None else get_settings()
    typed = ServingSettings.from_config(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(typed.proxy.log_level.upper())
        async with AsyncExitStack() as stack:
            _use_tracking_uri(typed.tracking_uri, stack)
            app.state.key_store = key_store or await _start_key_store(config, stack)
            app.state.redis = redis or _open_redis(config, stack)
            app.state.rate_limiter = RateLimiter.from_settings(typed.rate_limit, app.state.redis)
            stack.push_async_callback(app.state.rate_limiter.aclose)
            app.state.audit = audit_log or _open_audit_log(config, stack)
            app.state.supervisor = supervisor or await _start_supervisor(config, typed, stack)
            app.state.http = await stack.enter_async_context(ModelServerClient(typed))
            app.state.pricing = await stack.enter_async_context(
                PricingService.open(typed, config, app.state.http, app.state.pricing_metrics))
            app.state.prediction_store = await start_store(typed.prediction_store,
                                                           app.state.store_metrics, stack)
            await _start_traffic(app, typed, stack)
            log.info("proxy_started", model=typed.registry.model_name, queue=typed.jobs.queue,
                     key_store=getattr(app.state.key_store, "backend", "custom"))
            tune_after_start(typed.proxy.gc)
            yield
            log.info("proxy_stopping")

    app = FastAPI(
        title="Property valuation API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        # Browsers cannot send X-API-Key cross-site without a CORS preflight, so accepting a body
        # without Content-Type adds no CSRF exposure and keeps bare clients working.
        strict_content_type=False,
    )
    app.state.settings = typed
    app.state.serving_config = config
    app.state.metrics = ProxyMetrics()
    app.state.pricing_metrics = PricingMetrics(app.state.metrics.registry)
    app.state.store_metrics = StoreMetrics(app.state.metrics.registry)
    app.state.traffic_metrics = TrafficMetrics(app.state.metrics.registry)
    # The monitoring job's latest figures, read from Redis at each scrape (serving/monitoring/).
    app.state.metrics.registry.register(MonitoringCollector(
        lambda: getattr(app.state, "redis", None), str(config.monitoring_job.redis_prefix)))
    install_exception_handlers(app)
    for router in (predict.router, inference_v2.router, model_rules.router, feedback.router,
                   training.router, jobs.router, models.router, monitoring.router, health.router):
        app.include_router(router)
    install_ui(app, config)
    max_body = typed.proxy.max_body_bytes
    # Inner: cuts a streamed body without Content-Length as it is read (a 413 through our error
    # handler). Outer (added last): ids, logs, metrics, and a JSON 413 for declared sizes.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=max_body)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics,
                       max_body_bytes=max_body)
    return app


async def _start_traffic(app: FastAPI, typed: ServingSettings, stack: AsyncExitStack) -> None:
    """Shadow and canary traffic (serving/traffic/): the split in force, kept fresh, and the
    background pricings, cancelled first at shutdown (before the store and batcher close)."""
    app.state.traffic = await stack.enter_async_context(TrafficSwitch.running(
        typed.traffic, app.state.redis, app.state.supervisor, typed.registry.challenger_alias,
        app.state.traffic_metrics))
    app.state.traffic_background = BackgroundPricing(
        app.state.pricing, app.state.supervisor, typed.proxy, app.state.traffic_metrics,
        typed.traffic.max_background_in_flight)
    stack.push_async_callback(app.state.traffic_background.close)


def _use_tracking_uri(uri: str, stack: AsyncExitStack) -> None:
    """Point this process's MLflow at the settings' store. Registering a `models:/m-...` source
    resolves the logged model through MLflow's global URI, not the client's, so they must agree.
    (The registry URI follows the tracking URI when unset.) MLflow also exports it as env
    MLFLOW_TRACKING_URI; both are put back on shutdown."""
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    stack.callback(mlflow.set_tracking_uri, previous)  # None unsets the env var again


async def _start_key_store(settings: DictConfig, stack: AsyncExitStack) -> Any:
    from serving.keys.factory import build_key_store

    store = build_key_store(settings)
    await run_in_threadpool(store.start)
    stack.callback(store.close)
    return store


def _open_audit_log(settings: DictConfig, stack: AsyncExitStack) -> Any:
    from serving.audit import AuditLog

    trail = AuditLog.from_settings(settings)
    stack.callback(trail.close)
    return trail


def _open_redis(settings: DictConfig, stack: AsyncExitStack) -> Any:
    from serving.jobs.queue import redis_connection

    connection = redis_connection(settings)
    stack.callback(connection.close)
    return connection


async def _start_supervisor(
    config: DictConfig, typed: ServingSettings, stack: AsyncExitStack
) -> Any:
    from serving.model_servers.supervisor import ModelServerSupervisor

    supervisor = ModelServerSupervisor(config, typed.tracking_uri)
    await run_in_threadpool(supervisor.start)
    stack.callback(supervisor.stop)
    return supervisor


app = create_app()
