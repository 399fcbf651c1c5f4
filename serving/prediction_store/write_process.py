"""The prediction store's INSERTs, in a child process of the proxy.

Why a process: the proxy answers every request on one event loop, and all threads of a process
share one GIL. Turning rows into SQLAlchemy parameters and running the INSERT is Python work per
row; in a thread of the proxy it takes the GIL from the event loop, which costs single-row
throughput at concurrency (bench/prediction_store.py measures it). In a child, the proxy's share
of a batch is one orjson dump and one write to a socket; the child does the rest on another core.

The wire, a socket pair carried by multiprocessing's Connection (byte frames only: no pickle):
- the first frame is {"url", "connect_timeout_s"}: the URL may hold a password, so it never
  appears in the process list;
- then one frame per batch, a JSON list of requests (`encode_batch`), answered by one frame:
  {"written": rows}, {"unreachable": reason} (the database is down or busy: the proxy keeps the
  batch and retries) or {"refused": reason} (these rows will never go in: counted as dropped).
The child exits when its socket closes, so it never outlives the proxy.

    python -m serving.prediction_store.write_process FD      (started by `WriteProcess`)
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError, OperationalError

from serving.prediction_store.engine import open_engine
from serving.prediction_store.rows import insert_ignoring_duplicates, request_rows
from serving.prediction_store.tables import Prediction

ANSWER_UNREACHABLE = "unreachable"
ANSWER_REFUSED = "refused"
ANSWER_WRITTEN = "written"
_EXIT_WAIT_S = 5.0


class Unreachable(Exception):
    """The database is down or busy, or the writer process died or hung: the batch stays
    buffered and is retried."""


class Refused(Exception):
    """The database refused these rows for a reason a retry will not fix."""


def encode_batch(batch: Sequence[Any]) -> bytes:
    """PricedRequests as one frame: a list of [request_id, key_id, model_name, model_version,
    served_alias, created_at, features, prices]."""
    return orjson.dumps(
        [[p.request_id, p.key_id, p.model_name, p.model_version, p.served_alias, p.created_at,
          list(p.features), list(p.prices)] for p in batch],
        option=orjson.OPT_SERIALIZE_NUMPY)


class WriteProcess:
    """The proxy's side: starts the child on first use, sends a batch, waits for its answer.
    Used by one thread (the writer's); a child that died or did not answer within `answer_timeout_s`
    is killed and the next batch starts a new one."""

    def __init__(self, url: str, connect_timeout_s: int, answer_timeout_s: float) -> None:
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._answer_timeout_s = answer_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def write(self, batch: Sequence[Any]) -> int:
        """Write `batch` (PricedRequests); the number of rows the child wrote."""
        frame = encode_batch(batch)
        connection = self._connected()
        try:
            connection.send_bytes(frame)
            if not connection.poll(self._answer_timeout_s):
                self.stop()
                raise Unreachable(f"the store's writer process did not answer within "
                                  f"{self._answer_timeout_s:g} s (killed; a new one takes the batch)")
            answer = orjson.loads(connection.recv_bytes())
        except (EOFError, OSError) as error:
            code = self.stop()
            raise Unreachable(f"the store's writer process exited (code {code}); a new one "
                              "takes the batch") from error
        if ANSWER_WRITTEN in answer:
            return int(answer[ANSWER_WRITTEN])
        if ANSWER_UNREACHABLE in answer:
            raise Unreachable(answer[ANSWER_UNREACHABLE])
        raise Refused(answer.get(ANSWER_REFUSED, f"unexpected answer {answer!r}"))

    def stop(self) -> int | None:
        """Close the socket (the child exits), kill it if it does not; its exit code."""
        connection, process = self._connection, self._process
        self._connection = self._process = None
        if connection is not None:
            connection.close()
        if process is None:
            return None
        try:
            return process.wait(_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:  # hung (or stopped): it cannot finish a write now
            process.kill()
            return process.wait()

    def _connected(self) -> Connection:
        if self._process is not None and self._process.poll() is not None:
            self.stop()  # it died between batches
        if self._connection is None:
            ours, theirs = socket.socketpair()
            with theirs:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", __name__, str(theirs.fileno())],
                    pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
            self._connection = Connection(ours.detach())
            self._connection.send_bytes(orjson.dumps(
                {"url": self._url, "connect_timeout_s": self._connect_timeout_s}))
        return self._connection


# ---- the child --------------------------------------------------------------------------------

def _serve(connection: Connection) -> None:
    opening = orjson.loads(connection.recv_bytes())
    engine = open_engine(opening["url"], int(opening["connect_timeout_s"]))
    insert = insert_ignoring_duplicates(engine, Prediction.__table__)
    try:
        while True:
            try:
                frame = connection.recv_bytes()
            except (EOFError, OSError):
                return  # the proxy closed the socket or died
            try:
                rows = [row for fields in orjson.loads(frame)
                        for row in request_rows(*fields[:5], datetime.fromisoformat(fields[5]),
                                                fields[6], fields[7])]
                with engine.begin() as database:
                    database.execute(insert, rows)
                answer = {ANSWER_WRITTEN: len(rows)}
            except (OperationalError, DBAPIError) as error:
                kind = ANSWER_UNREACHABLE if unreachable(error) else ANSWER_REFUSED
                answer = {kind: first_line(error)}
            except Exception as error:  # a row the store cannot take must not stop the writer
                answer = {ANSWER_REFUSED: repr(error)[:500]}
            connection.send_bytes(orjson.dumps(answer))
    finally:
        engine.dispose()


def unreachable(error: DBAPIError) -> bool:
    """Whether the database could not be reached or used right now (retry later), rather than
    refusing these rows (`error`: a SQLAlchemy DBAPIError)."""
    return isinstance(error, OperationalError) or error.connection_invalidated


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0][:500] if str(error).strip() else repr(error)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        _serve(Connection(int(sys.argv[1])))
