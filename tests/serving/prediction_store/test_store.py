"""The store on its two real databases (a SQLite file; PostgreSQL on 127.0.0.1:5432 in a schema of
its own): migrations, the batched writer, the monitoring queries, feedback matching and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, inspect, select

from serving.prediction_store import feedback
from serving.prediction_store.migrate import VERSION_TABLE, current_revision, head_revision, upgrade
from serving.prediction_store.queries import (
    apply_retention,
    feedback_rows,
    labelled_rows,
    predictions_window,
)
from serving.prediction_store.settings import PredictionStoreSettings
from serving.prediction_store.tables import Base, Observation, Prediction
from serving.prediction_store.writer import PredictionWriter, StoreMetrics
from tests.serving.prediction_store.support import RULES, priced, row

pytestmark = pytest.mark.slow

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def write(engine: Engine, *requests) -> PredictionWriter:
    writer = PredictionWriter(engine, PredictionStoreSettings(flush_interval_s=0.05),
                              StoreMetrics(CollectorRegistry()))
    writer.prepare()
    writer.start()
    for request in requests:
        assert writer.submit(request)
    assert writer.flush(20), "the writer did not write within 20 s"
    return writer


def observation(raw: dict, index: int = 0):
    checked = feedback.check(raw, index, RULES)
    assert not isinstance(checked, list), checked
    return checked


def count(engine: Engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_migrations_build_exactly_the_models_and_run_twice(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    assert upgrade(engine) == head_revision()  # a second start changes nothing
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": VERSION_TABLE})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
    indexes = {index["name"]: index["column_names"] for index in inspect(engine).get_indexes("predictions")}
    assert indexes["ix_predictions_created_at_model_version"] == ["created_at", "model_version"]


def test_written_rows_come_back_by_time_count_and_version(engine: Engine) -> None:
    writer = write(
        engine,
        priced("r1", [row(type="Casa", sector=" Lo  Barnechea")], version="1", at=T0),
        priced("r2", [row(n_rooms="3"), row(net_area=400)], version="2", at=T0 + timedelta(hours=1)),
        priced("r3", [row()], version="2", at=T0 + timedelta(hours=2)),
    )
    writer.close()
    every = predictions_window(engine)
    assert list(every.request_id) == ["r1", "r2", "r2", "r3"]
    first = every.iloc[0]
    assert (first.type, first.sector) == ("casa", "lo barnechea")  # as the model reads them
    assert every.iloc[1].n_rooms == 3.0 and every.iloc[2].row_index == 1
    assert str(every.created_at.dt.tz) == "UTC" and every.created_at.iloc[0] == T0
    window = predictions_window(engine, since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2))
    assert list(window.request_id) == ["r2", "r2"]
    assert list(predictions_window(engine, last=2).request_id) == ["r2", "r3"]
    assert set(predictions_window(engine, model_version="1").request_id) == {"r1"}
    assert writer.metrics.written._value.get() == 4


def test_a_request_row_is_kept_once_per_alias(engine: Engine) -> None:
    writer = write(engine, priced("same", [row()]), priced("same", [row()]),
                   priced("same", [row()], alias="shadow", version="2"))
    writer.close()
    assert sorted(predictions_window(engine).served_alias) == ["champion", "shadow"]


def test_feedback_is_matched_recorded_once_and_joined_to_every_alias(engine: Engine) -> None:
    write(engine,
          priced("req-a", [row(), row(net_area=420)], at=T0, prices=[20000, 21000]),
          priced("req-a", [row(), row(net_area=420)], alias="shadow", version="2", at=T0,
                 prices=[19000, 19500]),
          priced("req-b", [row(net_area=420)], at=T0 + timedelta(days=1))).close()
    sale = {"observed_price": 21500, "observed_at": "2026-06-10T00:00:00Z", "kind": "sale"}
    by_request = observation({**sale, "request_id": "req-a", "row_index": 0})
    by_features = observation({**sale, "features": row(net_area=420), "kind": "appraisal"}, 1)
    unmatched = observation({**sale, "features": row(sector="vitacura")}, 2)

    outcome = feedback.record(engine, [by_request, by_features, unmatched], key_id="k2")
    assert (outcome.recorded, outcome.duplicates) == (3, 0)
    answered = predictions_window(engine, served_aliases=["champion"])
    ids = dict(zip(zip(answered.request_id, answered.row_index, strict=True), answered.id, strict=True))
    # by features: the latest answered prediction of the same row (req-b), never a shadow row
    assert outcome.prediction_ids == [ids[("req-a", 0)], ids[("req-b", 0)], None]

    again = feedback.record(engine, [by_request, by_features], key_id="k2")
    assert (again.recorded, again.duplicates) == (0, 2) and again.ids == outcome.ids[:2]
    assert count(engine, Observation.__table__) == 3

    labelled = labelled_rows(engine, since=T0, until=T0 + timedelta(minutes=1))
    pairs = sorted(zip(labelled.served_alias, labelled.price, strict=True))
    assert pairs == [("champion", 20000), ("shadow", 19000)]
    assert set(labelled.observed_price) == {21500}
    assert len(feedback_rows(engine)) == 3


def test_feedback_refuses_unknown_requests_and_rows(engine: Engine) -> None:
    write(engine, priced("known", [row()])).close()
    sale = {"observed_price": 21500, "observed_at": "2026-06-10", "kind": "sale"}
    with pytest.raises(feedback.UnknownRequest, match="'nope' \\(row 1\\)"):
        feedback.record(engine, [observation({**sale, "request_id": "known", "row_index": 0}),
                                 observation({**sale, "request_id": "nope", "row_index": 0}, 1)], None)
    with pytest.raises(feedback.FeedbackRejected) as refused:
        feedback.record(engine, [observation({**sale, "request_id": "known", "row_index": 3}, 4)], None)
    assert [(e.row, e.field) for e in refused.value.errors] == [(4, "row_index")]
    assert count(engine, Observation.__table__) == 0  # all or nothing


def test_retention_deletes_old_rows_and_keeps_recent_observations_whole(engine: Engine) -> None:
    now = datetime.now(UTC)
    write(engine, priced("old", [row()], at=now - timedelta(days=100)),
          priced("new", [row(net_area=450)], at=now - timedelta(days=1))).close()
    feedback.record(engine, [observation({"request_id": "old", "row_index": 0, "observed_price": 1.0,
                                          "observed_at": now.isoformat(), "kind": "sale"})], None)
    deleted = apply_retention(engine, retention_days=90)
    assert deleted == {"predictions": 1, "observations": 0}
    assert list(predictions_window(engine).request_id) == ["new"]
    kept = feedback_rows(engine)
    assert kept.prediction_id.isna().all() and kept.net_area.iloc[0] == 500.0  # its own copy
    assert apply_retention(engine, 1, now=now + timedelta(days=2)) == {"predictions": 1, "observations": 1}
    assert count(engine, Prediction.__table__) == 0
