"""API-key authentication and role checks, as FastAPI dependencies.

The key travels in the `X-API-Key` header (declared with `APIKeyHeader`, so Swagger's "Authorize"
button works). 401: no key or an unknown key; 403: the key's role lacks the capability;
503: the key store cannot answer (Vault down and the cache expired). The key itself is never
logged: only its `key_id`.

After the role check, the key's request is counted by the rate limiter (serving/ratelimit.py):
429 with `Retry-After` over the limit. When Redis cannot count, capabilities listed in
`rate_limit.fail_open` (predictions) pass unchecked and the log says so; the others get 503.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from fastapi import HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader

from serving.api.audit import audit, error_detail
from serving.api.errors import api_error
from serving.keys.records import KeyRecord
from serving.keys.store import NOT_CACHED, KeyStoreUnavailable
from serving.logging import get_logger
from serving.ratelimit import RateLimitUnavailable
from serving.roles import Capability, role_allows

API_KEY_HEADER = "X-API-Key"

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    description="An API key created with `valuation keys create --owner NAME --role ROLE`.",
    auto_error=False,  # we answer 401 ourselves, with our error body
)

log = get_logger("serving.auth")

_CHALLENGE = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}


def require(capability: Capability) -> Callable[..., Awaitable[KeyRecord]]:
    """A dependency that returns the caller's KeyRecord if its role grants `capability`."""

    async def authenticated_key(
        request: Request, api_key: str | None = Security(api_key_header)
    ) -> KeyRecord:
        found: list[KeyRecord] = []
        try:
            return await _authenticate(request, api_key, capability, found)
        except HTTPException as error:  # every refusal is in the audit trail (never the key)
            audit(request, f"denied:{capability}", error.status_code, found[0] if found else None,
                  detail=error_detail(error))
            raise

    return authenticated_key


async def _authenticate(
    request: Request, api_key: str | None, capability: Capability, found: list[KeyRecord]
) -> KeyRecord:
    if not api_key:
        raise api_error(401, f"missing API key: send it in the {API_KEY_HEADER} header", _CHALLENGE)
    store = request.app.state.key_store
    try:
        # A cached key is answered on the event loop; only a Vault round trip goes to a thread
        # (the hop costs more than the check itself on the hot path).
        record = store.verify_cached(api_key)
        if record is NOT_CACHED:
            record = await run_in_threadpool(store.verify, api_key)
    except KeyStoreUnavailable as error:
        log.error("key_store_unavailable", error=str(error))
        raise api_error(503, "the API key store is unavailable; retry shortly") from None
    if record is None:
        log.warning("auth_rejected", reason="unknown key", capability=str(capability))
        raise api_error(401, "invalid API key", _CHALLENGE)
    structlog.contextvars.bind_contextvars(key_id=record.key_id)
    found.append(record)
    if not role_allows(record.role, capability):
        log.warning("auth_forbidden", role=record.role, capability=str(capability))
        raise api_error(
            403, f"role '{record.role}' may not use '{capability}'"
        )
    await _enforce_rate_limit(request, record, capability)
    return record


async def _enforce_rate_limit(request: Request, record: KeyRecord, capability: Capability) -> None:
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is None or limiter.rate_for(record.role) is None:
        return
    try:
        decision = await limiter.hit_async(record.key_id, record.role)  # no thread-pool hop
    except RateLimitUnavailable as error:
        settings = request.app.state.settings.rate_limit
        if capability in settings.fail_open:
            _log_fail_open(request.app.state, settings.unavailable_log_every_s, error)
            return
        log.error("rate_limit_unavailable", capability=str(capability), fail_open=False,
                  error=str(error))
        raise api_error(
            503, f"the rate limiter (Redis) is unavailable, so '{capability}' is refused; retry shortly"
        ) from None
    if not decision.allowed:
        log.warning("rate_limited", role=record.role, limit=str(decision.rate),
                    retry_after_s=decision.retry_after_s)
        raise api_error(
            429,
            f"rate limit of {decision.rate} exceeded for this key; retry in "
            f"{decision.retry_after_s} s",
            {"Retry-After": str(decision.retry_after_s), "X-RateLimit-Limit": str(decision.rate.limit)},
        )


def _log_fail_open(state, every_s: float, error: RateLimitUnavailable) -> None:
    # Once per `every_s`: under load an outage would otherwise write a line per request.
    now = time.monotonic()
    if now - getattr(state, "rate_limit_unavailable_logged_at", float("-inf")) >= every_s:
        state.rate_limit_unavailable_logged_at = now
        log.error("rate_limit_unavailable", fail_open=True, error=str(error),
                  effect="rate limits are NOT enforced for predictions while Redis is down")
