"""Rows as the store keeps them, and inserts that skip rows already there (a retried batch, a
request id sent twice)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table
from sqlalchemy.sql.dml import Insert

from valuation.model_runtime.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from valuation.model_runtime.validation import normalize_category


def feature_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """The eight features of a row the model's rules accepted, as stored: categories normalized
    as the model reads them, numbers as floats."""
    values: dict[str, Any] = {name: normalize_category(str(row[name])) for name in CATEGORICAL_FEATURES}
    values.update({name: float(row[name]) for name in NUMERIC_FEATURES})
    return values


def request_rows(request_id: str, key_id: str | None, model_name: str, model_version: str,
                 served_alias: str, created_at: datetime, features: Sequence[Mapping[str, Any]],
                 prices: Sequence[float]) -> list[dict[str, Any]]:
    """One answered request's rows as the `predictions` table takes them."""
    return [
        {"request_id": request_id, "row_index": index, "created_at": created_at, "key_id": key_id,
         "model_name": model_name, "model_version": model_version, "served_alias": served_alias,
         "price": float(price), **feature_values(row)}
        for index, (row, price) in enumerate(zip(features, prices, strict=True))
    ]


def insert_ignoring_duplicates(engine: Engine, table: Table) -> Insert:
    """INSERT that leaves a row violating a unique constraint out instead of failing the batch
    (ON CONFLICT DO NOTHING on PostgreSQL and SQLite)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise ValueError(f"the prediction store supports PostgreSQL and SQLite, not {engine.dialect.name}")
    return insert(table).on_conflict_do_nothing()
