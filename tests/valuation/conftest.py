"""Fixtures for the library tests: small synthetic listings (never the client's data), and a real
PostgreSQL table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from serving.ports import free_port
from valuation.model_runtime.schema import FEATURES, TARGET
from valuation.synthetic import generate_frame

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on."""
    return free_port()


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


@pytest.fixture(scope="module")
def listings() -> pd.DataFrame:
    """600 clean synthetic listings, with a few zero areas as the real data has."""
    frame = generate_frame(600, seed=3)
    frame.loc[[5, 17], "net_usable_area"] = 0.0
    frame.loc[[9, 17], "net_area"] = 0.0
    return frame


@pytest.fixture(scope="module")
def features(listings: pd.DataFrame) -> pd.DataFrame:
    return listings[list(FEATURES)]


@pytest.fixture(scope="module")
def prices(listings: pd.DataFrame) -> np.ndarray:
    return listings[TARGET].to_numpy(dtype=np.float64)
