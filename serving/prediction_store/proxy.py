"""The prediction store inside the proxy: opened by the app's lifespan, fed by /predict.

`start_store` opens the database, applies the migrations (`prediction_store.migrate_on_start`;
when the database is unreachable the proxy starts anyway and the writer migrates once it can)
and starts the writer; `store_predictions` is the one call /predict and /v2 infer make once a
version has answered; `submit_prices` is how a background (shadow) price reaches the store.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from serving.api.observability import request_id_of
from serving.logging import get_logger
from serving.prediction_store.engine import open_engine
from serving.prediction_store.settings import PredictionStoreSettings
from serving.prediction_store.writer import PredictionWriter, PricedRequest, StoreMetrics, Unreachable
from serving.redaction import redact_uri

log = get_logger("serving.prediction_store")


async def start_store(settings: PredictionStoreSettings, metrics: StoreMetrics,
                      stack: AsyncExitStack) -> Any:
    """The running PredictionWriter (closed with `stack`), or None when the store is disabled.
    `metrics` are made once per app (its lifespan may run more than once, e.g. under tests)."""
    if not settings.enabled:
        log.info("prediction_store_disabled")
        return None
    url = settings.database_url
    writer = PredictionWriter(open_engine(url, settings.connect_timeout_s), settings,
                              metrics)
    try:
        await run_in_threadpool(writer.prepare)
    except Unreachable as error:
        log.error("prediction_store_unavailable_at_start", url=redact_uri(url),
                  error=str(error.__cause__ or error).splitlines()[0][:300])
    writer.start()
    stack.callback(writer.close)
    log.info("prediction_store_started", url=redact_uri(url), migrated=writer.prepared)
    return writer


def served_alias(version: str | None, alias: str | None, degraded: bool) -> str:
    """What `predictions.served_alias` says about who answered (see tables.SERVED_ALIASES)."""
    if degraded:
        return "fallback"
    if version is not None:
        return "explicit"
    return alias or "champion"


def store_predictions(request: Request, key: Any, served: Any, features: Any, prices: list[float],
                      alias: str) -> None:
    """Hand the answered rows of this request to the writer (never blocks, never raises for the
    store's sake: a full buffer only counts the loss). `alias`: see `served_alias`."""
    writer = getattr(request.app.state, "prediction_store", None)
    if writer is None:
        return
    submit_prices(writer, request_id=request_id_of(request) or "",
                  key_id=getattr(key, "key_id", None), served=served, features=features,
                  prices=prices, alias=alias)


def submit_prices(writer: PredictionWriter, *, request_id: str, key_id: str | None, served: Any,
                  features: Any, prices: list[float], alias: str) -> None:
    """The rows of one request priced by `served`, to the writer (a shadow price too, after the
    request was answered)."""
    writer.submit(PricedRequest(
        request_id=request_id, key_id=key_id, model_name=served.name,
        model_version=served.version, served_alias=alias, created_at=datetime.now(UTC),
        features=features, prices=prices))
