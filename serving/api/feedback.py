"""POST /feedback: observed prices (a sale or an appraisal) for rows the service priced, or for
any property given by its eight features. They go to the prediction store, where monitoring
measures the live error and retraining finds them (serving/prediction_store/feedback.py)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from serving.api import deps
from serving.api.audit import audit, error_detail
from serving.api.auth import require
from serving.api.errors import AUTH_ERRORS, api_error, error_responses, field_errors, invalid
from serving.keys.records import KeyRecord
from serving.prediction_store import feedback
from serving.roles import Capability
from valuation.model_runtime.schema import EXAMPLE_ROW

router = APIRouter(tags=["feedback"])
# How long a request waits for the proxy's buffered predictions before a request id is unknown.
FLUSH_WAIT_S = 2.0

_BY_REQUEST = {"request_id": "4f3c2a9e0b1d4e7f8a6b5c4d3e2f1a0b", "row_index": 0,
               "observed_price": 21500.0, "observed_at": "2025-03-01T00:00:00Z", "kind": "sale"}
_BY_FEATURES = {"features": dict(EXAMPLE_ROW), "observed_price": 20900.0,
                "observed_at": "2025-02-15", "kind": "appraisal"}


class FeedbackRequest(BaseModel):
    observations: list[Any] = Field(description=(
        "One object per observed price: `observed_price` (UF), `observed_at` (ISO 8601 date-time "
        "with a time zone, or a date), `kind` (sale or appraisal), and the row: `request_id` + "
        "`row_index` of a /predict answer, or `features` (the eight fields of /predict)."))

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"observations": [_BY_REQUEST, _BY_FEATURES]}]})


class RecordedObservation(BaseModel):
    row: int
    id: int = Field(description="The observation's id in the store")
    duplicate: bool = Field(description="Already recorded before: nothing changed")
    prediction_id: int | None = Field(description="The stored prediction it was matched to")


class FeedbackResponse(BaseModel):
    recorded: int = Field(description="Observations new to the store")
    duplicates: int = Field(description="Observations it already held (nothing changed)")
    observations: list[RecordedObservation] = Field(description="One per observation, in order")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "recorded": 1, "duplicates": 1,
        "observations": [{"row": 0, "id": 812, "duplicate": False, "prediction_id": 40211},
                         {"row": 1, "id": 97, "duplicate": True, "prediction_id": None}]}]})


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    summary="Record observed prices (ground truth)",
    description=(
        "All or nothing: a row that breaks a rule gets 422 naming its index and field, an unknown "
        "request id 404, and nothing is recorded. Sending an observation again is harmless: it is "
        "answered as a duplicate."),
    responses=error_responses({
        **AUTH_ERRORS,
        403: "The key's role may not send feedback",
        404: "A request id that no stored prediction has",
        422: "Observations that break the rules",
        503: "The prediction store is disabled or unreachable",
    }),
)
async def post_feedback(
    body: FeedbackRequest, request: Request,
    key: KeyRecord = Depends(require(Capability.FEEDBACK)),
) -> FeedbackResponse:
    started = time.perf_counter()
    try:
        answer = await _feedback(body, request, key)
    except Exception as error:
        audit(request, "feedback", getattr(error, "status_code", 500), key, started,
              inputs=body.observations, detail=error_detail(error))
        raise
    audit(request, "feedback", 200, key, started, inputs=body.observations,
          outputs={"recorded": answer.recorded, "duplicates": answer.duplicates,
                   "ids": [o.id for o in answer.observations]})
    return answer


async def _feedback(body: FeedbackRequest, request: Request, key: KeyRecord) -> FeedbackResponse:
    writer = getattr(request.app.state, "prediction_store", None)
    if writer is None:
        raise api_error(503, "the prediction store is disabled (prediction_store.enabled)")
    limit = writer.settings.feedback_max_rows
    if not body.observations or len(body.observations) > limit:
        raise invalid("observations", f"give 1 to {limit} observations, got {len(body.observations)}")
    served = deps.supervisor(request).current()
    rules = served.rules if served is not None else None
    checked, errors = [], []
    for row, raw in enumerate(body.observations):
        result = feedback.check(raw, row, rules)
        if isinstance(result, list):
            errors += result
        else:
            checked.append(result)
    if errors:
        raise api_error(422, field_errors((e.row, e.field, e.message) for e in errors))
    try:
        outcome = await run_in_threadpool(feedback.record, writer.engine, checked, key.key_id,
                                          lambda: writer.flush(FLUSH_WAIT_S))
    except feedback.UnknownRequest as error:
        raise api_error(404, str(error)) from None
    except feedback.FeedbackRejected as error:
        raise api_error(422, field_errors((e.row, e.field, e.message) for e in error.errors)) from None
    except feedback.StoreUnavailable as error:
        raise api_error(503, str(error)) from None
    return FeedbackResponse(
        recorded=outcome.recorded, duplicates=outcome.duplicates,
        observations=[RecordedObservation(row=o.row, id=i, duplicate=d, prediction_id=p)
                      for o, i, d, p in zip(checked, outcome.ids, outcome.duplicate,
                                            outcome.prediction_ids, strict=True)])
