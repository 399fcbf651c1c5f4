"""The key store in Vault: one KV v2 entry per key, `<keys_path>/<SHA-256 of the key>` holding its
record ({key_id, owner, role, created_at}) (vault_entries.py says why and what a refresh costs),
cached in memory (serving/keys/cache.py says when it is read). A table stored the old way, one
document at `<keys_path>`, is moved to that layout on first use (vault_migration.py).

`API_KEY`, when set, is an admin key owned by "bootstrap", written in at startup if it is absent
(so revoking it only lasts while `API_KEY` is unset).
"""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Callable, Iterator

from omegaconf import DictConfig

from serving.keys.cache import KeyTable, KeyTableCache
from serving.keys.records import (
    BOOTSTRAP_OWNER,
    KeyRecord,
    generate_key,
    hash_key,
    is_well_formed,
    key_id_of,
    match_key,
    new_key_record,
    validate_owner,
)
from serving.keys.store import NOT_CACHED, KeyStoreError, KeyStoreUnavailable, NotCached
from serving.keys.vault_entries import KeyEntries
from serving.keys.vault_migration import migrate_key_document
from serving.logging import get_logger
from serving.roles import Role, parse_role
from serving.settings import get_settings
from serving.vault import VaultError, VaultSession, VaultUnavailable

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
        self._migrated = False
        self._entries = KeyEntries(session, kv_mount, keys_path)
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
        with self._vault("cannot create an API key"):
            self._migrate_once()
            while True:
                api_key = generate_key()
                key_hash = hash_key(api_key)
                record = new_key_record(key_hash, owner, parsed_role)
                if any(key_id_of(h) == record.key_id for h in self._entries.hashes()):
                    continue  # a 48-bit prefix collision: practically never; draw another key
                if self._entries.create(key_hash, record):
                    break
        log.info("api_key_created", key_id=record.key_id, owner=owner, role=record.role)
        self._after_write()
        return api_key, record

    def list(self) -> builtins.list[KeyRecord]:
        """Every key, read fresh from Vault (an admin operation: needs Vault, like create)."""
        table = self.refresh()
        return sorted(table.values(), key=lambda r: (r.created_at, r.key_id))

    def revoke(self, key_id: str) -> bool:
        with self._vault("cannot revoke an API key"):
            self._migrate_once()
            matching = [h for h in self._entries.hashes() if key_id_of(h) == key_id]
            for key_hash in matching:
                self._entries.destroy(key_hash)
        if matching:
            log.info("api_key_revoked", key_id=key_id)
        self._after_write()
        return bool(matching)

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
        with self._vault("cannot verify API keys"):
            self._migrate_once()
            hashes = self._seed_bootstrap(self._entries.hashes())
            return self._entries.table(hashes)

    @contextlib.contextmanager
    def _vault(self, doing: str) -> Iterator[None]:
        """Vault's failures as the key store's: unavailable (fail closed) or unusable."""
        try:
            yield
        except VaultUnavailable as exc:
            log.warning("key_store_refresh_failed", vault=self.url, reason=str(exc))
            raise KeyStoreUnavailable(f"{doing}: Vault at {self.url} is unavailable ({exc})") from exc
        except VaultError as exc:
            raise KeyStoreError(f"Vault at {self.url}: {exc}") from exc

    def _migrate_once(self) -> None:
        """Move a table stored as one document to per-key entries (once per process: a failure
        is raised and tried again by the next operation)."""
        if not self._migrated:
            migrate_key_document(self._session, self._mount, self._path, self._entries,
                                 self._write_attempts)
            self._migrated = True

    def _after_write(self) -> None:
        """A process that holds the table reads it again, so its own change shows at once (a
        process that never read it, like the CLI, does not pay for reading every entry)."""
        if self._entries.loaded:
            with contextlib.suppress(KeyStoreError):  # done; a failed read is logged, not raised
                self.refresh()

    def _seed_bootstrap(self, hashes: builtins.list[str]) -> builtins.list[str]:
        if self._bootstrap_key is None or self._bootstrap_written:
            return hashes
        key_hash = hash_key(self._bootstrap_key)
        if key_hash not in hashes:
            try:
                seed_admin_key(self._session, self._mount, self._path, self._bootstrap_key)
            except VaultError as exc:
                # The table we listed is still good; try again at the next refresh.
                log.warning("api_key_seed_failed", reason=str(exc))
                return hashes
            hashes = [*hashes, key_hash]
        self._bootstrap_written = True
        return hashes


def seed_admin_key(
    session: VaultSession, kv_mount: str, keys_path: str, api_key: str
) -> KeyRecord | None:
    """Store `api_key` as an admin key owned by "bootstrap" unless it is there already.

    Returns the new record (None when it was present)."""
    key_hash = hash_key(api_key)
    record = new_key_record(key_hash, BOOTSTRAP_OWNER, Role.ADMIN)
    if not KeyEntries(session, kv_mount, keys_path).create(key_hash, record):
        return None
    log.info("api_key_seeded", key_id=record.key_id, owner=BOOTSTRAP_OWNER, role="admin")
    return record
