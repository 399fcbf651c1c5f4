"""Fixtures of the prediction-store tests: the store on both of its databases, each test on a
fresh one (tests/support/store.py)."""

from tests.support.store import (  # noqa: F401  (fixtures: pytest finds them by name here)
    PG_SERVER,
    engine,
    pg_schema,
    pg_schema_url,
    store_url,
)
