"""`valuation keys`: create, list and revoke API keys in Vault (vault_choice.py says which)."""

from __future__ import annotations

import json

import typer

from serving.cli.audit import audit
from serving.cli.output import EXIT_USAGE, fail, print_table
from serving.cli.vault_choice import HOW_TO_GET_ONE, VaultChoiceError, choose_vault
from serving.keys.factory import build_key_store
from serving.keys.records import InvalidOwner
from serving.keys.store import ApiKeyStore, KeyStoreError
from serving.roles import Role
from serving.settings import get_settings
from serving.vault import VaultError

keys_app = typer.Typer(help="Create, list and revoke API keys (kept in Vault).", no_args_is_help=True)


def _key_store(writes: str | None = None) -> ApiKeyStore:
    """The store of the chosen Vault, named on stderr. `writes` names the operation when it
    needs Vault (create, revoke): without one, that is an error saying how to get one."""
    try:
        choice = choose_vault(get_settings())
    except (VaultError, VaultChoiceError) as exc:
        fail(str(exc))
    if choice.url is None and writes:
        fail(f"cannot {writes} API keys without Vault: {choice.origin}; {HOW_TO_GET_ONE}")
    typer.echo(choice.describe(), err=True)
    try:
        return build_key_store(choice.settings)
    except KeyStoreError as exc:
        fail(str(exc))


@keys_app.command("create")
def create_key(
    owner: str = typer.Option(..., "--owner", help="Who the key is for (shown in listings, logs)."),
    role: Role = typer.Option(..., "--role", case_sensitive=False, help="What the key may do."),
) -> None:
    """Create a key and print it (alone, on the last line). It is shown only this once."""
    store = _key_store(writes="create")
    try:
        api_key, record = store.create(owner, role.value)
    except InvalidOwner as exc:
        fail(str(exc), EXIT_USAGE)
    except KeyStoreError as exc:
        audit("keys:create", status="error", inputs={"owner": owner, "role": role.value},
              detail=str(exc))
        fail(str(exc))
    audit("keys:create", key_id=record.key_id, role=record.role,
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
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps([record.to_dict() for record in records], indent=2))
        return
    rows = [(r.key_id, r.owner, r.role, r.created_at) for r in records]
    print_table(("KEY_ID", "OWNER", "ROLE", "CREATED_AT"), rows, empty="no API keys")


@keys_app.command("revoke")
def revoke_key(key_id: str = typer.Argument(..., help="The key's id, as `keys list` shows.")) -> None:
    """Revoke a key: proxies stop accepting it within `vault.refresh_s` seconds."""
    store = _key_store(writes="revoke")
    try:
        revoked = store.revoke(key_id.strip())
    except KeyStoreError as exc:
        audit("keys:revoke", status="error", key_id=key_id.strip(), detail=str(exc))
        fail(str(exc))
    audit("keys:revoke", status="ok" if revoked else "error", key_id=key_id.strip(),
          outputs={"revoked": revoked})
    if not revoked:
        fail(f"no API key with id {key_id!r} (see `valuation keys list`)")
    typer.echo(f"revoked key {key_id}")
