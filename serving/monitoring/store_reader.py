"""What the monitoring job reads from the prediction store: the window of recent predictions of a
version, its predictions that have feedback, and the feedback rows a retraining learns from.

The tables (`predictions`, `observations`) belong to the prediction store
(serving/prediction_store/); they are reflected here, not redefined, so the store's migrations
stay the one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from valuation.model_runtime.schema import FEATURES, TARGET

PREDICTIONS, OBSERVATIONS = "predictions", "observations"


class StoreUnavailable(RuntimeError):
    """The prediction store cannot be read; the message names the store (no password)."""


@dataclass(frozen=True)
class Window:
    """The recent predictions compared with the reference: the last `rows`, or those of the last
    `hours` (`by` = "count" | "time")."""

    by: str
    rows: int
    hours: float

    def __post_init__(self) -> None:
        if self.by not in ("count", "time"):
            raise ValueError(f"monitoring_job.window.by={self.by!r}: expected 'count' or 'time'")
        if self.rows < 1 or self.hours <= 0:
            raise ValueError("monitoring_job.window: rows must be >= 1 and hours > 0")

    def describe(self) -> str:
        return f"last {self.rows} predictions" if self.by == "count" else f"last {self.hours:g} h"


@dataclass(frozen=True)
class StoreTables:
    engine: Engine
    predictions: sa.Table
    observations: sa.Table

    @classmethod
    def reflect(cls, engine: Engine, schema: str | None = None) -> StoreTables:
        metadata = sa.MetaData(schema=schema)
        shown = engine.url.render_as_string(hide_password=True)
        try:
            metadata.reflect(engine, only=[PREDICTIONS, OBSERVATIONS])
        except sa.exc.InvalidRequestError as error:  # a table is missing
            raise StoreUnavailable(f"prediction store {shown}: {error}; run its migrations "
                                   "first") from None
        except sa.exc.SQLAlchemyError as error:
            cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            raise StoreUnavailable(f"prediction store {shown} cannot be read: {cause}") from None
        prefix = f"{schema}." if schema else ""
        return cls(engine, metadata.tables[prefix + PREDICTIONS],
                   metadata.tables[prefix + OBSERVATIONS])

    def _moment(self, column: sa.Column, moment: datetime) -> datetime:
        # A column without a time zone holds naive UTC; compare like with like.
        aware = bool(getattr(column.type, "timezone", False))
        return moment if aware else moment.astimezone(UTC).replace(tzinfo=None)

    def _frame(self, statement: Any) -> pd.DataFrame:
        try:
            with self.engine.connect() as connection:
                result = connection.execute(statement)
                return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        except sa.exc.SQLAlchemyError as error:
            cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            shown = self.engine.url.render_as_string(hide_password=True)
            raise StoreUnavailable(f"prediction store {shown} cannot be read: {cause}") from None

    def recent_predictions(self, model_name: str, version: str, window: Window,
                           now: datetime | None = None) -> pd.DataFrame:
        """The window's predictions of one version, newest first: features, price, created_at."""
        p = self.predictions
        statement = (sa.select(*[p.c[name] for name in FEATURES], p.c.price, p.c.created_at)
                     .where(p.c.model_name == model_name, p.c.model_version == str(version))
                     .order_by(p.c.created_at.desc()))
        if window.by == "time":
            since = (now or datetime.now(UTC)) - timedelta(hours=window.hours)
            statement = statement.where(p.c.created_at >= self._moment(p.c.created_at, since))
        else:
            statement = statement.limit(window.rows)
        return self._frame(statement)

    def labelled_rows(self, model_name: str, version: str, since: datetime) -> pd.DataFrame:
        """One row per prediction of the version with feedback received since `since`: sector,
        predicted price, observed price and when it was observed (the latest observation when a
        row was observed twice, e.g. an appraisal and then the sale)."""
        p, o = self.predictions, self.observations
        matched = sa.or_(o.c.prediction_id == p.c.id,
                         sa.and_(o.c.request_id == p.c.request_id, o.c.row_index == p.c.row_index))
        statement = (
            sa.select(p.c.id.label("prediction_id"), p.c.sector, p.c.price, p.c.created_at,
                      o.c.observed_price, o.c.observed_at)
            .select_from(o.join(p, matched))
            .where(p.c.model_name == model_name, p.c.model_version == str(version),
                   o.c.received_at >= self._moment(o.c.received_at, since))
        )
        frame = self._frame(statement)
        if frame.empty:
            return frame
        frame["observed_at"] = pd.to_datetime(frame["observed_at"], utc=True)
        latest = frame.sort_values("observed_at").drop_duplicates("prediction_id", keep="last")
        return latest.sort_values("observed_at").reset_index(drop=True)

    def feedback_rows(self, since: datetime) -> pd.DataFrame:
        """The observed prices received since `since` as training rows (eight features + price),
        one per distinct property: the latest observation of the same eight features wins."""
        o = self.observations
        statement = (sa.select(*[o.c[name] for name in FEATURES],
                               o.c.observed_price.label(TARGET), o.c.observed_at)
                     .where(o.c.received_at >= self._moment(o.c.received_at, since)))
        frame = self._frame(statement)
        if frame.empty:
            return frame.drop(columns=["observed_at"])
        frame["observed_at"] = pd.to_datetime(frame["observed_at"], utc=True)
        latest = frame.sort_values("observed_at").drop_duplicates(list(FEATURES), keep="last")
        return latest.drop(columns=["observed_at"]).reset_index(drop=True)
