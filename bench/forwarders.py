"""Bare forwarders for `bench.proxy_floor`: the least a Python ASGI proxy can do on the hot path.

Each answers POST /predict by passing the body unchanged to UPSTREAM_URL (a model server's
/invocations) over a pooled aiohttp session and returning its answer: no key check, no row
checks, no audit, no logging. Their latency over the model server's own is the floor that any
proxy built this way pays, before it does any of the proxy's actual work.

    UPSTREAM_URL=http://127.0.0.1:5001/invocations uvicorn bench.forwarders:starlette_app --no-access-log
"""

from __future__ import annotations

import os

import aiohttp
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

JSON = {"Content-Type": "application/json"}
_sessions: dict[str, aiohttp.ClientSession] = {}


async def _forward(body: bytes) -> Response:
    session = _sessions.get("upstream")
    if session is None:  # made inside the server's event loop, on the first request
        session = _sessions["upstream"] = aiohttp.ClientSession()
    async with session.post(os.environ["UPSTREAM_URL"], data=body, headers=JSON) as answer:
        return Response(await answer.read(), status_code=answer.status, media_type="application/json")


async def _starlette_predict(request: Request) -> Response:
    return await _forward(await request.body())


async def _ping(request: Request) -> Response:
    return PlainTextResponse("ok")


starlette_app = Starlette(routes=[Route("/predict", _starlette_predict, methods=["POST"]),
                                  Route("/ping", _ping)])

fastapi_app = FastAPI()


@fastapi_app.post("/predict")
async def _fastapi_predict(request: Request) -> Response:
    return await _forward(await request.body())


@fastapi_app.get("/ping")
async def _fastapi_ping() -> Response:
    return PlainTextResponse("ok")
