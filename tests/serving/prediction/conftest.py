"""Fixtures of the prediction-path tests."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def prefix(redis_conn):
    """A prediction-cache key prefix of the test's own in the real Redis, emptied afterwards."""
    name = f"test-predcache-{uuid.uuid4().hex[:12]}"
    yield name
    for key in redis_conn.scan_iter(f"{name}:*"):
        redis_conn.delete(key)
