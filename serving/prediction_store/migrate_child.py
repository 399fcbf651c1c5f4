"""Alembic in a child process, for the proxy.

Alembic installs `alembic.op` and `alembic.context` as process-wide proxies while it runs, so two
migrations at once in one process break each other (`KeyError: 'script'`). The proxy's
model-server supervisor opens MLflow's tracking store from its own thread, and MLflow migrates that
database with Alembic: the prediction store's migrations therefore run in a process of their own.

    PREDICTION_STORE_MIGRATE_URL=... python -m serving.prediction_store.migrate_child

Exit 0: migrated (the revision on stdout); EXIT_UNREACHABLE: the database could not be reached;
anything else: the migration failed (the reason on stderr). The URL travels in the environment,
never on a command line other users can read.
"""

from __future__ import annotations

import os
import subprocess
import sys

URL_ENV = "PREDICTION_STORE_MIGRATE_URL"
TIMEOUT_ENV = "PREDICTION_STORE_MIGRATE_CONNECT_TIMEOUT_S"
EXIT_UNREACHABLE = 3
# Importing SQLAlchemy and Alembic, connecting, and waiting for another replica's lock.
CHILD_TIMEOUT_S = 300


class MigrationFailed(RuntimeError):
    """The child could not migrate the database for a reason other than reaching it."""


class DatabaseUnreachable(RuntimeError):
    """The child could not reach the database (retry later)."""


def upgrade_in_child(url: str, connect_timeout_s: int) -> str:
    """Run `migrate.upgrade` in a child interpreter; the revision the database is then at."""
    env = {**os.environ, URL_ENV: url, TIMEOUT_ENV: str(connect_timeout_s)}
    done = subprocess.run([sys.executable, "-m", __name__], env=env, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S)
    reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1][:500]
    if done.returncode == EXIT_UNREACHABLE:
        raise DatabaseUnreachable(reason)
    if done.returncode != 0:
        raise MigrationFailed(f"the prediction store's migrations failed: {reason}")
    return done.stdout.strip()


def main() -> int:
    from sqlalchemy.exc import OperationalError

    from serving.prediction_store.engine import open_engine
    from serving.prediction_store.migrate import upgrade

    engine = open_engine(os.environ[URL_ENV], int(os.environ.get(TIMEOUT_ENV, "5")))
    try:
        print(upgrade(engine))
    except OperationalError as error:
        print(str(error.orig).strip().splitlines()[0] if error.orig else str(error), file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
