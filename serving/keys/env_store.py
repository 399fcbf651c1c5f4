"""The key store without Vault: the one key in env API_KEY, an admin key. Read-only."""

from __future__ import annotations

import builtins

from serving.keys.records import (
    BOOTSTRAP_OWNER,
    KeyRecord,
    hash_key,
    match_key,
    new_key_record,
)
from serving.keys.store import KeyStoreReadOnly
from serving.logging import get_logger
from serving.roles import Role

log = get_logger(__name__)


class EnvKeyStore:
    """The embedded default: the one key in env API_KEY, an admin key. Read-only."""

    backend = "env"

    def __init__(self, api_key: str | None) -> None:
        self._table: dict[str, KeyRecord] = {}
        if api_key:
            key_hash = hash_key(api_key)
            self._table[key_hash] = new_key_record(key_hash, BOOTSTRAP_OWNER, Role.ADMIN)
        else:
            log.warning("api_keys_none_configured", hint="set API_KEY or configure Vault")

    def verify(self, api_key: str) -> KeyRecord | None:
        return match_key(api_key, self._table) if api_key else None

    def verify_cached(self, api_key: str) -> KeyRecord | None:
        return self.verify(api_key)

    def create(self, owner: str, role: str) -> tuple[str, KeyRecord]:
        raise KeyStoreReadOnly(self._needs_vault("create"))

    def list(self) -> builtins.list[KeyRecord]:
        return builtins.list(self._table.values())

    def revoke(self, key_id: str) -> bool:
        raise KeyStoreReadOnly(self._needs_vault("revoke"))

    def healthy(self) -> bool:
        return True

    def start(self) -> None:
        """Nothing to refresh."""

    def close(self) -> None:
        """Nothing to stop."""

    @staticmethod
    def _needs_vault(action: str) -> str:
        return (
            f"cannot {action} API keys without Vault: set VAULT_ADDR (and VAULT_PORT) and "
            "Vault credentials; without Vault the only key is the one in API_KEY"
        )
