"""Alembic's environment for the prediction store: always run on a connection that
`serving.prediction_store.migrate` opened (and locked), never from an alembic.ini."""

from __future__ import annotations

from alembic import context

from serving.prediction_store.migrate import VERSION_TABLE
from serving.prediction_store.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
