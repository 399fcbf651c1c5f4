"""Writing the audit trail (serving/audit.py) from request handlers: one call per outcome."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request

from serving.api.observability import request_id_of
from serving.keys.records import KeyRecord


def audit(
    request: Request,
    action: str,
    status: int,
    key: KeyRecord | None,
    started: float | None = None,
    **fields: Any,
) -> None:
    """Append one event for this request (a no-op when the app has no audit log)."""
    trail = getattr(request.app.state, "audit", None)
    if trail is None:
        return
    latency_ms = round((time.perf_counter() - started) * 1000, 3) if started is not None else None
    trail.record(
        action,
        status=status,
        request_id=request_id_of(request),
        key_id=key.key_id if key else None,
        role=key.role if key else None,
        latency_ms=latency_ms,
        **fields,
    )


def error_detail(error: Exception) -> Any:
    """What an HTTPException told the client (already free of secrets)."""
    return getattr(error, "detail", None) or str(error)
