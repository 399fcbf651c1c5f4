"""`valuation store upgrade | prune`: the prediction store's schema and retention, for operators
(the proxy upgrades the schema itself at start-up unless prediction_store.migrate_on_start is off)."""

from __future__ import annotations

import typer

from serving.cli.audit import audit
from serving.cli.output import fail
from serving.redaction import redact_uri

store_app = typer.Typer(help="The prediction store: schema migrations and retention.",
                        no_args_is_help=True)


def open_store(migrate: bool | None = None):
    """The store's engine from conf/serving.yaml, upgraded or checked (`migrate`, default:
    prediction_store.migrate_on_start); the command fails with a clear message otherwise."""
    from sqlalchemy.exc import OperationalError

    from serving.prediction_store import migrate as migrations
    from serving.prediction_store.engine import open_engine
    from serving.prediction_store.settings import store_settings
    from serving.settings import get_settings

    settings = store_settings(get_settings())
    url = settings.database_url
    engine = open_engine(url, settings.connect_timeout_s)
    try:
        migrations.prepare(engine, settings.migrate_on_start if migrate is None else migrate)
    except OperationalError as error:
        fail(f"cannot reach the prediction store {redact_uri(url)}: {str(error.orig).strip()[:300]}")
    except migrations.StoreNotMigrated as error:
        fail(str(error))
    return engine, settings


@store_app.command()
def upgrade() -> None:
    """Apply the store's Alembic migrations up to the newest revision."""
    from serving.prediction_store.migrate import current_revision

    engine, settings = open_store(migrate=True)
    revision = current_revision(engine)
    audit("store_upgrade:cli", outputs={"revision": revision})
    typer.echo(f"{redact_uri(settings.database_url)}: at revision {revision}")


@store_app.command()
def prune(
    days: float | None = typer.Option(None, "--days", min=0.001,
                                      help="Keep this many days [default: monitoring.retention_days]"),
) -> None:
    """Delete predictions and observations older than the retention period."""
    from serving.prediction_store.queries import apply_retention
    from serving.settings import get_settings

    engine, _ = open_store()
    keep = days if days is not None else float(get_settings().monitoring.retention_days)
    deleted = apply_retention(engine, keep)
    audit("store_prune:cli", inputs={"retention_days": keep}, outputs=deleted)
    typer.echo(f"deleted {deleted['predictions']} predictions and {deleted['observations']} "
               f"observations older than {keep:g} days")
