"""Schema migrations: Alembic's history in `migrations/`, applied to the store's database.

`upgrade(engine)` brings the database to the newest revision and is safe to call from several
processes at once (proxy replicas starting together): on PostgreSQL it holds an advisory lock,
on SQLite a lock file beside the database, while Alembic runs. `check_current(engine)` refuses a
database that is behind (what a process that does not migrate checks before using it).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

SCRIPT_LOCATION = str(Path(__file__).resolve().parent / "migrations")
# Not Alembic's default `alembic_version`: the store may share a database with MLflow's backend
# store (docker compose does), which keeps its own Alembic revision there.
VERSION_TABLE = "prediction_store_version"
# pg_advisory_lock's key: any constant the project does not use for something else.
ADVISORY_LOCK_KEY = 0x76616C7374  # "valst"


class StoreNotMigrated(RuntimeError):
    """The database is behind the code's newest revision; the message says how to upgrade."""


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}
                                          ).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply every migration up to `revision`; returns the revision the database is then at."""
    with _migration_lock(engine), engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)
    return current_revision(engine)


def check_current(engine: Engine) -> None:
    """Raise StoreNotMigrated when the database is not at the newest revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise StoreNotMigrated(
            f"the prediction store is at revision {current or 'none (empty)'}, the code needs {head}: "
            "run `valuation store upgrade` (or set prediction_store.migrate_on_start)")


def prepare(engine: Engine, migrate_on_start: bool) -> None:
    """What a process does before using the store: upgrade it, or check it is current."""
    if migrate_on_start:
        upgrade(engine)
    else:
        check_current(engine)


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                connection.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
