"""The proxy's prediction writer: off the hot path, batched, with a bounded buffer.

`submit()` is what a request pays: it appends the request's rows to an in-memory buffer (or, when
the buffer is full, counts them as dropped) and returns. A thread of its own hands the buffered
rows, every `flush_interval_s` or sooner once `batch_rows` are waiting, to a child process that
runs the INSERTs (write_process.py says why a process); a batch leaves the buffer only once the
child answers.

When the database is down, or the child died or hung (it is replaced), batches stay in the
buffer and are retried with a growing back-off; predictions keep flowing, and once the buffer is
full new rows are dropped. Every dropped row is counted in
`valuation_prediction_store_dropped_total{reason}` and the losses are logged at most once per
`drop_log_interval_s` (with how many since the last line), never silently.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from serving.logging import get_logger
from serving.prediction_store import migrate
from serving.prediction_store.migrate_child import DatabaseUnreachable, upgrade_in_child
from serving.prediction_store.settings import PredictionStoreSettings
from serving.prediction_store.write_process import (
    Refused,
    Unreachable,
    WriteProcess,
    first_line,
    unreachable,
)

log = get_logger("serving.prediction_store")

DROPPED_BUFFER_FULL = "buffer_full"  # the database was slow or down and the buffer full
DROPPED_WRITE_ERROR = "write_error"  # the database refused the batch for a reason a retry won't fix
DROPPED_SHUTDOWN = "shutdown"  # still buffered when the proxy stopped (the database down)


@dataclass(frozen=True)
class PricedRequest:
    """One answered request, as the proxy knew it: `features` (the request's rows, already
    accepted by the model's rules) and `prices`, in the same order."""

    request_id: str
    key_id: str | None
    model_name: str
    model_version: str
    served_alias: str
    created_at: datetime
    features: Sequence[Any]
    prices: Sequence[float]


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.dropped = Counter(
            "valuation_prediction_store_dropped",
            "Predicted rows the prediction store lost, by reason",
            ["reason"], registry=registry)
        self.written = Counter(
            "valuation_prediction_store_written", "Predicted rows written to the prediction store",
            registry=registry)
        self.buffered = Gauge(
            "valuation_prediction_store_buffered_rows",
            "Predicted rows waiting in the proxy's buffer for the prediction store",
            registry=registry)
        for reason in (DROPPED_BUFFER_FULL, DROPPED_WRITE_ERROR, DROPPED_SHUTDOWN):
            self.dropped.labels(reason)  # exported at 0 from the start: alerts see the series


class PredictionWriter:
    def __init__(self, engine: Engine, settings: PredictionStoreSettings, metrics: StoreMetrics) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self._process = WriteProcess(engine.url.render_as_string(hide_password=False),
                                     settings.connect_timeout_s, settings.write_timeout_s)
        self._lock = threading.Condition()
        self._items: deque[PricedRequest] = deque()
        self._buffered_rows = 0
        self._submitted = 0  # requests accepted into the buffer, ever
        self._done = 0  # requests written (or dropped) from the buffer, ever
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-store-writer", daemon=True)
        self._unlogged_drops: dict[str, int] = {}
        self._last_drop_log = 0.0
        self._failing_since: float | None = None
        self._last_failure_log = 0.0
        self._prepared = False

    # ---- the hot path ------------------------------------------------------------------------

    def submit(self, priced: PricedRequest) -> bool:
        """Buffer one request's rows; False (rows counted as dropped) when the buffer is full."""
        n_rows = len(priced.prices)
        with self._lock:
            if self._buffered_rows + n_rows > self.settings.buffer_rows:
                self._drop_locked(DROPPED_BUFFER_FULL, n_rows)
                return False
            self._items.append(priced)
            self._buffered_rows += n_rows
            self._submitted += 1
            full = self._buffered_rows >= self.settings.batch_rows
        if full:
            self._wake.set()
        return True

    # ---- control ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every request submitted so far is written (True) or `timeout_s` passed."""
        with self._lock:
            target = self._submitted
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def close(self) -> None:
        """Write what is buffered (within close_timeout_s), then stop; the rest is counted."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self.settings.close_timeout_s)
        with self._lock:
            left = self._buffered_rows
            if left:
                self._drop_locked(DROPPED_SHUTDOWN, left)
                self._items.clear()
                self._buffered_rows = 0
        self._process.stop()
        self._log_drops(force=True)
        self.engine.dispose()

    @property
    def buffered_rows(self) -> int:
        return self._buffered_rows

    @property
    def write_process_pid(self) -> int | None:
        """The writer child's pid (None until the first batch, or after it stopped)."""
        return self._process.pid

    @property
    def prepared(self) -> bool:
        return self._prepared

    # ---- the writer thread ------------------------------------------------------------------

    def prepare(self) -> None:
        """Bring the schema to the code's revision (`migrate_on_start`, in a child process, see
        migrate_child) or check it is there. The writer does it before its first batch if the
        proxy's start-up could not."""
        try:
            if self.settings.migrate_on_start:  # in a child: Alembic's proxies are process-wide
                upgrade_in_child(self.engine.url.render_as_string(hide_password=False),
                                 self.settings.connect_timeout_s)
            else:
                migrate.check_current(self.engine)
        except DatabaseUnreachable as error:
            raise Unreachable(str(error)) from error
        except (OperationalError, DBAPIError) as error:
            if unreachable(error):
                raise Unreachable() from error
            raise
        self._prepared = True

    def _run(self) -> None:
        backoff = self.settings.retry_backoff_s
        while True:
            stopping = self._stopping.is_set()
            try:
                if not self._prepared:
                    self.prepare()
                while self._write_one_batch():
                    pass
                backoff = self.settings.retry_backoff_s
                wait = self.settings.flush_interval_s
            except (Unreachable, migrate.StoreNotMigrated) as error:
                self._note_failure(error.__cause__ or error)
                wait, backoff = backoff, min(backoff * 2, self.settings.retry_backoff_max_s)
            except Exception as error:  # never let the writer die: the buffer would only fill
                self._note_failure(error)
                wait, backoff = backoff, min(backoff * 2, self.settings.retry_backoff_max_s)
            self._log_drops()
            if stopping:
                return
            self._wake.wait(wait)
            self._wake.clear()

    def _write_one_batch(self) -> bool:
        """Write the oldest buffered requests, up to batch_rows rows; False when none waited."""
        with self._lock:
            batch: list[PricedRequest] = []
            n_rows = 0
            for priced in self._items:
                if batch and n_rows + len(priced.prices) > self.settings.batch_rows:
                    break
                batch.append(priced)
                n_rows += len(priced.prices)
            self.metrics.buffered.set(self._buffered_rows)
        if not batch:
            return False
        reason = None
        try:
            self._process.write(batch)
        except Unreachable:
            raise  # kept in the buffer, retried after a back-off
        except Exception as error:  # refused, or a row that cannot be sent: the writer goes on
            reason = DROPPED_WRITE_ERROR
            log.error("prediction_store_write_refused", rows=n_rows,
                      error=str(error) if isinstance(error, Refused) else repr(error)[:500])
        with self._lock:
            for _ in batch:
                self._items.popleft()  # submit() only appends: the batch is still at the left
            self._buffered_rows -= n_rows
            self._done += len(batch)
            if reason is not None:
                self._drop_locked(reason, n_rows)
            self._lock.notify_all()
        if reason is None:
            self.metrics.written.inc(n_rows)
            self._note_recovery()
        return True

    # ---- losses and failures, logged once per interval ---------------------------------------

    def _drop_locked(self, reason: str, n_rows: int) -> None:
        self.metrics.dropped.labels(reason).inc(n_rows)
        self._unlogged_drops[reason] = self._unlogged_drops.get(reason, 0) + n_rows

    def _log_drops(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._unlogged_drops or (
                    not force and now - self._last_drop_log < self.settings.drop_log_interval_s):
                return
            drops, self._unlogged_drops = self._unlogged_drops, {}
            self._last_drop_log = now
        log.warning("prediction_store_rows_dropped", rows=sum(drops.values()), by_reason=drops,
                    buffered_rows=self._buffered_rows, buffer_rows=self.settings.buffer_rows)

    def _note_failure(self, error: Exception) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._last_failure_log >= self.settings.drop_log_interval_s:
            self._last_failure_log = now
            log.error("prediction_store_unavailable", error=first_line(error),
                      buffered_rows=self._buffered_rows,
                      failing_for_s=round(now - self._failing_since, 1))

    def _note_recovery(self) -> None:
        if self._failing_since is not None:
            log.info("prediction_store_recovered",
                     after_s=round(time.monotonic() - self._failing_since, 1))
            self._failing_since = None
            self._last_failure_log = 0.0
