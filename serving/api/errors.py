"""Error responses: every error is JSON `{"detail": ..., "request_id": ...}` with a status that
says whose fault it is. A 422 always has one shape, whoever refused the values (the request's
schema, a row rule, a /train check): `detail` lists `{row, field, message}`. Handlers are
installed by `create_app`; `error_responses` documents the bodies in the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.api.observability import request_id_of
from serving.api.schemas import ErrorResponse, ValidationErrorResponse

# The errors of every operation that takes an API key.
AUTH_ERRORS = {
    401: "Missing or unknown API key",
    403: "The key's role may not do this",
    429: "Rate limit of this key exceeded (see Retry-After)",
}


def error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses: a 422 with its list of field errors, any
    other status with a message."""
    return {
        status: {"model": ValidationErrorResponse if status == 422 else ErrorResponse,
                 "description": description}
        for status, description in descriptions.items()
    }


def api_error(status_code: int, detail: Any, headers: dict[str, str] | None = None) -> HTTPException:
    """An HTTPException whose body is rendered by the handlers below."""
    return HTTPException(status_code=status_code, detail=detail, headers=headers)


def field_errors(errors: Iterable[tuple[int | None, str | None, str]]) -> list[dict[str, Any]]:
    """The `detail` of a 422, from (row, field, message) triples."""
    return [{"row": row, "field": field, "message": message} for row, field, message in errors]


def invalid(field: str | None, message: str) -> HTTPException:
    """A 422 about one field of the request (not about one row)."""
    return api_error(422, field_errors([(None, field, message)]))


def error_response(request: Request, status_code: int, detail: Any, headers=None) -> JSONResponse:
    body = {"detail": detail, "request_id": request_id_of(request)}
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(request, exc.status_code, exc.detail, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    malformed = [e for e in errors if e.get("type") == "json_invalid"]
    if malformed:
        error = malformed[0]
        position = error["loc"][-1] if error.get("loc") else "?"
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        detail = f"request body is not valid JSON: {reason} (at character {position})"
        return error_response(request, 400, detail)
    if _body_not_json(request):
        detail = "send the request body as JSON with the header 'Content-Type: application/json'"
        return error_response(request, 415, detail)
    # loc is ("body" | "path" | "query" | "header", *path inside it): the field is that path.
    detail = field_errors(
        (None, ".".join(str(part) for part in error.get("loc", ())[1:]) or None,
         error.get("msg", "invalid value"))
        for error in errors
    )
    return error_response(request, 422, detail)


def _body_not_json(request: Request) -> bool:
    content_type = request.headers.get("content-type")
    if not content_type or request.method not in {"POST", "PUT", "PATCH"}:
        return False
    media = content_type.split(";")[0].strip().lower()
    return not (media == "application/json" or media.endswith("+json"))


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
