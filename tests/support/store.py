"""The prediction store on its two databases for tests: a temporary SQLite file, or a schema of
its own on the shared PostgreSQL server (127.0.0.1:5432, database `test`), dropped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from serving.prediction_store.engine import open_engine
from serving.prediction_store.migrate import upgrade

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def pg_schema_url(schema: str) -> str:
    """The shared server, with every table (alembic_version too) in `schema`."""
    return f"{PG_SERVER}?options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def fresh_pg_schema(prefix: str = "store") -> Iterator[str]:
    """A schema of its own on the shared server, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_SERVER)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    with fresh_pg_schema() as schema:
        yield schema


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'predictions.db'}"
    return pg_schema_url(request.getfixturevalue("pg_schema"))


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """A migrated store."""
    engine = open_engine(store_url)
    upgrade(engine)
    yield engine
    engine.dispose()
