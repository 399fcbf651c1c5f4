"""POST /predict: price the rows with the served model (serving/prediction/pipeline.py: its own
rules, the prediction cache, the micro-batcher) or, for a canary request, the challenger
(serving/traffic/), answer, audit the request, and start its shadow pricing if it has one.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from serving.api import deps
from serving.api import extras as predict_extras
from serving.api.auth import require
from serving.api.errors import AUTH_ERRORS, error_responses
from serving.api.observability import request_id_of
from serving.api.schemas import PredictRequest, PredictResponse
from serving.keys.records import KeyRecord
from serving.prediction.pipeline import audit_priced, audit_refused
from serving.prediction_store.proxy import store_predictions
from serving.roles import Capability
from serving.settings import ServingSettings
from serving.traffic.routing import price_routed, start_background

router = APIRouter(tags=["predict"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Price properties with the served model",
    description=(
        "Every row is checked with the served model's rules before it is forwarded; a bad row "
        "gets 422 naming its index and field. `version` or `alias` pick a specific served "
        "version (default: the champion; with canary traffic on, a share of requests without "
        "them is answered by the challenger). `served_alias` says who answered."
    ),
    responses=error_responses({
        **AUTH_ERRORS,
        403: "The key's role may not predict (or may not see comparables)",
        404: "Unknown model, or version/alias not served",
        409: "The served version cannot give an asked extra (e.g. no interval calibration)",
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
    trace: dict[str, Any] = {}
    extras = predict_extras.requested(body, settings.predict_extras)
    predict_extras.require_comparables(request, key, extras)
    try:
        routed = await price_routed(request, settings, model_name=body.model_name,
                                    rows=body.features, version=body.version, alias=body.alias,
                                    trace=trace, extras=extras)
    except Exception as error:  # audited with its status, then answered as before
        audit_refused(request, key, started, trace, body.model_name, body.features, error)
        raise
    priced = routed.priced
    audit_priced(request, key, started, priced, routed.served_alias)
    store_predictions(request, key, priced.served, body.features, priced.predictions,
                      routed.served_alias)
    payload = {
        "model_name": priced.served.name,
        "model_version": priced.served.version,
        "request_id": request_id_of(request),
        "predictions": priced.predictions,
        "served_alias": routed.served_alias,
        **priced.extra_fields,
    }
    if priced.degraded_reason is not None:
        payload.update(degraded=True, served_version=priced.served.version,
                       degraded_reason=priced.degraded_reason)
    start_background(request, key, routed)
    return Response(orjson.dumps(payload), media_type="application/json")
