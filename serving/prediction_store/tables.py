"""The store's tables (SQLAlchemy 2 declarative models). Alembic's migrations/ create them; a
change here needs a new revision there.

`predictions`: one row per priced row and per alias that priced it (a shadow price of the same
request row is a row of its own). `observations`: observed prices (a sale or an appraisal) with the
prediction they were matched to, when there is one.

Times are timezone-aware UTC on the way in and out, whatever the database keeps (SQLite has no
time zones: `UtcDateTime` stores naive UTC and gives it back as UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from valuation.model_runtime.schema import FEATURES

# What `predictions.served_alias` may hold: the alias that answered, `explicit` when the client
# asked for a version, `fallback` when the champion's server was down and the proxy answered with
# another loaded version (flagged `degraded` in the response).
SERVED_ALIASES = ("champion", "challenger", "canary", "shadow", "explicit", "fallback")
OBSERVATION_KINDS = ("sale", "appraisal")

# Names of constraints and indexes, spelt the same on every database (Alembic compares them).
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL, INTEGER on SQLite (only an INTEGER PRIMARY KEY autoincrements there).
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator):
    """A timezone-aware datetime, stored as UTC; naive values are refused (they are ambiguous)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a time zone (times are stored in UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class _Features:
    """The model's eight features, as columns (categories lower-cased, as the model reads them)."""

    type: Mapped[str] = mapped_column(String(64))
    sector: Mapped[str] = mapped_column(String(128))
    net_usable_area: Mapped[float] = mapped_column(Float)
    net_area: Mapped[float] = mapped_column(Float)
    n_rooms: Mapped[float] = mapped_column(Float)
    n_bathroom: Mapped[float] = mapped_column(Float)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)


class Prediction(_Features, Base):
    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128))
    row_index: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    key_id: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str] = mapped_column(String(64))
    served_alias: Mapped[str] = mapped_column(String(32))
    price: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("request_id", "row_index", "served_alias",
                         name="uq_predictions_request_row_alias"),
        Index("ix_predictions_created_at_model_version", "created_at", "model_version"),
        # feedback given by features finds the latest prediction of the same row through it
        Index("ix_predictions_features", "latitude", "longitude", "net_usable_area"),
    )


class Observation(_Features, Base):
    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    request_id: Mapped[str | None] = mapped_column(String(128))
    row_index: Mapped[int | None] = mapped_column(Integer)
    observed_price: Mapped[float] = mapped_column(Float)
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    key_id: Mapped[str | None] = mapped_column(String(64))
    prediction_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("predictions.id", ondelete="SET NULL"))

    __table_args__ = (
        # A duplicate is the same property (its eight features), the same kind of observation,
        # at the same time, at the same price: sending it again changes nothing.
        UniqueConstraint(*FEATURES, "kind", "observed_at", "observed_price",
                         name="uq_observations_fact"),
        Index("ix_observations_request_row", "request_id", "row_index"),
        Index("ix_observations_observed_at", "observed_at"),
        Index("ix_observations_prediction_id", "prediction_id"),
    )

