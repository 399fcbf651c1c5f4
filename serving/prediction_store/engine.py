"""The store's database: a SQLAlchemy engine for `prediction_store.url`.

SQLite (the embedded default) is shared by several processes (proxy replicas, the worker, the
CLI): it runs in WAL mode, so readers never block the writer, and a write waits up to the
connect timeout for another process's lock instead of failing at once. Foreign keys are
switched on, as PostgreSQL always has them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy import Engine, create_engine, event


def open_engine(url: str, connect_timeout_s: int = 5) -> Engine:
    """An engine for `url`; nothing is connected yet. `connect_timeout_s` bounds a connection
    attempt to a server, so a store that is down fails fast instead of holding a writer."""
    if url.startswith("sqlite"):
        # For SQLite, the timeout is how long a write waits for another process's lock.
        engine = create_engine(url, connect_args={"timeout": connect_timeout_s})
        event.listen(engine, "connect", partial(_sqlite_pragmas, busy_timeout_ms=connect_timeout_s * 1000))
        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith(("postgresql", "postgres")):
        connect_args["connect_timeout"] = connect_timeout_s
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_pragmas(connection: Any, _record: Any, busy_timeout_ms: int) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL is safe against corruption and an application crash; only the last
    # commits may be lost to a power cut or OS crash: a fair price for telemetry-like rows, and
    # a commit no longer waits for an fsync.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

