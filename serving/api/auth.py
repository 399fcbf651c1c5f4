"""API-key authentication and role checks, as FastAPI dependencies.

The key travels in the `X-API-Key` header (declared with `APIKeyHeader`, so Swagger's "Authorize"
button works). 401: no key or an unknown key; 403: the key's role lacks the capability;
503: the key store cannot answer (Vault down and the cache expired). The key itself is never
logged: only its `key_id`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from fastapi import Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader

from serving.api.errors import api_error
from serving.keys import KeyRecord, KeyStoreUnavailable
from serving.logging import get_logger
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
        if not api_key:
            raise api_error(401, f"missing API key: send it in the {API_KEY_HEADER} header", _CHALLENGE)
        store = request.app.state.key_store
        try:
            record = await run_in_threadpool(store.verify, api_key)
        except KeyStoreUnavailable as error:
            log.error("key_store_unavailable", error=str(error))
            raise api_error(503, "the API key store is unavailable; retry shortly") from None
        if record is None:
            log.warning("auth_rejected", reason="unknown key", capability=str(capability))
            raise api_error(401, "invalid API key", _CHALLENGE)
        structlog.contextvars.bind_contextvars(key_id=record.key_id)
        if not role_allows(record.role, capability):
            log.warning("auth_forbidden", role=record.role, capability=str(capability))
            raise api_error(
                403, f"role '{record.role}' may not use '{capability}'"
            )
        return record

    return authenticated_key
