"""What the rest of the system reads from the store: a window of recent predictions, labelled rows
(observations joined to every prediction of their row), the feedback rows for retraining, and
retention. Each returns a pandas DataFrame whose times are timezone-aware UTC."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, delete, select

from serving.prediction_store.tables import Observation, Prediction
from valuation.model_runtime.schema import FEATURES

PREDICTION_COLUMNS = ("id", "request_id", "row_index", "created_at", "key_id", "model_name",
                      "model_version", "served_alias", *FEATURES, "price")
OBSERVATION_COLUMNS = ("id", "request_id", "row_index", *FEATURES, "observed_price", "observed_at",
                       "kind", "received_at", "key_id", "prediction_id")


def predictions_window(
    engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
    last: int | None = None, model_name: str | None = None, model_version: str | None = None,
    served_aliases: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Predictions with `since <= created_at < until`, of `model_name`, `model_version` and
    `served_aliases` when given; `last`: only the newest that many of them. Oldest first."""
    table = Prediction.__table__
    query = _of(select(*(table.c[name] for name in PREDICTION_COLUMNS)).where(
        *_window(table.c.created_at, since, until)), table, model_name, model_version, served_aliases)
    if last is not None:
        newest = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(int(last)).subquery()
        query = select(newest).order_by(newest.c.created_at, newest.c.id)
    else:
        query = query.order_by(table.c.created_at, table.c.id)
    return _frame(engine, query, PREDICTION_COLUMNS)


def labelled_rows(
    engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
    model_name: str | None = None, model_version: str | None = None,
    served_aliases: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per (observation, prediction of the same request row): the features, the observed
    price and its time and kind, and the prediction's version, alias, price and time. A row priced
    by the champion and shadowed by the challenger gives two lines, one per alias, for the same
    observation (the promotion gate compares them). Observations whose row was never priced are
    left out (see `feedback_rows`). The window is on the prediction's `created_at`."""
    obs, pred = Observation.__table__, Prediction.__table__
    query = (
        select(obs.c.id.label("observation_id"), pred.c.id.label("prediction_id"),
               pred.c.request_id, pred.c.row_index, *(pred.c[name] for name in FEATURES),
               obs.c.observed_price, obs.c.observed_at, obs.c.kind, pred.c.created_at,
               pred.c.model_name, pred.c.model_version, pred.c.served_alias, pred.c.price)
        .join(pred, and_(pred.c.request_id == obs.c.request_id, pred.c.row_index == obs.c.row_index))
        .where(*_window(pred.c.created_at, since, until))
        .order_by(pred.c.created_at, pred.c.id, obs.c.id)
    )
    query = _of(query, pred, model_name, model_version, served_aliases)
    columns = ("observation_id", "prediction_id", "request_id", "row_index", *FEATURES,
               "observed_price", "observed_at", "kind", "created_at", "model_name", "model_version",
               "served_alias", "price")
    return _frame(engine, query, columns)


def feedback_rows(engine: Engine, *, since: datetime | None = None,
                  until: datetime | None = None) -> pd.DataFrame:
    """Every observation in the window (on `observed_at`), matched or not: the eight features,
    the observed price and its time and kind. Oldest first. Each fact is stored once (the table's
    unique constraint), so the rows are already free of exact duplicates."""
    table = Observation.__table__
    query = (select(*(table.c[name] for name in OBSERVATION_COLUMNS))
             .where(*_window(table.c.observed_at, since, until))
             .order_by(table.c.observed_at, table.c.id))
    return _frame(engine, query, OBSERVATION_COLUMNS)


def apply_retention(engine: Engine, retention_days: float, now: datetime | None = None) -> dict[str, int]:
    """Delete predictions created, and observations received, more than `retention_days` ago
    (monitoring.retention_days). Returns how many rows each table lost. An observation whose
    prediction goes keeps its own copy of the features (its prediction_id becomes null)."""
    if retention_days <= 0:
        raise ValueError(f"monitoring.retention_days must be positive, got {retention_days}")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=float(retention_days))
    obs, pred = Observation.__table__, Prediction.__table__
    with engine.begin() as connection:
        # Unlink first: SQLite applies ON DELETE SET NULL only with foreign keys on, and the
        # explicit update keeps the outcome the same on any database.
        connection.execute(obs.update().where(
            obs.c.prediction_id.in_(select(pred.c.id).where(pred.c.created_at < cutoff)))
            .values(prediction_id=None))
        predictions = connection.execute(delete(pred).where(pred.c.created_at < cutoff)).rowcount
        observations = connection.execute(delete(obs).where(obs.c.received_at < cutoff)).rowcount
    return {"predictions": int(predictions or 0), "observations": int(observations or 0)}


def _of(query: Any, table: Any, model_name: str | None, model_version: str | None,
        served_aliases: Sequence[str] | None) -> Any:
    """`query` restricted to the predictions of a model, a version and aliases, when given."""
    if model_name is not None:
        query = query.where(table.c.model_name == str(model_name))
    if model_version is not None:
        query = query.where(table.c.model_version == str(model_version))
    if served_aliases is not None:
        query = query.where(table.c.served_alias.in_(list(served_aliases)))
    return query


def _window(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    clauses = []
    if since is not None:
        clauses.append(column >= since)
    if until is not None:
        clauses.append(column < until)
    return clauses


def _frame(engine: Engine, query: Any, columns: Sequence[str]) -> pd.DataFrame:
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    for name in ("created_at", "observed_at", "received_at"):
        if name in frame:
            frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame
