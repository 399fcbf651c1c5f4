"""Rows for the prediction-store tests (the specification's example property, varied)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from serving.prediction_store.writer import PricedRequest
from valuation.config import load_config
from valuation.model_runtime.schema import EXAMPLE_ROW
from valuation.model_runtime.validation import ValidationRules

RULES = ValidationRules.from_config(load_config().validation,
                                    sectors=["lo barnechea", "vitacura", "las condes"])


def row(**changes: Any) -> dict[str, Any]:
    return {**EXAMPLE_ROW, **changes}


def priced(request_id: str, rows: list[dict[str, Any]], *, version: str = "1", alias: str = "champion",
           at: datetime | None = None, prices: list[float] | None = None) -> PricedRequest:
    return PricedRequest(
        request_id=request_id, key_id="k1", model_name="property_friends_best_model",
        model_version=version, served_alias=alias, created_at=at or datetime.now(UTC),
        features=rows, prices=prices or [1000.0 + i for i in range(len(rows))])
