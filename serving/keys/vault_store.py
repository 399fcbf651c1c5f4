"""The key store in Vault: one KV v2 secret mapping each key's SHA-256 hash to its record
({key_id, owner, role, created_at}), cached in memory (serving/keys/cache.py says when it is read).

`API_KEY`, when set, is an admin key owned by "bootstrap", written in at startup if it is absent
(so revoking it only lasts while `API_KEY` is unset).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig

from serving.keys.cache import KeyTable, KeyTableCache
from serving.keys.records import (
    BOOTSTRAP_OWNER,
    KeyRecord,
    add_key_entry,
    generate_key,
    hash_key,
    is_well_formed,
    match_key,
    new_key_record,
    parse_table,
    validate_owner,
)
from serving.keys.store import NOT_CACHED, KeyStoreError, KeyStoreUnavailable, NotCached
from serving.logging import get_logger
from serving.roles import Role, parse_role
from serving.settings import get_settings
from serving.vault import (
    VaultError,
    VaultSession,
    VaultUnavailable,
    read_document,
    update_document,
)

log = get_logger(__name__)


class VaultKeyStore:
    """Keys in a Vault KV v2 secret, cached in memory (see the module docstring)."""

    backend = "vault"

    def __init__(
        self,
        session: VaultSession,
        *,
        kv_mount: str,
        keys_path: str,
        cache_ttl_s: float,
        refresh_s: float,
        bootstrap_key: str | None = None,
        write_attempts: int | None = None,
        close_wait_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`write_attempts` and `close_wait_s` default to conf/serving.yaml's `vault` values."""
        configured = get_settings().vault
        self._session = session
        self._mount = kv_mount
        self._path = keys_path
        self._write_attempts = int(
            configured.write_attempts if write_attempts is None else write_attempts
        )
        self._bootstrap_key = bootstrap_key or None
        self._bootstrap_written = False
        self._cache = KeyTableCache(
            self._load,
            source=f"Vault at {session.url}",
            refresh_s=refresh_s,
            cache_ttl_s=cache_ttl_s,
            failure_backoff_s=session.timeout_s,
            close_wait_s=float(configured.close_wait_s if close_wait_s is None else close_wait_s),
            clock=clock,
        )

    @classmethod
    def from_settings(cls, settings: DictConfig, bootstrap_key: str | None) -> VaultKeyStore:
        vault = settings.vault
        return cls(
            VaultSession.from_settings(vault),
            kv_mount=vault.kv_mount,
            keys_path=vault.keys_path,
            cache_ttl_s=float(vault.cache_ttl_s),
            refresh_s=float(vault.refresh_s),
            write_attempts=int(vault.write_attempts),
            close_wait_s=float(vault.close_wait_s),
            bootstrap_key=bootstrap_key,
        )

    @property
    def url(self) -> str:
        return self._session.url

    # -- ApiKeyStore --------------------------------------------------------------------------
    def verify(self, api_key: str) -> KeyRecord | None:
        if not api_key:
            return None
        record = match_key(api_key, self._cache.current())
        if record is None and is_well_formed(api_key):
            table = self._cache.read_after_miss()
            if table is not None:
                record = match_key(api_key, table)
        return record

    def verify_cached(self, api_key: str) -> KeyRecord | None | NotCached:
        if not api_key:
            return None
        table = self._cache.usable()
        if table is None:
            return NOT_CACHED
        record = match_key(api_key, table)
        if record is None and is_well_formed(api_key) and self._cache.miss_read_due():
            return NOT_CACHED  # maybe created since the last read: `verify` reads again
        return record

    def create(self, owner: str, role: str) -> tuple[str, KeyRecord]:
        parsed_role = parse_role(role)
        owner = validate_owner(owner)
        while True:
            api_key = generate_key()
            key_hash = hash_key(api_key)
            record = new_key_record(key_hash, owner, parsed_role)

            def add(document: dict[str, Any], key_hash=key_hash, record=record) -> dict[str, Any]:
                ids = (e.get("key_id") for e in document.values() if isinstance(e, Mapping))
                if record.key_id in ids:
                    raise _KeyIdTaken(record.key_id)
                return add_key_entry(document, key_hash, record)

            try:
                self._update(add)
            except _KeyIdTaken:
                continue  # a 48-bit prefix collision: practically never; draw another key
            break
        log.info("api_key_created", key_id=record.key_id, owner=owner, role=record.role)
        return api_key, record

    def list(self) -> builtins.list[KeyRecord]:
        """Every key, read fresh from Vault (an admin operation: needs Vault, like create)."""
        table = self.refresh()
        return sorted(table.values(), key=lambda r: (r.created_at, r.key_id))

    def revoke(self, key_id: str) -> bool:
        removed: builtins.list[str] = []

        def drop(document: dict[str, Any]) -> dict[str, Any] | None:
            removed.clear()
            removed.extend(
                h
                for h, entry in document.items()
                if isinstance(entry, Mapping) and entry.get("key_id") == key_id
            )
            if not removed:
                return None
            return {h: entry for h, entry in document.items() if h not in removed}

        self._update(drop)
        if removed:
            log.info("api_key_revoked", key_id=key_id)
        return bool(removed)

    def healthy(self) -> bool:
        """True when keys can be verified from fresh data right now."""
        if self._cache.fresh():
            return True
        try:
            self.refresh()
        except KeyStoreUnavailable:
            return False
        return True

    def start(self) -> None:
        """Load the table now (seeding API_KEY) and keep it fresh until `close()`. A Vault
        outage at start is logged, not raised: requests get 503 until Vault answers."""
        try:
            self.refresh()
        except KeyStoreUnavailable as exc:
            log.warning("key_store_start_without_vault", vault=self.url, reason=str(exc))
        self._cache.start()

    def close(self) -> None:
        self._cache.close()

    def refresh(self) -> KeyTable:
        """Read the table from Vault now (writing API_KEY in first if absent)."""
        return self._cache.refresh()

    # -- Vault --------------------------------------------------------------------------------
    def _load(self) -> KeyTable:
        try:
            document, _ = read_document(self._session, self._mount, self._path)
            document = self._seed_bootstrap(document)
        except VaultUnavailable as exc:
            log.warning("key_store_refresh_failed", vault=self.url, reason=str(exc))
            raise KeyStoreUnavailable(
                f"cannot verify API keys: Vault at {self.url} is unavailable ({exc})"
            ) from exc
        except VaultError as exc:
            raise KeyStoreError(f"Vault at {self.url}: {exc}") from exc
        return parse_table(document)

    def _update(self, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        try:
            document = update_document(
                self._session, self._mount, self._path, change, self._write_attempts
            )
        except VaultUnavailable as exc:
            raise KeyStoreUnavailable(f"Vault at {self.url} is unavailable ({exc})") from exc
        except VaultError as exc:
            raise KeyStoreError(f"Vault at {self.url}: {exc}") from exc
        self._cache.remember(parse_table(document))

    def _seed_bootstrap(self, document: dict[str, Any]) -> dict[str, Any]:
        if self._bootstrap_key is None or self._bootstrap_written:
            return document
        if hash_key(self._bootstrap_key) not in document:
            try:
                document, _ = seed_admin_key(
                    self._session, self._mount, self._path, self._bootstrap_key,
                    self._write_attempts,
                )
            except VaultError as exc:
                # The table we read is still good; try again at the next refresh.
                log.warning("api_key_seed_failed", reason=str(exc))
                return document
        self._bootstrap_written = True
        return document


class _KeyIdTaken(Exception):
    """Internal: a new key's id equals an existing one."""


def seed_admin_key(
    session: VaultSession, kv_mount: str, keys_path: str, api_key: str, write_attempts: int
) -> tuple[dict[str, Any], KeyRecord | None]:
    """Store `api_key` as an admin key owned by "bootstrap" unless it is there already.

    Returns the key table as stored afterwards and the new record (None when it was present).
    """
    key_hash = hash_key(api_key)
    record = new_key_record(key_hash, BOOTSTRAP_OWNER, Role.ADMIN)
    added: builtins.list[KeyRecord] = []

    def add_if_absent(document: dict[str, Any]) -> dict[str, Any] | None:
        added.clear()
        if key_hash in document:
            return None
        added.append(record)
        return add_key_entry(document, key_hash, record)

    document = update_document(session, kv_mount, keys_path, add_if_absent, write_attempts)
    if added:
        log.info("api_key_seeded", key_id=record.key_id, owner=BOOTSTRAP_OWNER, role="admin")
    return document, (added[0] if added else None)
