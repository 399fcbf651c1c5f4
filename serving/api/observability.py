"""Request ids, access logs, Prometheus metrics, and the last line of defence against a 500 with
a stack trace. One ASGI middleware wraps the whole app so every response carries `X-Request-ID`,
every request is logged and counted, and an unhandled error becomes a JSON body with the id."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.logging import get_logger
from serving.metric_children import Children

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is echoed and logged, so it must be short and printable.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

log = get_logger("serving.api")


class ProxyMetrics:
    """The proxy's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "valuation_http_requests_total",
            "HTTP requests by endpoint (route template), method and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "valuation_http_request_duration_seconds",
            "HTTP request latency by endpoint and method",
            ["endpoint", "method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.predictions = Counter(
            "valuation_predictions_total",
            "Rows priced, by model version",
            ["model_version"],
            registry=self.registry,
        )
        self.prediction_requests = Counter(
            "valuation_prediction_requests_total",
            "Prediction requests by model version and outcome",
            ["model_version", "outcome"],
            registry=self.registry,
        )
        self.jobs_enqueued = Counter(
            "valuation_training_jobs_enqueued_total",
            "Training jobs put on the queue",
            registry=self.registry,
        )
        # The children the proxy counts on every request, looked up without labels()' cost.
        self.request_count = Children(self.requests)
        self.request_latency = Children(self.latency)
        self.rows_priced = Children(self.predictions)
        self.prediction_outcomes = Children(self.prediction_requests)


def request_id_of(scope_or_request: Any) -> str | None:
    """The id the middleware gave this request (from a Request or an ASGI scope)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    return scope.get("state", {}).get("request_id")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ProxyMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        # Declared sizes are refused here, with our JSON body; a streamed body without a length
        # is cut by the RequestBodyLimitMiddleware inside (same setting) while it is read.
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response_status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal response_status, response_started
            if message["type"] == "http.response.start":
                response_status = message["status"]
                response_started = True
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        started = time.perf_counter()
        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                too_large = JSONResponse(
                    {"detail": f"request body of {declared} bytes exceeds the limit of "
                               f"{self.max_body_bytes} bytes", "request_id": request_id},
                    status_code=413,
                )
                await too_large(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled_error", method=scope["method"], path=scope["path"])
            if response_started:
                raise  # headers are gone: nothing better can be sent
            response_status = 500
            response = JSONResponse(
                {"detail": "internal error; quote the request id when reporting it",
                 "request_id": request_id},
                status_code=500,
                headers={REQUEST_ID_HEADER: request_id},
            )
            await response(scope, receive, send)
        finally:
            elapsed = time.perf_counter() - started
            endpoint = _endpoint_label(scope)
            self.metrics.request_count(endpoint, scope["method"], str(response_status)).inc()
            self.metrics.request_latency(endpoint, scope["method"]).observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                endpoint=endpoint,
                status=response_status,
                latency_ms=round(elapsed * 1000, 3),
            )
            structlog.contextvars.clear_contextvars()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1").strip()
            return candidate if _VALID_REQUEST_ID.fullmatch(candidate) else None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _endpoint_label(scope: Scope) -> str:
    # The route template (/job_status/{job_id}), never the raw path: bounded label values.
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
