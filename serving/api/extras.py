"""What /predict adds beside the prices when asked: intervals, explanations, comparable listings.

The model computes them (valuation/model_runtime/extras.py); the proxy decides who may ask
(comparables need the `comparables` capability: they are the client's own training listings),
whether the served version can answer (its metadata lists what it can add; a version logged
before these existed answers 409 rather than silently giving a bare price), and forwards them as
MLflow `params`: `{"inputs": [...], "params": {"interval": 0.8, "explain": true, "comparables": 3}}`.
A request that asks for nothing keeps the plain path (`{"inputs": [...]}`, a list of prices).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request

from serving.api.audit import audit, error_detail
from serving.api.errors import api_error
from serving.keys.records import KeyRecord
from serving.roles import Capability, role_allows
from serving.settings import PredictExtrasSettings
from serving.upstream import UpstreamAnswer
from valuation.model_runtime.extras import METADATA_KEY
from valuation.model_runtime.schema import FEATURES

# Response field of each extra, and the key of each row's answer from the model.
RESPONSE_FIELDS = {"interval": "intervals", "explain": "explanations", "comparables": "comparables"}
_ROW_KEYS = {"interval": "interval", "explain": "explanation", "comparables": "comparables"}


@dataclass(frozen=True)
class Extras:
    """What one request gets beside its prices."""

    interval: float | None = None
    explain: bool = False
    comparables: int = 0
    interval_asked: bool = False  # False: given unasked by config, skipped for a model without one

    @property
    def any(self) -> bool:
        return self.interval is not None or self.explain or self.comparables > 0

    def names(self) -> list[str]:
        return [name for name, on in (("interval", self.interval is not None),
                                      ("explain", self.explain),
                                      ("comparables", self.comparables > 0)) if on]

    def params(self) -> dict[str, Any]:
        return {"interval": self.interval or 0.0, "explain": self.explain,
                "comparables": self.comparables}


def requested(body: Any, settings: PredictExtrasSettings) -> Extras:
    """The extras a request gets: what it asks, plus an interval at the configured level when
    the config gives one unasked."""
    interval = body.interval
    asked = interval is not None
    if interval is None and settings.interval_unasked:
        interval = settings.interval_default_level
    return Extras(interval=interval, explain=body.explain, comparables=body.comparables,
                  interval_asked=asked)


def require_comparables(request: Request, key: KeyRecord, extras: Extras) -> None:
    """403 (audited) when comparables are asked by a key whose role does not grant them."""
    if extras.comparables and not role_allows(key.role, Capability.COMPARABLES):
        error = api_error(403, f"role '{key.role}' may not use '{Capability.COMPARABLES}': "
                               "comparables are the training listings; ask an admin")
        audit(request, f"denied:{Capability.COMPARABLES}", 403, key, detail=error_detail(error))
        raise error


def for_model(extras: Extras, served: Any) -> Extras:
    """`extras` this served version can give: 409 naming the version for what it cannot, except
    an interval the config adds unasked (dropped for a version without calibration)."""
    available = set((served.metadata or {}).get(METADATA_KEY) or [])
    if extras.interval is not None and not extras.interval_asked and "interval" not in available:
        extras = Extras(explain=extras.explain, comparables=extras.comparables)
    missing = [name for name in extras.names() if name not in available]
    if missing:
        what = {"interval": "no interval calibration", "explain": "no explanations",
                "comparables": "no comparable listings stored"}
        raise api_error(409, "; ".join(f"model version {served.version} has {what[name]}"
                                       for name in missing)
                        + " (retrain it with this release, or ask without it)")
    return extras


def invocation_body(features: Sequence[dict[str, Any]], extras: Extras) -> bytes:
    return orjson.dumps({"inputs": [{name: row[name] for name in FEATURES} for row in features],
                         "params": extras.params()})


def parse_answer(answer: UpstreamAnswer, expected: int, version: str,
                 extras: Extras) -> tuple[list[float], dict[str, list[Any]]]:
    """(prices, {response field: one entry per row}) from the model server's answer."""
    try:
        body = orjson.loads(answer.content)
        rows = body["predictions"] if isinstance(body, dict) else body
        prices = [float(row["price"]) for row in rows]
        fields = {RESPONSE_FIELDS[name]: [row[_ROW_KEYS[name]] for row in rows]
                  for name in extras.names()}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise api_error(502, f"model version {version} answered something that is not one "
                             "object per row with the asked extras") from None
    if len(prices) != expected:
        raise api_error(502, f"model version {version} answered {len(prices)} rows for {expected}")
    return prices, fields


def audit_fields(extras: Extras, fields: dict[str, list[Any]]) -> dict[str, Any]:
    """What the audit trail keeps of the extras: which were returned, and the comparables'
    count per row (they are the client's listings: recorded as returned, not copied)."""
    if not extras.any:
        return {}
    recorded: dict[str, Any] = {"returned": extras.names()}
    if "comparables" in fields:
        recorded["comparables_per_row"] = [len(found) for found in fields["comparables"]]
    return recorded
