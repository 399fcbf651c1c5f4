"""The PostgreSQL source against the real server on 127.0.0.1:5432 (database `test`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from valuation.data_checks import DataError, validate_raw
from valuation.sources import load_tables

from .conftest import PG_URL  # noqa: TID252 - the folder conftest holds the URL


@pytest.fixture
def db_env(monkeypatch) -> str:
    monkeypatch.setenv("VALUATION_TEST_DB_URL", PG_URL)
    return "VALUATION_TEST_DB_URL"


def test_table_without_test_table_is_split(make_cfg, db_env, pg_table):
    name, frame = pg_table
    cfg = make_cfg(
        "data=postgres", f"data.url_env={db_env}", f"data.train_table={name}",
        "data.test_table=null", "split.test_size=0.25",
    )
    tables = load_tables(cfg)
    assert tables.split and tables.kind == "postgres"
    assert (len(tables.train), len(tables.test)) == (150, 50)
    assert f"table '{name}'" in tables.train_name and "127.0.0.1:5432/test" in tables.train_name
    both = pd.concat([tables.train, tables.test]).sort_values(["latitude", "longitude"])
    expected = validate_raw(frame, "x").sort_values(["latitude", "longitude"])
    np.testing.assert_array_equal(both.to_numpy(), expected.to_numpy())
    assert (both.drop(columns=["type", "sector"]).dtypes == np.float64).all()


def test_queries_for_train_and_test(make_cfg, db_env, pg_table):
    name, _ = pg_table
    # The table name is our own uuid-based name, not outside input.
    train_query = f"SELECT * FROM {name} WHERE type = 'casa'"  # noqa: S608
    test_query = f"SELECT * FROM {name} WHERE type <> 'casa'"  # noqa: S608
    cfg = make_cfg(
        "data=postgres", f"data.url_env={db_env}",
        f'data.train_query="{train_query}"', f'data.test_query="{test_query}"',
    )
    tables = load_tables(cfg)
    assert not tables.split
    assert set(tables.train["type"]) == {"casa"} and "casa" not in set(tables.test["type"])
    assert len(tables.train) + len(tables.test) == 200
    assert " query " in tables.train_name and f"FROM {name} WHERE" in tables.train_name


def test_missing_table_is_named(make_cfg, db_env):
    cfg = make_cfg("data=postgres", f"data.url_env={db_env}", "data.train_table=no_such_h2_table")
    with pytest.raises(DataError, match=r"table 'no_such_h2_table': table not found"):
        load_tables(cfg)


def test_bad_query_names_query_and_cause(make_cfg, db_env):
    cfg = make_cfg("data=postgres", f"data.url_env={db_env}", "data.train_query='SELEC 1'")
    with pytest.raises(DataError, match=r"query 'SELEC 1': syntax error"):
        load_tables(cfg)


def test_query_without_the_columns_names_them(make_cfg, db_env):
    cfg = make_cfg("data=postgres", f"data.url_env={db_env}", "data.train_query='SELECT 1 AS type'")
    with pytest.raises(DataError, match=r"query 'SELECT 1 AS type': missing column\(s\) 'sector'"):
        load_tables(cfg)


def test_unreachable_server_fails_fast_without_leaking_the_password(
    make_cfg, monkeypatch, closed_port
):
    url = f"postgresql+psycopg2://u:s3cret@127.0.0.1:{closed_port}/test"
    monkeypatch.setenv("VALUATION_TEST_DB_URL", url)
    cfg = make_cfg("data=postgres", "data.url_env=VALUATION_TEST_DB_URL", "data.connect_timeout_s=2")
    with pytest.raises(DataError) as error:
        load_tables(cfg)
    message = str(error.value)
    assert f"127.0.0.1:{closed_port}" in message and "properties_train" in message
    assert "refused" in message.lower()
    assert "s3cret" not in message and "***" in message


def test_unknown_database_is_reported(make_cfg, monkeypatch):
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/no_db_h2"
    monkeypatch.setenv("VALUATION_TEST_DB_URL", url)
    cfg = make_cfg("data=postgres", "data.url_env=VALUATION_TEST_DB_URL")
    with pytest.raises(DataError, match='database "no_db_h2" does not exist'):
        load_tables(cfg)


def test_missing_url_env_is_named(make_cfg, monkeypatch):
    monkeypatch.delenv("VALUATION_DB_URL", raising=False)
    with pytest.raises(DataError, match="VALUATION_DB_URL is not set"):
        load_tables(make_cfg("data=postgres"))
