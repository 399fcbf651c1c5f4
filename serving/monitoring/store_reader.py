"""What the monitoring job reads from the prediction store, through the store's own queries
(serving/prediction_store/queries.py): the window of recent predictions of a version, its
predictions that have feedback (one line each, the latest observation), and the feedback as
training rows (one per distinct property). This module only narrows those queries to what a
monitoring run needs and turns a database failure into one clear error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.prediction_store.engine import open_engine
from serving.prediction_store.migrate import StoreNotMigrated, check_current
from serving.prediction_store.queries import feedback_rows, labelled_rows, predictions_window
from serving.prediction_store.settings import PredictionStoreSettings
from valuation.model_runtime.schema import FEATURES, TARGET


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


def connect(store: PredictionStoreSettings) -> Engine:
    """The store the proxies write to, checked to be at the code's schema revision."""
    engine = open_engine(store.database_url, store.connect_timeout_s)
    with reading(engine):
        try:
            check_current(engine)
        except StoreNotMigrated as behind:
            raise StoreUnavailable(f"prediction store {_shown(engine)}: {behind}") from None
    return engine


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[None]:
    """A database failure while reading, as StoreUnavailable naming the store."""
    try:
        yield
    except sa.exc.SQLAlchemyError as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StoreUnavailable(f"prediction store {_shown(engine)} cannot be read: {cause}") from None


def recent_predictions(engine: Engine, model_name: str, version: str, window: Window,
                       now: datetime | None = None) -> pd.DataFrame:
    """The window's predictions of one version, whichever alias served them."""
    with reading(engine):
        if window.by == "time":
            since = (now or datetime.now(UTC)) - timedelta(hours=window.hours)
            return predictions_window(engine, since=since, model_name=model_name,
                                      model_version=version)
        return predictions_window(engine, last=window.rows, model_name=model_name,
                                  model_version=version)


def latest_labelled(engine: Engine, model_name: str, version: str,
                    since: datetime) -> pd.DataFrame:
    """One line per prediction of the version made since `since` that has feedback: its features,
    price, observed price and time (the latest observation when a row was observed twice, e.g.
    an appraisal and then the sale). Ordered by observation time."""
    with reading(engine):
        frame = labelled_rows(engine, since=since, model_name=model_name, model_version=version)
    if frame.empty:
        return frame
    latest = frame.sort_values(["observed_at", "observation_id"]).drop_duplicates(
        "prediction_id", keep="last")
    return latest.reset_index(drop=True)


def training_rows(engine: Engine, since: datetime) -> pd.DataFrame:
    """The prices observed since `since` as training rows (eight features + price), one per
    distinct property: the latest observation of the same eight features wins."""
    with reading(engine):
        frame = feedback_rows(engine, since=since)
    latest = frame.sort_values(["observed_at", "id"]).drop_duplicates(list(FEATURES), keep="last")
    return (latest[[*FEATURES, "observed_price"]].rename(columns={"observed_price": TARGET})
            .reset_index(drop=True))


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
