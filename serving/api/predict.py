"""POST /predict: check rows with the served model's own rules, forward them to its server.

The rules (known types and sectors, area/room/bathroom ranges, coordinates inside greater
Santiago, row limit) are `ServedModel.rules`, read from the model's metadata: the same
`ValidationRules` the pyfunc applies, so the API and the model can never disagree on a row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from serving.api import deps
from serving.api.audit import audit, error_detail
from serving.api.auth import require
from serving.api.errors import AUTH_ERRORS, api_error, error_responses, field_errors, invalid
from serving.api.observability import request_id_of
from serving.api.schemas import PredictRequest, PredictResponse
from serving.keys.records import KeyRecord
from serving.logging import get_logger
from serving.roles import Capability
from serving.settings import ProxySettings, ServingSettings
from serving.upstream import UpstreamAnswer, UpstreamTimeout, UpstreamUnavailable
from valuation.model_runtime.schema import FEATURES
from valuation.model_runtime.validation import ValidationRules

router = APIRouter(tags=["predict"])
log = get_logger("serving.api.predict")


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Price properties with the served model",
    description=(
        "Every row is checked with the served model's rules before it is forwarded; a bad row "
        "gets 422 naming its index and field. `version` or `alias` pick a specific served "
        "version (default: the champion)."
    ),
    responses=error_responses({
        **AUTH_ERRORS,
        403: "The key's role may not predict",
        404: "Unknown model, or version/alias not served",
        422: "Rows that break the model's rules, or a body that is not a request",
        502: "The model server failed or answered something that is not a list of prices",
        503: "No model served, or its server is down",
        504: "The model server did not answer in time",
    }),
)
async def predict(
    body: PredictRequest,
    request: Request,
    key: KeyRecord = Depends(require(Capability.PREDICT)),
    settings: ServingSettings = Depends(deps.settings),
) -> Response:
    started = time.perf_counter()
    served_info: dict[str, Any] = {}
    try:
        response = await _predict(body, request, settings, key, started, served_info)
    except Exception as error:  # audited with its status, then answered as before
        audit(request, "predict", getattr(error, "status_code", 500), key, started,
              model_name=served_info.get("model_name", body.model_name),
              model_version=served_info.get("model_version"), inputs=body.features,
              detail=error_detail(error))
        raise
    audit(request, "predict", 200, key, started, model_name=served_info["model_name"],
          model_version=served_info["model_version"], inputs=body.features,
          outputs=served_info["predictions"], detail=served_info.get("degraded_reason"))
    return response


async def _predict(
    body: PredictRequest, request: Request, settings: ServingSettings, key: KeyRecord,
    started: float, served_info: dict[str, Any],
) -> Response:
    supervisor = deps.supervisor(request)
    model_name = settings.registry.model_name
    if body.model_name != model_name:
        raise api_error(404, f"unknown model '{body.model_name}'; this service serves '{model_name}'")
    if body.version is not None and body.alias is not None:
        raise invalid("version", "give either version or alias, not both")
    version = body.version
    degraded_reason = None
    if supervisor.current() is None:
        status = supervisor.status()
        fallback = (_fallback_version(status) if body.version is None and body.alias is None
                    and settings.proxy.degraded_fallback else None)
        if fallback is None:
            raise api_error(
                503,
                f"no model is being served right now ({status.get('state')}: "
                f"{status.get('detail')}); retry shortly",
            )
        version = fallback
        degraded_reason = (f"the champion's model server is down ({status.get('state')}: "
                           f"{status.get('detail')}); served version {fallback}, still loaded")
        log.warning("prediction_degraded", served_version=fallback, reason=degraded_reason)
    with supervisor.use(version=version, alias=body.alias) as served:
        if served is None and degraded_reason is not None:  # the fallback went away meanwhile
            raise api_error(503, "no model is being served right now; retry shortly")
        if served is None:
            raise api_error(404, _not_served_message(body.version, body.alias, supervisor))
        served_info.update(model_name=served.name, model_version=served.version)
        errors = await _row_errors(body.features, served.rules, settings.proxy)
        if errors:
            _count(request, served.version, "invalid")
            raise api_error(422, errors)
        predictions = await _invoke(request, served, body.features)
    served_info["predictions"] = predictions
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    request_id = request_id_of(request)
    # Inputs and outputs go to the audit trail only: the log stays small and free of client data.
    log.info(
        "prediction",
        key_id=key.key_id,
        model_name=served.name,
        model_version=served.version,
        n_rows=len(predictions),
        latency_ms=latency_ms,
    )
    _count(request, served.version, "ok")
    deps.metrics(request).predictions.labels(served.version).inc(len(predictions))
    payload = {
        "model_name": served.name,
        "model_version": served.version,
        "request_id": request_id,
        "predictions": predictions,
    }
    if degraded_reason is not None:
        payload.update(degraded=True, served_version=served.version, degraded_reason=degraded_reason)
        served_info["degraded_reason"] = degraded_reason
    return Response(orjson.dumps(payload), media_type="application/json")


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


async def _row_errors(
    features: Sequence[Any], rules: ValidationRules, proxy: ProxySettings
) -> list[dict[str, Any]]:
    limit = min(proxy.max_rows, int(rules.max_rows))
    if not features:
        return field_errors([(None, "features", "give at least one row")])
    if len(features) > limit:
        return field_errors([(None, "features", f"{len(features)} rows exceed the limit of {limit}")])
    if len(features) > proxy.validate_in_thread_rows:
        return await run_in_threadpool(_check_rows, features, rules)
    return _check_rows(features, rules)


def _check_rows(features: Sequence[Any], rules: ValidationRules) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for index, row in enumerate(features):
        if not isinstance(row, dict):
            errors += field_errors(
                [(index, None, f"must be an object with the fields {', '.join(FEATURES)}")])
            continue
        errors += field_errors((e.row, e.field, e.message) for e in rules.row_errors(row, index))
    return errors


async def _invoke(request: Request, served: Any, features: Sequence[dict[str, Any]]) -> list[float]:
    """POST the rows to the model server (`{"inputs": [row, ...]}`, the form a type-hinted pyfunc
    takes without building a DataFrame); returns one price per row."""
    payload = orjson.dumps({"inputs": [{name: row[name] for name in FEATURES} for row in features]})
    url = f"{served.base_url}/invocations"
    try:
        answer = await deps.http_client(request).post_json(url, payload)
    except UpstreamTimeout:
        _count(request, served.version, "timeout")
        raise api_error(504, f"model version {served.version} did not answer in time") from None
    except UpstreamUnavailable as error:
        _count(request, served.version, "unavailable")
        log.error("model_server_unreachable", url=url, error=repr(error))
        raise api_error(503, f"model version {served.version} is unreachable; retry shortly") from None
    if 400 <= answer.status_code < 500:
        _count(request, served.version, "rejected")
        raise invalid(None, _upstream_message(answer))
    if answer.status_code != 200:
        _count(request, served.version, "upstream_error")
        log.error("model_server_error", url=url, status=answer.status_code,
                  body=answer.text[:500])
        raise api_error(502, f"model version {served.version} failed ({answer.status_code}): "
                             f"{_upstream_message(answer)}")
    return _predictions(answer, len(features), served.version)


def _upstream_message(answer: UpstreamAnswer) -> str:
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        return answer.text[:1000] or f"HTTP {answer.status_code}"
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(body)[:1000]


def _predictions(answer: UpstreamAnswer, expected: int, version: str) -> list[float]:
    try:
        body = orjson.loads(answer.content)
        values = body["predictions"] if isinstance(body, dict) else body
        predictions = [float(v) for v in values]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise api_error(502, f"model version {version} answered something that is not a list "
                             "of prices") from None
    if len(predictions) != expected or not all(math.isfinite(p) for p in predictions):
        raise api_error(502, f"model version {version} answered {len(predictions)} values for "
                             f"{expected} rows, or non-finite prices")
    return predictions


def _count(request: Request, version: str, outcome: str) -> None:
    deps.metrics(request).prediction_requests.labels(version, outcome).inc()
