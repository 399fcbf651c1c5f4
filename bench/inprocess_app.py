"""The in-process design most public implementations of this service use, reproduced to be measured.

One FastAPI process loads the registered pyfunc once and prices rows in the request handler: no
proxy hop, no model server. It has what such services usually have: an API-key check on the
`X-API-Key` header and pydantic validation of the body. It takes the proxy's body
(`{"model_name": ..., "features": [row, ...]}`), so both are driven with the same request bytes.
It has none of the proxy's isolation, audit trail, rate limit, key store or zero-downtime switch.

    BENCH_INPROCESS_MODEL_URI=models:/property_friends_best_model@champion \\
    BENCH_INPROCESS_API_KEY=... python -m uvicorn bench.inprocess_app:app --no-access-log

The handler is `async def` and calls `predict` on the event loop: with one process and the GIL
that is this design's fastest form (a thread-pool hop per request only adds work).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, Field

MODEL_URI_ENV = "BENCH_INPROCESS_MODEL_URI"
API_KEY_ENV = "BENCH_INPROCESS_API_KEY"


class Property(BaseModel):
    type: Literal["casa", "departamento"]
    sector: str = Field(min_length=1)
    net_usable_area: float = Field(ge=0)
    net_area: float = Field(ge=0)
    n_rooms: float = Field(ge=0)
    n_bathroom: float = Field(ge=0)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class PriceRequest(BaseModel):
    model_name: str | None = None
    features: list[Property] = Field(min_length=1, max_length=10_000)


class PriceResponse(BaseModel):
    predictions: list[float]


state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    import mlflow

    state["model"] = mlflow.pyfunc.load_model(os.environ[MODEL_URI_ENV])
    state["key"] = os.environ[API_KEY_ENV].encode()
    yield
    state.clear()


app = FastAPI(title="In-process valuation (benchmark reproduction)", lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict", response_model=PriceResponse)
async def predict(body: PriceRequest,
                  x_api_key: Annotated[str | None, Header()] = None) -> dict[str, list[float]]:
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), state["key"]):
        raise HTTPException(status_code=401, detail="invalid or missing API key")
    rows = [row.model_dump() for row in body.features]
    prices = state["model"].predict(rows)
    return {"predictions": [float(p) for p in prices]}
