"""Liveness, readiness and metrics: no API key (probes and scrapers carry none)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.api import deps
from serving.api.schemas import ErrorResponse, HealthResponse, ReadyResponse
from serving.logging import get_logger
from serving.settings import ServingSettings
from serving.upstream import UpstreamTimeout, UpstreamUnavailable

router = APIRouter(tags=["health"])
log = get_logger("serving.api.health")


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Liveness: the proxy process answers",
    description="Checks nothing else, so a restart is never triggered by a dependency outage.",
)
async def health() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Readiness: the proxy can serve predictions and take jobs",
    description=(
        "Ready when the model server answers and serves the champion, Redis answers a PING, and "
        "the API-key store is healthy (or its cache is still valid). Otherwise 503, with "
        "`failed` naming each dependency that is not ready."
    ),
    responses={503: {"model": ReadyResponse, "description": "A dependency is not ready"}},
)
async def ready(
    request: Request, settings: ServingSettings = Depends(deps.settings)
) -> JSONResponse:
    checks = {
        "model_server": await _model_server_check(request, settings.proxy.ready_timeout_s),
        "redis": await _redis_check(request),
        "key_store": await _key_store_check(request),
    }
    failed = [name for name, check in checks.items() if not check["ok"]]
    body = ReadyResponse(status="not_ready" if failed else "ready", failed=failed, checks=checks)
    if failed:
        log.warning("not_ready", failed=failed)
    return JSONResponse(body.model_dump(), status_code=503 if failed else 200)


async def _model_server_check(request: Request, timeout: float) -> dict[str, Any]:
    supervisor = deps.supervisor(request)
    try:
        status = await run_in_threadpool(supervisor.status)
    except Exception as error:
        return {"ok": False, "detail": f"supervisor status failed: {error}"}
    check = {
        "ok": False,
        "state": status.get("state"),
        "version": status.get("version"),
        "detail": status.get("detail"),
    }
    served = supervisor.current()
    if status.get("state") != "serving" or served is None:
        return check
    try:
        answer = await deps.http_client(request).get(f"{served.base_url}/ping", timeout_s=timeout)
    except (UpstreamTimeout, UpstreamUnavailable) as error:
        check["detail"] = f"model server at {served.base_url} does not answer: {error}"
        return check
    check["ok"] = answer.status_code == 200
    if not check["ok"]:
        check["detail"] = f"model server /ping answered {answer.status_code}"
    return check


async def _redis_check(request: Request) -> dict[str, Any]:
    try:
        await run_in_threadpool(deps.redis(request).ping)
    except Exception as error:  # redis raises ConnectionError, TimeoutError, AuthenticationError
        return {"ok": False, "detail": f"{type(error).__name__}: {error}"}
    return {"ok": True}


async def _key_store_check(request: Request) -> dict[str, Any]:
    store = request.app.state.key_store
    try:
        healthy = await run_in_threadpool(store.healthy)
    except Exception as error:
        return {"ok": False, "detail": f"{type(error).__name__}: {error}"}
    check: dict[str, Any] = {"ok": bool(healthy), "backend": getattr(store, "backend", None)}
    if not healthy:
        check["detail"] = "key store unreachable and its cache has expired"
    return check


@router.get(
    "/metrics",
    summary="Prometheus metrics (no key: scraped from inside the deployment)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 500: {"model": ErrorResponse}},
)
async def metrics(proxy_metrics=Depends(deps.metrics)) -> Response:
    return Response(generate_latest(proxy_metrics.registry), media_type=CONTENT_TYPE_LATEST)
