"""Who prices a /predict request, and what is priced after it was answered.

- A request with an explicit `version` or `alias`, or any request while both fractions are 0,
  is priced as it asks (serving/prediction/pipeline.py), nothing else.
- Canary: with probability `canary`, a request without version or alias is answered by the
  challenger (`served_alias` "canary"), when the challenger is served and is not the champion's
  own version. If the challenger cannot answer it (its rules refuse a row, an asked extra it
  lacks, its server fails), the champion answers instead, counted in
  `valuation_canary_fallbacks_total`: a canary never turns an answer into an error. The
  champion then prices the same rows in the background (see background.py).
- Shadow: with probability `shadow`, a request the champion answered is also priced by the
  challenger in the background.

The draws are independent per request (`draw() < fraction`): 1.0 means every request,
0.0 none.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from serving.api import deps
from serving.api.observability import request_id_of
from serving.logging import get_logger
from serving.model_servers.served import ServedModel
from serving.prediction.pipeline import PricedRequest, price_request
from serving.prediction_store.proxy import served_alias
from serving.settings import ServingSettings
from serving.traffic.background import CANARY_REFERENCE, SHADOW, BackgroundJob

# Which requests the challenger sees: the OS's generator. Nothing here is a secret, but it costs
# nothing and leaves no predictable sequence a client could time its requests against.
draw = secrets.SystemRandom().random

log = get_logger("serving.traffic")

CANARY = "canary"


@dataclass(frozen=True)
class Routed:
    priced: PricedRequest
    served_alias: str  # champion, canary, explicit, <alias asked>, fallback
    background: BackgroundJob | None = None


async def price_routed(request: Request, settings: ServingSettings, *, model_name: str,
                       rows: Sequence[Any], version: str | None, alias: str | None,
                       trace: dict[str, Any], extras: Any = None) -> Routed:
    """Price a /predict request under the traffic split in force (see the module doc)."""
    split = request.app.state.traffic.split
    if version is not None or alias is not None or not split.on:
        priced = await price_request(request, settings, model_name=model_name, rows=rows,
                                     version=version, alias=alias, trace=trace, extras=extras)
        return _answered(request, priced, served_alias(version, alias,
                                                       priced.degraded_reason is not None))
    metrics = request.app.state.traffic_metrics
    challenger = _challenger(request, settings)
    if split.canary > 0 and draw() < split.canary:
        if challenger is None:
            metrics.canary_fallbacks.labels("no_challenger").inc()
        else:
            try:
                # Pinned to the version judged above (the alias may move meanwhile).
                priced = await price_request(
                    request, settings, model_name=model_name, rows=rows,
                    version=challenger.version, alias=None, trace=trace, extras=extras)
            except HTTPException as error:
                metrics.canary_fallbacks.labels(str(error.status_code)).inc()
                (log.warning if error.status_code >= 500 else log.info)(
                    "canary_fallback", challenger_version=challenger.version,
                    status=error.status_code, detail=str(error.detail)[:300])
            else:
                return _answered(request, priced, CANARY,
                                 BackgroundJob(CANARY_REFERENCE, version=None, alias=None))
    priced = await price_request(request, settings, model_name=model_name, rows=rows,
                                 version=None, alias=None, trace=trace, extras=extras)
    answered_by = served_alias(None, None, priced.degraded_reason is not None)
    background = None
    if split.shadow > 0 and answered_by == "champion" and draw() < split.shadow:
        if challenger is None or challenger.version == priced.served.version:
            metrics.background.labels(SHADOW, "no_challenger").inc()
        else:
            background = BackgroundJob(SHADOW, version=challenger.version,
                                       alias=settings.registry.challenger_alias)
    return _answered(request, priced, answered_by, background)


def _answered(request: Request, priced: PricedRequest, alias: str,
              background: BackgroundJob | None = None) -> Routed:
    request.app.state.traffic_metrics.requests_by_alias(alias).inc()
    return Routed(priced, alias, background)


def _challenger(request: Request, settings: ServingSettings) -> ServedModel | None:
    """The challenger's served model, when it is served and is not the champion's version."""
    supervisor = deps.supervisor(request)
    challenger = supervisor.served(alias=settings.registry.challenger_alias)
    champion = supervisor.current()
    if challenger is None or champion is None or challenger.version == champion.version:
        return None
    return challenger


def start_background(request: Request, key: Any, routed: Routed) -> None:
    """Start the request's background pricing, if it has one (after the answer was built). With
    the prediction store off there is nowhere to keep its prices, so none is started."""
    if routed.background is None:
        return
    writer = getattr(request.app.state, "prediction_store", None)
    if writer is None:
        request.app.state.traffic_metrics.background.labels(routed.background.purpose,
                                                            "no_store").inc()
        return
    request.app.state.traffic_background.start(
        routed.background, routed.priced.rows, writer=writer,
        request_id=request_id_of(request) or "", key_id=getattr(key, "key_id", None))
