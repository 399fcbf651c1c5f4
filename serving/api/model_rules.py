"""GET /model_rules: what the served model accepts in a row, for forms such as /ui.

The rules are the served champion's own `ValidationRules` (its metadata), the ones /predict
applies, so a form built from them offers exactly the types and sectors the model knows and shows
the bounds it enforces. The answer also says which optional /predict fields this proxy takes and
what the caller's key may do, so a page asks only for what it may get.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from serving.api import deps
from serving.api.auth import require
from serving.api.errors import AUTH_ERRORS, api_error, error_responses
from serving.api.schemas import PredictRequest
from serving.keys.records import KeyRecord
from serving.roles import CAPABILITIES, Capability, role_allows
from valuation.model_runtime.schema import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES

router = APIRouter(tags=["predict"])


class Bounds(BaseModel):
    min: float
    max: float


class ModelRulesResponse(BaseModel):
    model_name: str
    model_version: str = Field(description="The served champion whose rules these are")
    features: list[str] = Field(description="The row's fields, in the model's order")
    choices: dict[str, list[str]] = Field(description="Accepted values of `type` and `sector`")
    bounds: dict[str, Bounds] = Field(description="Inclusive range of each numeric field")
    max_rows: int = Field(description="Rows one /predict request may hold")
    request_fields: list[str] = Field(description="The fields POST /predict takes in its body")
    capabilities: list[str] = Field(description="What the caller's key may do (serving/roles.py)")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model_name": "property_friends_best_model", "model_version": "3",
        "features": ["type", "sector", "net_usable_area", "net_area", "n_rooms", "n_bathroom",
                     "latitude", "longitude"],
        "choices": {"type": ["casa", "departamento"], "sector": ["las condes", "vitacura"]},
        "bounds": {"net_usable_area": {"min": 0, "max": 100000}},
        "max_rows": 10000,
        "request_fields": ["alias", "features", "model_name", "version"],
        "capabilities": ["model_rules", "predict"],
    }]})


@router.get(
    "/model_rules",
    response_model=ModelRulesResponse,
    summary="The served model's row rules: type and sector choices, numeric bounds",
    description="The rules /predict checks rows with (the served champion's own), the body "
                "fields /predict takes, and the caller's capabilities.",
    responses=error_responses({**AUTH_ERRORS, 503: "No model is served right now"}),
)
async def model_rules(
    request: Request, key: KeyRecord = Depends(require(Capability.MODEL_RULES)),
) -> ModelRulesResponse:
    served = deps.supervisor(request).current()
    if served is None:
        raise api_error(503, "no model is being served right now; retry shortly")
    rules = served.rules
    return ModelRulesResponse(
        model_name=served.name,
        model_version=served.version,
        features=list(FEATURES),
        choices={field: list(rules.allowed_values(field)) for field in CATEGORICAL_FEATURES},
        bounds={field: Bounds(min=low, max=high)
                for field, (low, high) in ((f, rules.bounds(f)) for f in NUMERIC_FEATURES)},
        max_rows=int(rules.max_rows),
        request_fields=sorted(PredictRequest.model_fields),
        capabilities=sorted(c for c in CAPABILITIES if role_allows(key.role, c)),
    )
