"""The pricing of one request, for every route that prices (`/predict`, `/v2/.../infer`):

    resolve the served version -> check the rows with its rules (422 naming row and field)
    -> cache lookup per row -> misses priced through the batcher -> cache store -> PricedRequest

The route then answers in its own format and writes the audit line. `PricedRequest` is the one
place where a request's served version and prices are known: what is done with a priced request
(the prediction store, shadow traffic) starts from it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from serving.api import deps
from serving.api import extras as predict_extras
from serving.api.audit import audit, error_detail
from serving.api.errors import api_error, invalid
from serving.keys.records import KeyRecord
from serving.logging import get_logger
from serving.model_servers.served import ServedModel
from serving.prediction.model_call import PricingFailure, post_invocation
from serving.prediction.rows import row_errors
from serving.settings import ServingSettings

log = get_logger("serving.api.predict")


@dataclass(frozen=True)
class PricedRequest:
    served: ServedModel
    rows: Sequence[dict[str, Any]]
    predictions: list[float]
    cached_rows: list[int]  # indices of the rows answered from the prediction cache
    degraded_reason: str | None  # set when another loaded version answered for the champion
    latency_ms: float
    # Intervals, explanations, comparables (serving/api/extras.py): response field -> one per row,
    # and what the audit line keeps of them.
    extra_fields: dict[str, list[Any]] = field(default_factory=dict)
    extras_audit: dict[str, Any] | None = None


async def price_request(
    request: Request, settings: ServingSettings, *, model_name: str, rows: Sequence[Any],
    version: str | None, alias: str | None, trace: dict[str, Any],
    extras: predict_extras.Extras | None = None,
) -> PricedRequest:
    """Price `rows` with the version the request asks for (the champion by default). Raises an
    HTTPException (404, 422, 502, 503, 504) the route renders. `trace` gets `model_name` and
    `model_version` as soon as they are known, for the audit line of a failed request."""
    started = time.perf_counter()
    served_name = settings.registry.model_name
    if model_name != served_name:
        raise api_error(404, f"unknown model '{model_name}'; this service serves '{served_name}'")
    if version is not None and alias is not None:
        raise invalid("version", "give either version or alias, not both")
    supervisor = deps.supervisor(request)
    with _served_model(supervisor, settings, version, alias) as (served, degraded_reason):
        trace.update(model_name=served.name, model_version=served.version)
        errors = await row_errors(rows, served.rules, settings.proxy)
        if errors:
            _count(request, served.version, "invalid")
            raise api_error(422, errors)
        try:
            if extras is not None and extras.any and (extras := predict_extras.for_model(extras, served)).any:
                # Asked extras bypass the cache and the batcher: one call with the request's params.
                return await _price_with_extras(request, served, rows, extras, degraded_reason, started)
            priced = await request.app.state.pricing.price(served, rows)
        except PricingFailure as failure:
            _count(request, served.version, failure.outcome)
            raise api_error(failure.status_code, failure.detail) from None
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    # Inputs and outputs go to the audit trail only: the log stays small and free of client data.
    log.info("prediction", model_name=served.name, model_version=served.version,
             n_rows=len(priced.prices), cached_rows=len(priced.cached_rows), latency_ms=latency_ms)
    _count(request, served.version, "ok")
    deps.metrics(request).rows_priced(served.version).inc(len(priced.prices))
    return PricedRequest(served, rows, priced.prices, priced.cached_rows, degraded_reason,
                         latency_ms)


async def _price_with_extras(request: Request, served: ServedModel, rows: Sequence[dict[str, Any]],
                             extras: predict_extras.Extras, degraded_reason: str | None,
                             started: float) -> PricedRequest:
    answer = await post_invocation(deps.http_client(request), served,
                                   predict_extras.invocation_body(rows, extras))
    prices, fields = predict_extras.parse_answer(answer, len(rows), served.version, extras)
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    log.info("prediction", model_name=served.name, model_version=served.version, n_rows=len(prices),
             extras=extras.names(), latency_ms=latency_ms)
    _count(request, served.version, "ok")
    deps.metrics(request).rows_priced(served.version).inc(len(prices))
    return PricedRequest(served, rows, prices, [], degraded_reason, latency_ms, fields,
                         predict_extras.audit_fields(extras, fields))


def audit_priced(request: Request, key: KeyRecord, started: float, priced: PricedRequest,
                 served_alias: str | None = None) -> None:
    """The audit line of a priced request; rows answered from the prediction cache are named,
    and who answered when it was not the champion as such (`served_alias`: canary, explicit,
    fallback, an alias asked), like the cache field: a plain line keeps its usual fields."""
    cache = None
    if priced.cached_rows:
        cache = {"hit_rows": priced.cached_rows, "hits": len(priced.cached_rows),
                 "misses": len(priced.predictions) - len(priced.cached_rows)}
    audit(request, "predict", 200, key, started, model_name=priced.served.name,
          model_version=priced.served.version, inputs=priced.rows, outputs=priced.predictions,
          detail=priced.degraded_reason, cache=cache, extras=priced.extras_audit,
          served_alias=served_alias if served_alias != "champion" else None)


def audit_refused(request: Request, key: KeyRecord, started: float, trace: dict[str, Any],
                  model_name: str, rows: Any, error: Exception) -> None:
    """The audit line of a request that got no prices, with its status."""
    audit(request, "predict", getattr(error, "status_code", 500), key, started,
          model_name=trace.get("model_name", model_name), model_version=trace.get("model_version"),
          inputs=rows, detail=error_detail(error))


@contextmanager
def _served_model(
    supervisor: Any, settings: ServingSettings, version: str | None, alias: str | None
) -> Iterator[tuple[ServedModel, str | None]]:
    """The model server to price with, leased (not stopped) while the block runs, and why it is
    not the champion's when the champion's server is down (a degraded answer)."""
    degraded_reason = None
    if supervisor.current() is None:
        status = supervisor.status()
        fallback = (_fallback_version(status) if version is None and alias is None
                    and settings.proxy.degraded_fallback else None)
        if fallback is None:
            raise api_error(503, f"no model is being served right now ({status.get('state')}: "
                                 f"{status.get('detail')}); retry shortly")
        version = fallback
        degraded_reason = (f"the champion's model server is down ({status.get('state')}: "
                           f"{status.get('detail')}); served version {fallback}, still loaded")
        log.warning("prediction_degraded", served_version=fallback, reason=degraded_reason)
    with supervisor.use(version=version, alias=alias) as served:
        if served is None and degraded_reason is not None:  # the fallback went away meanwhile
            raise api_error(503, "no model is being served right now; retry shortly")
        if served is None:
            raise api_error(404, _not_served_message(version, alias, supervisor))
        yield served, degraded_reason


def _fallback_version(status: dict[str, Any]) -> str | None:
    """The newest other version still loaded and answering (e.g. the challenger's server, or the
    previous champion while it drains), or None."""
    loaded = [str(s["version"]) for s in status.get("servers", [])
              if s.get("version") and s.get("phase") in ("ready", "draining")]
    numbered = [v for v in loaded if v.isdigit()]
    return max(numbered, key=int) if numbered else None


def _not_served_message(version: str | None, alias: str | None, supervisor: Any) -> str:
    status = supervisor.status()
    served = sorted({s["version"] for s in status.get("servers", []) if s.get("version")})
    wanted = f"version {version}" if version is not None else f"alias '{alias}'"
    if version is not None and alias is not None:
        wanted = f"version {version} under alias '{alias}'"
    return f"{wanted} is not being served; served versions: {', '.join(served) or 'none'}"


def _count(request: Request, version: str, outcome: str) -> None:
    deps.metrics(request).prediction_outcomes(version, outcome).inc()
