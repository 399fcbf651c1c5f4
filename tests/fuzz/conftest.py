"""Fixtures of the fuzz tests: the real Redis and a real HTTP server playing the model server
(answers /ping and prices every row it receives), both for a whole module."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from redis import Redis

from tests.api.support import FakeModelServer


@pytest.fixture(scope="module")
def redis_module() -> Iterator[Redis]:
    connection = Redis(host="127.0.0.1", port=6379, db=0, socket_timeout=5)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def fake_model_server_module() -> Iterator[FakeModelServer]:
    state = FakeModelServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._answer(200, b"\n")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            rows = body["dataframe_split"]["data"]
            self._answer(200, json.dumps({"predictions": [1000.0] * len(rows)}).encode())

        def _answer(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
