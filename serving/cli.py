"""`valuation`: the operator's command line (API keys, model promotion, registry status).

    valuation keys create --owner alice --role predict   # the key alone on the last line
    valuation keys list
    valuation keys revoke 1a2b3c4d5e6f
    valuation promote 7 --alias champion --reason "beats v6 on March data"
    valuation status

Keys live in Vault (VAULT_ADDR, VAULT_PORT and VAULT_TOKEN or AppRole credentials); the registry
is the MLflow tracking store of MLFLOW_TRACKING_URI. Errors go to stderr with a non-zero exit:
1 for failures (Vault unreachable, unknown key or version), 2 for bad usage (unknown role).
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import NoReturn

import structlog
import typer

from serving.keys.factory import build_key_store
from serving.keys.records import InvalidOwner
from serving.keys.store import ApiKeyStore, KeyStoreError
from serving.logging import configure_logging
from serving.roles import Role
from serving.settings import get_settings, mlflow_tracking_uri

EXIT_FAILURE = 1
EXIT_USAGE = 2

app = typer.Typer(
    help="Operate the valuation service: API keys and model promotion.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys (kept in Vault).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


class _CurrentStderr:
    """Whatever sys.stderr is when a log line is written (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@app.callback()
def _configure() -> None:
    # Only warnings and errors, on stderr: stdout carries the command's output (the new key).
    configure_logging(level="WARNING")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()))


def _fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _key_store() -> ApiKeyStore:
    try:
        return build_key_store(get_settings())
    except KeyStoreError as exc:
        _fail(str(exc))


# -- keys ---------------------------------------------------------------------------------------
@keys_app.command("create")
def create_key(
    owner: str = typer.Option(..., "--owner", help="Who the key is for (shown in listings, logs)."),
    role: Role = typer.Option(..., "--role", case_sensitive=False, help="What the key may do."),
) -> None:
    """Create a key and print it (alone, on the last line). It is shown only this once."""
    store = _key_store()
    try:
        api_key, record = store.create(owner, role.value)
    except InvalidOwner as exc:
        _fail(str(exc), EXIT_USAGE)
    except KeyStoreError as exc:
        _audit("keys:create", status="error", inputs={"owner": owner, "role": role.value},
               detail=str(exc))
        _fail(str(exc))
    _audit("keys:create", key_id=record.key_id, role=record.role,
           inputs={"owner": owner, "role": role.value}, outputs=record.to_dict())
    typer.echo(
        f"created key {record.key_id} for {record.owner!r}, role {record.role}, "
        f"at {record.created_at}"
    )
    typer.echo("Store it now: only its hash is kept, it cannot be shown again.")
    typer.echo(api_key)


@keys_app.command("list")
def list_keys(
    as_json: bool = typer.Option(False, "--json", help="One JSON array instead of a table."),
) -> None:
    """Every key's id, owner, role and creation time (never the keys or their hashes)."""
    try:
        records = _key_store().list()
    except KeyStoreError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps([record.to_dict() for record in records], indent=2))
        return
    rows = [(r.key_id, r.owner, r.role, r.created_at) for r in records]
    _print_table(("KEY_ID", "OWNER", "ROLE", "CREATED_AT"), rows, empty="no API keys")


@keys_app.command("revoke")
def revoke_key(key_id: str = typer.Argument(..., help="The key's id, as `keys list` shows.")) -> None:
    """Revoke a key: proxies stop accepting it within `vault.refresh_s` seconds."""
    store = _key_store()
    try:
        revoked = store.revoke(key_id.strip())
    except KeyStoreError as exc:
        _audit("keys:revoke", status="error", key_id=key_id.strip(), detail=str(exc))
        _fail(str(exc))
    _audit("keys:revoke", status="ok" if revoked else "error", key_id=key_id.strip(),
           outputs={"revoked": revoked})
    if not revoked:
        _fail(f"no API key with id {key_id!r} (see `valuation keys list`)")
    typer.echo(f"revoked key {key_id}")


# -- registry -----------------------------------------------------------------------------------
@app.command()
def promote(
    version: str = typer.Argument(..., help="The registered model version to point the alias at."),
    alias: str = typer.Option("champion", "--alias", help="champion (served) or challenger."),
    reason: str = typer.Option(
        "manual promotion", "--reason", help="Why; recorded in the alias history."
    ),
    force: bool = typer.Option(
        False, "--force", help="Promote even a version that failed its evaluation thresholds."
    ),
    model: str | None = typer.Option(None, "--model", help="Registered model name."),
) -> None:
    """Point an alias at a model version; the served model follows the champion alias."""
    from mlflow.exceptions import MlflowException

    from valuation.registry import move_alias

    registry = get_settings().registry
    name = model or registry.model_name
    allowed_aliases = (registry.champion_alias, registry.challenger_alias)
    if alias not in allowed_aliases:
        _fail(f"unknown alias {alias!r}: expected one of {', '.join(allowed_aliases)}", EXIT_USAGE)
    if not version.strip().isdigit() or int(version) < 1:
        _fail(f"version must be a positive integer, got {version!r}", EXIT_USAGE)
    version = str(int(version))
    client = _mlflow_client()
    try:
        details = client.get_model_version(name, version)
    except MlflowException:
        _fail(f"model {name!r} has no version {version} in {mlflow_tracking_uri()}")
    if details.tags.get("valuation.validated") == "false" and not force:
        _fail(
            f"version {version} failed its evaluation thresholds; pass --force to promote it anyway"
        )
    try:
        move = move_alias(client, name, alias, version, reason=reason, actor=_actor())
    except MlflowException as exc:
        _audit("promote:cli", status="error", model_name=name, model_version=version,
               inputs={"alias": alias, "reason": reason, "force": force}, detail=exc.message)
        _fail(f"could not move {alias!r} to version {version}: {exc.message}")
    _audit("promote:cli", model_name=name, model_version=move.to_version,
           inputs={"alias": alias, "reason": reason, "force": force},
           outputs={"from_version": move.from_version, "to_version": move.to_version})
    typer.echo(f"{name}: {alias} {move.from_version or '(none)'} -> {move.to_version} ({reason})")


@app.command()
def status(
    model: str | None = typer.Option(None, "--model", help="Registered model name."),
) -> None:
    """Registered versions with their aliases, and the history of alias moves."""
    from mlflow.exceptions import MlflowException

    from valuation.registry import alias_history

    name = model or get_settings().registry.model_name
    client = _mlflow_client()
    try:
        registered = client.get_registered_model(name)
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        _fail(f"no registered model named {name!r} in {mlflow_tracking_uri()}")
    aliases_of: dict[str, list[str]] = {}
    for alias, number in (registered.aliases or {}).items():
        aliases_of.setdefault(str(number), []).append(alias)

    typer.echo(f"model {name} ({mlflow_tracking_uri()})")
    rows = [
        (
            str(v.version),
            ",".join(sorted(aliases_of.get(str(v.version), []))) or "-",
            _iso_millis(v.creation_timestamp),
            v.tags.get("valuation.validated", "-"),
            v.tags.get("test_rmse", "-"),
            v.tags.get("test_mae", "-"),
            v.run_id or "-",
        )
        for v in sorted(versions, key=lambda v: int(v.version))
    ]
    _print_table(
        ("VERSION", "ALIASES", "CREATED_AT", "VALIDATED", "TEST_RMSE", "TEST_MAE", "RUN_ID"),
        rows,
        empty="no versions",
    )
    typer.echo("")
    typer.echo("alias history")
    history = [
        (m.at, m.alias, m.from_version or "-", m.to_version, m.actor, m.reason)
        for m in alias_history(client, name)
    ]
    _print_table(("AT", "ALIAS", "FROM", "TO", "ACTOR", "REASON"), history, empty="no alias moves")


# -- helpers ------------------------------------------------------------------------------------
def _audit(action: str, status: str = "ok", **fields) -> None:
    """One line in the audit trail (serving/audit.py); never the key itself."""
    from serving.audit import AuditLog

    trail = AuditLog.from_settings(get_settings(), rotate=False)  # the proxy owns rotation
    try:
        trail.record(action, status=status, actor=_actor(), **fields)
    finally:
        trail.close()


def _mlflow_client():
    import mlflow

    return mlflow.MlflowClient(tracking_uri=mlflow_tracking_uri())


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


def _iso_millis(timestamp_ms: int | None) -> str:
    from datetime import UTC, datetime

    if not timestamp_ms:
        return "-"
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="seconds")


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], empty: str) -> None:
    if not rows:
        typer.echo(f"({empty})")
        return
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())


if __name__ == "__main__":
    app()
