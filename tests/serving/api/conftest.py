"""Fixtures of the API folder (the fuzz tests): the real Redis and a real HTTP server playing the model server
(tests/support/serving.py: answers /ping and prices every row it receives), both for a whole module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from tests.support.serving import FakeModelServer, serve_fake_model_server


@pytest.fixture(scope="module")
def redis_module() -> Iterator[Redis]:
    connection = Redis(host="127.0.0.1", port=6379, db=0, socket_timeout=5)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def fake_model_server_module() -> Iterator[FakeModelServer]:
    with serve_fake_model_server() as state:
        yield state
