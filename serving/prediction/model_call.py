"""One call to a model server: POST rows to `{base_url}/invocations`, get one price per row.

Every way the call can fail becomes a `PricingFailure` carrying the status the client gets (the
same for every request a batched call served) and the outcome label each request is counted
under; the routes turn it into their own error body.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from serving.api.errors import field_errors
from serving.logging import get_logger
from serving.model_servers.served import ServedModel
from serving.upstream import ModelServerClient, UpstreamAnswer, UpstreamTimeout, UpstreamUnavailable
from valuation.model_runtime.schema import FEATURES

log = get_logger("serving.prediction")


class PricingFailure(Exception):
    """The model server gave no prices: `status_code` and `detail` are what the client gets,
    `outcome` labels the request in `valuation_prediction_requests_total`."""

    def __init__(self, status_code: int, detail: Any, outcome: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.outcome = outcome


async def call_model_server(
    client: ModelServerClient, served: ServedModel, rows: Sequence[dict[str, Any]]
) -> list[float]:
    """POST the rows (`{"inputs": [row, ...]}`, the form a type-hinted pyfunc takes without
    building a DataFrame) and return one price per row, in order."""
    payload = orjson.dumps({"inputs": [{name: row[name] for name in FEATURES} for row in rows]})
    return _predictions(await post_invocation(client, served, payload), len(rows), served.version)


async def post_invocation(client: ModelServerClient, served: ServedModel, payload: bytes) -> UpstreamAnswer:
    """POST a body to the model server's /invocations; its answer when 200, else the failure."""
    url = f"{served.base_url}/invocations"
    try:
        answer = await client.post_json(url, payload)
    except UpstreamTimeout:
        raise PricingFailure(504, f"model version {served.version} did not answer in time",
                             "timeout") from None
    except UpstreamUnavailable as error:
        log.error("model_server_unreachable", url=url, error=repr(error))
        raise PricingFailure(503, f"model version {served.version} is unreachable; retry shortly",
                             "unavailable") from None
    if 400 <= answer.status_code < 500:
        raise PricingFailure(422, field_errors([(None, None, _upstream_message(answer))]),
                             "rejected")
    if answer.status_code != 200:
        log.error("model_server_error", url=url, status=answer.status_code, body=answer.text[:500])
        raise PricingFailure(502, f"model version {served.version} failed ({answer.status_code}): "
                                  f"{_upstream_message(answer)}", "upstream_error")
    return answer


def _upstream_message(answer: UpstreamAnswer) -> str:
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        return answer.text[:1000] or f"HTTP {answer.status_code}"
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(body)[:1000]


def _predictions(answer: UpstreamAnswer, expected: int, version: str) -> list[float]:
    try:
        body = orjson.loads(answer.content)
        values = body["predictions"] if isinstance(body, dict) else body
        predictions = [float(v) for v in values]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise PricingFailure(502, f"model version {version} answered something that is not a list "
                                  "of prices", "upstream_error") from None
    if len(predictions) != expected or not all(math.isfinite(p) for p in predictions):
        raise PricingFailure(502, f"model version {version} answered {len(predictions)} values for "
                                  f"{expected} rows, or non-finite prices", "upstream_error")
    return predictions
