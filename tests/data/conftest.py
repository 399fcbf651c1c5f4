"""Fixtures for the data tests: config composition, CSV files, a real PostgreSQL table."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from valuation.config import load_config
from valuation.synthetic import generate_frame

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture
def make_cfg() -> Callable[..., object]:
    """Compose the pipeline config with Hydra overrides, e.g. make_cfg("data=sample")."""
    return lambda *overrides: load_config(list(overrides))


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[str, pd.DataFrame | str], Path]:
    """Write a frame (or raw text) to tmp_path/name and return the path."""

    def write(name: str, content: pd.DataFrame | str) -> Path:
        path = tmp_path / name
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=False)
        else:
            path.write_text(content)
        return path

    return write


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (same idea as tests/conftest.py: free_port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pg_engine() -> Iterator[object]:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 5})
    yield engine
    engine.dispose()


@pytest.fixture
def pg_table(pg_engine) -> Iterator[tuple[str, pd.DataFrame]]:
    """A uniquely named table in the real `test` database holding 200 synthetic rows."""
    import sqlalchemy as sa

    name = f"valuation_h2_{uuid.uuid4().hex[:10]}"
    frame = generate_frame(200, seed=11)
    frame.to_sql(name, pg_engine, index=False)
    yield name, frame
    with pg_engine.begin() as connection:
        connection.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
