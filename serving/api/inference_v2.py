"""The Open Inference Protocol (V2, KServe's and Triton's HTTP/REST API), beside /predict.

    GET  /v2/health/live            GET /v2/health/ready
    GET  /v2/models/{name}[/versions/{v}]          (metadata: inputs and output)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

Rows come as one input per feature column (`parameters.content_type: "pd"`, as KServe and
MLServer clients send a DataFrame); the answer is one output `price` (FP64) and the version
that priced in `model_version`. Pricing is /predict's (serving/prediction/pipeline.py): the same
served version, row rules, cache, batching and audit, and the priced rows go to the prediction
store under the response's X-Request-ID (so POST /feedback can name them); /v2/models/* need
the same key and role and count against the same rate limit; the health probes need none, as
/health and /ready.

Errors use the protocol's body `{"error": "..."}` with /predict's status codes; a refused row is
a 422 naming the row and the input (the feature column). Tensors travel as JSON only: the binary
tensor extension is refused with a message saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.api import deps
from serving.api.auth import require
from serving.api.errors import api_error
from serving.keys.records import KeyRecord
from serving.prediction.pipeline import audit_priced, audit_refused, price_request
from serving.prediction_store.proxy import served_alias, store_predictions
from serving.roles import Capability
from serving.settings import ServingSettings
from valuation.model_runtime.schema import CATEGORICAL_FEATURES, FEATURES, TARGET

PANDAS_CONTENT_TYPE = "pd"
PRICE_OUTPUT = TARGET  # "price"
_BINARY_HEADER = "inference-header-content-length"  # the binary tensor extension


class OipRoute(APIRoute):
    """Renders every error of a /v2 route, the key check's included, as `{"error": "..."}`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def oip_handler(request: Request) -> Response:
            if request.headers.get(_BINARY_HEADER) is not None:
                return oip_error(400, "the binary tensor extension is not supported: send every "
                                      "input and output as JSON (tritonclient: binary_data=False)")
            try:
                return await handler(request)
            except StarletteHTTPException as error:
                return oip_error(error.status_code, _message(error.detail), error.headers)
            except RequestValidationError as error:
                return _validation_error(error)

        return oip_handler


router = APIRouter(prefix="/v2", tags=["inference (Open Inference Protocol V2)"], route_class=OipRoute)


# --- bodies --------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestInput(_Body):
    name: str = Field(description="A feature column: " + ", ".join(FEATURES))
    shape: list[int] = Field(description="[rows] or [rows, 1]")
    datatype: str = Field(description="BYTES for type and sector, FP64 (or FP32, INT64...) otherwise")
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(description="The column's values, in row order (JSON, not binary)")


class RequestOutput(_Body):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Body):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description='`{"content_type": "pd"}`: the inputs are the columns of one table')
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "parameters": {"content_type": PANDAS_CONTENT_TYPE},
        "inputs": [
            {"name": "type", "shape": [1], "datatype": "BYTES", "data": ["casa"]},
            {"name": "sector", "shape": [1], "datatype": "BYTES", "data": ["lo barnechea"]},
            {"name": "net_usable_area", "shape": [1], "datatype": "FP64", "data": [300.0]},
            {"name": "net_area", "shape": [1], "datatype": "FP64", "data": [500.0]},
            {"name": "n_rooms", "shape": [1], "datatype": "FP64", "data": [6.0]},
            {"name": "n_bathroom", "shape": [1], "datatype": "FP64", "data": [5.0]},
            {"name": "latitude", "shape": [1], "datatype": "FP64", "data": [-33.3561]},
            {"name": "longitude", "shape": [1], "datatype": "FP64", "data": [-70.5072]},
        ],
    }]})


class OipError(BaseModel):
    error: str

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": "row 1, input 'sector': unknown sector 'atlantis'"}]})


class LiveResponse(BaseModel):
    live: bool

    model_config = ConfigDict(json_schema_extra={"examples": [{"live": True}]})


class ServerReadyResponse(BaseModel):
    ready: bool

    model_config = ConfigDict(json_schema_extra={"examples": [{"ready": True}]})


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "property_friends_best_model", "ready": True}]})


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any]

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "property_friends_best_model", "versions": ["3"], "platform": "mlflow_pyfunc",
        "inputs": [{"name": "type", "datatype": "BYTES", "shape": [-1]},
                   {"name": "net_usable_area", "datatype": "FP64", "shape": [-1]}],
        "outputs": [{"name": "price", "datatype": "FP64", "shape": [-1]}],
        "parameters": {"content_type": "pd"},
    }]})


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str = Field(description="The version that priced the rows")
    id: str | None = Field(None, description="The request's `id`, when it gave one")
    parameters: dict[str, Any] | None = Field(
        None, description="`degraded` and `degraded_reason` when another loaded version answered")
    outputs: list[ResponseOutput]

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model_name": "property_friends_best_model", "model_version": "3", "id": "listing-7",
        "outputs": [{"name": "price", "datatype": "FP64", "shape": [1], "data": [21034.7]}],
    }]})


_ERRORS = {status: {"model": OipError, "description": what} for status, what in {
    400: "Not a JSON inference request (the binary tensor extension is not supported)",
    401: "Missing or unknown API key", 403: "The key's role may not predict",
    404: "Unknown model, or version not served",
    422: "Inputs that are not the model's columns, or rows that break its rules (row and input named)",
    429: "Rate limit of this key exceeded (see Retry-After)",
    502: "The model server failed", 503: "No model served, or its server is down",
    504: "The model server did not answer in time",
}.items()}


# --- health --------------------------------------------------------------------------------------


@router.get("/health/live", summary="Liveness (no key)", response_model=LiveResponse)
async def live() -> Response:
    return _json({"live": True})


@router.get("/health/ready", summary="Readiness: the champion is served (no key)",
            response_model=ServerReadyResponse,
            responses={503: {"model": ServerReadyResponse, "description": "No champion is served"}})
async def ready(request: Request) -> Response:
    is_ready = deps.supervisor(request).current() is not None
    return _json({"ready": is_ready}, 200 if is_ready else 503)


# --- models --------------------------------------------------------------------------------------


@router.get("/models/{model_name}", summary="Model metadata: inputs and output",
            response_model=ModelMetadataResponse, responses=_ERRORS)
async def metadata(model_name: str, request: Request,
                   key: KeyRecord = Depends(require(Capability.PREDICT)),
                   settings: ServingSettings = Depends(deps.settings)) -> Response:
    return _json(_metadata(request, settings, model_name, None))


@router.get("/models/{model_name}/versions/{model_version}", summary="Metadata of one served version",
            response_model=ModelMetadataResponse, responses=_ERRORS)
async def version_metadata(model_name: str, model_version: str, request: Request,
                           key: KeyRecord = Depends(require(Capability.PREDICT)),
                           settings: ServingSettings = Depends(deps.settings)) -> Response:
    return _json(_metadata(request, settings, model_name, model_version))


@router.get("/models/{model_name}/ready", summary="Whether the champion is served",
            response_model=ModelReadyResponse, responses=_ERRORS)
async def model_ready(model_name: str, request: Request,
                      key: KeyRecord = Depends(require(Capability.PREDICT)),
                      settings: ServingSettings = Depends(deps.settings)) -> Response:
    return _model_ready(request, settings, model_name, None)


@router.get("/models/{model_name}/versions/{model_version}/ready",
            summary="Whether this version is served", response_model=ModelReadyResponse,
            responses=_ERRORS)
async def version_ready(model_name: str, model_version: str, request: Request,
                        key: KeyRecord = Depends(require(Capability.PREDICT)),
                        settings: ServingSettings = Depends(deps.settings)) -> Response:
    return _model_ready(request, settings, model_name, model_version)


@router.post("/models/{model_name}/infer", summary="Price rows with the champion",
             response_model=InferenceResponse, responses=_ERRORS)
async def infer(model_name: str, body: InferenceRequest, request: Request,
                key: KeyRecord = Depends(require(Capability.PREDICT)),
                settings: ServingSettings = Depends(deps.settings)) -> Response:
    return await _infer(request, settings, key, body, model_name, None)


@router.post("/models/{model_name}/versions/{model_version}/infer",
             summary="Price rows with this served version", response_model=InferenceResponse,
             responses=_ERRORS)
async def version_infer(model_name: str, model_version: str, body: InferenceRequest,
                        request: Request, key: KeyRecord = Depends(require(Capability.PREDICT)),
                        settings: ServingSettings = Depends(deps.settings)) -> Response:
    return await _infer(request, settings, key, body, model_name, model_version)


async def _infer(request: Request, settings: ServingSettings, key: KeyRecord,
                 body: InferenceRequest, model_name: str, version: str | None) -> Response:
    started = time.perf_counter()
    trace: dict[str, Any] = {}
    rows: list[dict[str, Any]] | None = None
    try:
        rows = _rows(body)
        priced = await price_request(request, settings, model_name=model_name, rows=rows,
                                     version=version, alias=None, trace=trace)
    except Exception as error:
        audit_refused(request, key, started, trace, model_name, rows, error)
        raise
    alias = served_alias(version, None, priced.degraded_reason is not None)
    audit_priced(request, key, started, priced, alias)
    store_predictions(request, key, priced.served, rows, priced.predictions, alias)
    answer: dict[str, Any] = {
        "model_name": priced.served.name,
        "model_version": priced.served.version,
        "outputs": [{"name": PRICE_OUTPUT, "datatype": "FP64", "shape": [len(priced.predictions)],
                     "data": priced.predictions}],
    }
    if body.id is not None:
        answer["id"] = body.id
    if priced.degraded_reason is not None:
        answer["parameters"] = {"degraded": True, "degraded_reason": priced.degraded_reason}
    return _json(answer)


# --- helpers -------------------------------------------------------------------------------------


def _rows(body: InferenceRequest) -> list[dict[str, Any]]:
    """One dict per row from one input per feature column; 422 naming the input otherwise."""
    content_type = (body.parameters or {}).get("content_type")
    if content_type not in (None, PANDAS_CONTENT_TYPE):
        raise _unprocessable(f"parameters.content_type must be '{PANDAS_CONTENT_TYPE}' (one input "
                             f"per feature column), not {content_type!r}")
    for output in body.outputs or ():
        if output.name != PRICE_OUTPUT:
            raise _unprocessable(f"unknown output '{output.name}'; this model outputs "
                                 f"'{PRICE_OUTPUT}'")
    columns: dict[str, list[Any]] = {}
    for tensor in body.inputs:
        if tensor.name not in FEATURES:
            raise _unprocessable(f"unknown input '{tensor.name}'; the inputs are the feature "
                                 f"columns {', '.join(FEATURES)}")
        if tensor.name in columns:
            raise _unprocessable(f"input '{tensor.name}' is given twice")
        columns[tensor.name] = _column(tensor)
    missing = [name for name in FEATURES if name not in columns]
    if missing:
        raise _unprocessable(f"missing input(s) {', '.join(missing)}: give one input per feature "
                             "column")
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{name}: {len(values)}" for name, values in columns.items())
        raise _unprocessable(f"inputs have different numbers of rows ({sizes})")
    count = lengths.pop()
    if count == 0:
        raise _unprocessable("the inputs hold no rows: give at least one value per input")
    return [{name: columns[name][index] for name in FEATURES} for index in range(count)]


def _column(tensor: RequestInput) -> list[Any]:
    if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
        raise _unprocessable(f"input '{tensor.name}' has shape {tensor.shape}; a column is [rows] "
                             "or [rows, 1]")
    values = _flatten(tensor.data)
    if len(values) != tensor.shape[0]:
        raise _unprocessable(f"input '{tensor.name}' has {len(values)} values for shape "
                             f"{tensor.shape}")
    return values


def _flatten(data: list[Any]) -> list[Any]:
    # The JSON form may nest a [rows, 1] tensor row by row.
    return [item for value in data for item in (value if isinstance(value, list) else [value])]


def _metadata(request: Request, settings: ServingSettings, model_name: str,
              version: str | None) -> dict[str, Any]:
    served = _served(request, settings, model_name, version)
    if served is None:
        raise api_error(404, _not_served(version))
    return {
        "name": served.name,
        "versions": [served.version],
        "platform": "mlflow_pyfunc",
        "inputs": [{"name": name, "datatype": "BYTES" if name in CATEGORICAL_FEATURES else "FP64",
                    "shape": [-1]} for name in FEATURES],
        "outputs": [{"name": PRICE_OUTPUT, "datatype": "FP64", "shape": [-1]}],
        "parameters": {"content_type": PANDAS_CONTENT_TYPE},
    }


def _model_ready(request: Request, settings: ServingSettings, model_name: str,
                 version: str | None) -> Response:
    is_ready = _served(request, settings, model_name, version) is not None
    if not is_ready and version is not None:  # a version not loaded here is unknown to this server
        raise api_error(404, _not_served(version))
    return _json({"name": model_name, "ready": is_ready}, 200 if is_ready else 503)


def _served(request: Request, settings: ServingSettings, model_name: str, version: str | None):
    if model_name != settings.registry.model_name:
        raise api_error(404, f"unknown model '{model_name}'; this service serves "
                             f"'{settings.registry.model_name}'")
    return deps.supervisor(request).served(version=version)


def _not_served(version: str | None) -> str:
    return f"version {version} is not being served" if version else "no model is being served right now"


def _unprocessable(message: str) -> StarletteHTTPException:
    return api_error(422, message)


def _message(detail: Any) -> str:
    """A /predict error detail as one line: field errors as `row 3, input 'sector': ...`."""
    if not isinstance(detail, list):
        return str(detail)
    parts = []
    for error in detail:
        where = [f"row {error['row']}"] if error.get("row") is not None else []
        if error.get("field"):
            where.append(f"input '{error['field']}'")
        parts.append(f"{', '.join(where)}: {error['message']}" if where else str(error["message"]))
    return "; ".join(parts)


def _validation_error(error: RequestValidationError) -> Response:
    problems = error.errors()
    malformed = [e for e in problems if e.get("type") == "json_invalid"]
    if malformed:
        reason = (malformed[0].get("ctx") or {}).get("error", "invalid JSON")
        return oip_error(400, f"request body is not valid JSON: {reason}")
    return oip_error(422, "; ".join(
        f"{'.'.join(str(part) for part in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
        for e in problems))


def oip_error(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": message}, status_code, headers)


def _json(body: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None
          ) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json",
                    headers=headers)
