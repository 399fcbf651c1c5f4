"""The writer when its database is down: the request path never waits, the buffer stays bounded,
each lost row is counted and the losses are logged once per interval; buffered rows are written
once the database is back. The faults are real: a PostgreSQL URL whose port nobody listens on
(connection refused), and a SQLite file whose write lock another connection holds."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from serving.ports import free_port
from serving.prediction_store.engine import open_engine
from serving.prediction_store.queries import predictions_window
from serving.prediction_store.settings import PredictionStoreSettings
from serving.prediction_store.writer import PredictionWriter, StoreMetrics
from tests.serving.prediction_store.support import priced, row
from tests.support.serving import wait_for

pytestmark = pytest.mark.slow


def make_writer(url: str, **settings) -> PredictionWriter:
    values = {"flush_interval_s": 0.05, "retry_backoff_s": 0.1, "retry_backoff_max_s": 0.2,
              "connect_timeout_s": 1, **settings}
    writer = PredictionWriter(open_engine(url, 1), PredictionStoreSettings(**values),
                              StoreMetrics(CollectorRegistry()))
    writer.start()
    return writer


def dropped(writer: PredictionWriter, reason: str = "buffer_full") -> float:
    return writer.metrics.dropped.labels(reason)._value.get()


def test_an_unreachable_database_costs_counted_rows_not_time(capsys) -> None:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test"  # nobody listens there
    writer = make_writer(url, buffer_rows=5, drop_log_interval_s=60)
    try:
        started = time.perf_counter()
        accepted = [writer.submit(priced(f"r{i}", [row(), row()])) for i in range(10)]
        elapsed = time.perf_counter() - started
        assert accepted == [True, True] + [False] * 8  # 2 requests of 2 rows fit in 5
        assert dropped(writer) == 16 and writer.buffered_rows == 4
        assert elapsed < 1.0  # submit never touches the database (not a timing claim: a bound)
        wait_for(lambda: "prediction_store_rows_dropped" in capsys.readouterr().out, 10,
                 "the dropped rows to be logged")
        writer.submit(priced("later", [row()] * 3))  # dropped again, within the same interval
        time.sleep(0.5)
        out = capsys.readouterr().out
        assert "prediction_store_rows_dropped" not in out  # once per interval, not per loss
        assert dropped(writer) == 19
    finally:
        writer.close()
    assert dropped(writer, "shutdown") == 4  # what was still buffered is counted too
    assert "prediction_store_rows_dropped" in capsys.readouterr().out  # and said at shutdown


def test_rows_buffered_while_the_database_was_away_are_written_when_it_is_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    writer = make_writer(url)
    try:
        assert writer.submit(priced("before", [row()])) and writer.flush(20)
        other = sqlite3.connect(tmp_path / "predictions.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock (a long backup, say)
        for i in range(3):
            assert writer.submit(priced(f"r{i}", [row()]))
        time.sleep(2.5)  # over the 1 s lock wait: the writer failed at least once
        assert writer.buffered_rows == 3
        other.execute("COMMIT")
        other.close()
        assert writer.flush(20) and writer.buffered_rows == 0
    finally:
        writer.close()
    assert list(predictions_window(open_engine(url)).request_id) == ["before", "r0", "r1", "r2"]
    assert dropped(writer) == 0 and writer.metrics.written._value.get() == 4
