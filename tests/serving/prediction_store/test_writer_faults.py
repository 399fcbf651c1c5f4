"""The writer when its database is down: the request path never waits, the buffer stays bounded,
each lost row is counted and the losses are logged once per interval; buffered rows are written
once the database is back; a writer process killed or hung is replaced without losing a row. The
faults are real: a PostgreSQL URL whose port nobody listens on (connection refused), a SQLite
file whose write lock another connection holds, and signals sent to the writer process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
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


# ---- the writer process (write_process.py): killed, hung, orphaned ------------------------------

def test_a_killed_writer_process_is_replaced_and_loses_no_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    writer = make_writer(url)
    try:
        assert writer.submit(priced("before", [row()])) and writer.flush(20)
        first = writer.write_process_pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie",
                 10, "the writer process to die")
        for i in range(3):
            assert writer.submit(priced(f"r{i}", [row(), row()]))
        assert writer.flush(20) and writer.buffered_rows == 0
        assert writer.write_process_pid not in (None, first)
    finally:
        writer.close()
    assert list(predictions_window(open_engine(url)).request_id) == ["before"] + ["r0"] * 2 + [
        "r1"] * 2 + ["r2"] * 2
    assert dropped(writer) == 0 and dropped(writer, "write_error") == 0


def test_a_hung_writer_process_is_killed_after_the_write_timeout(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    writer = make_writer(url, write_timeout_s=1.0, drop_log_interval_s=0.1)
    try:
        assert writer.submit(priced("before", [row()])) and writer.flush(20)
        hung = writer.write_process_pid
        os.kill(hung, signal.SIGSTOP)  # alive, holding its socket, answering nothing
        assert writer.submit(priced("during", [row()]))
        assert writer.flush(20) and writer.buffered_rows == 0
        assert writer.write_process_pid != hung
        assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == "zombie"
    finally:
        writer.close()
    assert "did not answer within 1 s" in capsys.readouterr().out  # said, not silent
    assert list(predictions_window(open_engine(url)).request_id) == ["before", "during"]


def test_the_writer_process_exits_with_the_proxy(tmp_path: Path) -> None:
    """SIGKILL the process that owns the writer: its child sees the socket close and exits."""
    script = (
        "import sys, time\n"
        "from tests.serving.prediction_store.test_writer_faults import make_writer\n"
        "from tests.serving.prediction_store.support import priced, row\n"
        f"w = make_writer('sqlite:///{tmp_path / 'p.db'}')\n"
        "assert w.submit(priced('x', [row()])) and w.flush(20)\n"
        "print(w.write_process_pid, flush=True)\n"
        "time.sleep(60)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(owner.stdout.readline())
        assert psutil.Process(child).ppid() == owner.pid
        owner.kill()
        owner.wait(10)
        wait_for(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie",
                 10, "the orphaned writer process to exit")
    finally:
        owner.kill()
