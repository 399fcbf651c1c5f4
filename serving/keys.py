"""API keys: creation, verification, listing and revocation.

A key is `pv_` + 43 random URL-safe characters. Only its SHA-256 hash is stored, in one KV v2
secret in Vault mapping hash -> {key_id, owner, role, created_at}. `key_id` (the first 12 hex digits
of the hash) is the public name of a key: it is what logs show and what `revoke` takes.

`VaultKeyStore` keeps the whole table in memory: a verification costs no Vault round-trip. The
table is refreshed in the background every `vault.refresh_s`; when Vault stops answering, the
cached table keeps working until it is `vault.cache_ttl_s` old, then verification raises
`KeyStoreUnavailable` (fail closed: the proxy answers 503 rather than trusting stale keys).

Without Vault (`vault.addr` unset), `EnvKeyStore` accepts the single key in env `API_KEY` as admin.
In both, `API_KEY` when set is an admin key owned by "bootstrap"; Vault stores get it written in
at startup if it is absent (so revoking it only lasts while `API_KEY` is unset).
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from omegaconf import DictConfig

from serving.logging import get_logger
from serving.roles import Role, parse_role
from serving.settings import get_settings, secret
from serving.vault import (
    VaultCredentials,
    VaultError,
    VaultSession,
    VaultUnavailable,
    read_document,
    update_document,
    vault_url,
)

log = get_logger(__name__)

KEY_PREFIX = "pv_"
KEY_RANDOM_BYTES = 32
KEY_ID_LENGTH = 12
BOOTSTRAP_OWNER = "bootstrap"
_HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# Owners show up in listings and logs: printable, no control characters, bounded.
_OWNER_PATTERN = re.compile(r"^[\w][\w .@+:/-]{0,99}$")


class KeyStoreError(Exception):
    """The key store cannot do what was asked (configuration or operation not supported)."""


class KeyStoreUnavailable(KeyStoreError):
    """Vault cannot be reached and no usable cache is left: refuse rather than guess."""


class KeyStoreReadOnly(KeyStoreError):
    """Keys cannot be created or revoked without Vault."""


class InvalidOwner(ValueError):
    """An owner name that is empty, too long, or has characters unfit for logs."""


@dataclass(frozen=True)
class KeyRecord:
    """What the store knows about a key; never the key itself nor its hash."""

    key_id: str
    owner: str
    role: str
    created_at: str  # ISO 8601, UTC

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeyRecord:
        return cls(
            key_id=str(data["key_id"]),
            owner=str(data["owner"]),
            role=str(data["role"]),
            created_at=str(data["created_at"]),
        )


class NotCached(enum.Enum):
    NOT_CACHED = "not cached"


NOT_CACHED = NotCached.NOT_CACHED


@runtime_checkable
class ApiKeyStore(Protocol):
    backend: str

    def verify(self, api_key: str) -> KeyRecord | None: ...
    # Like verify, from memory only, never waiting on I/O (safe on the event loop); NOT_CACHED
    # when the answer needs the backend, and then the caller runs `verify` in a thread.
    def verify_cached(self, api_key: str) -> KeyRecord | None | NotCached: ...
    def create(self, owner: str, role: str) -> tuple[str, KeyRecord]: ...
    def list(self) -> builtins.list[KeyRecord]: ...
    def revoke(self, key_id: str) -> bool: ...
    def healthy(self) -> bool: ...
    def start(self) -> None: ...
    def close(self) -> None: ...


# -- keys and hashes ----------------------------------------------------------------------------
def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def hash_key(api_key: str) -> str:
    """SHA-256 hex digest. Keys are random with 256 bits of entropy, so a fast hash suffices."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def key_id_of(key_hash: str) -> str:
    return key_hash[:KEY_ID_LENGTH]


def match_key(api_key: str, table: Mapping[str, KeyRecord]) -> KeyRecord | None:
    """The record whose hash equals hash(api_key), comparing against every entry in constant time
    per entry and without stopping early, so timing does not depend on where (or whether) it is."""
    digest = hash_key(api_key)
    found: KeyRecord | None = None
    for stored_hash, record in table.items():
        if hmac.compare_digest(stored_hash, digest):
            found = record
    return found


def validate_owner(owner: str) -> str:
    cleaned = owner.strip()
    if not _OWNER_PATTERN.fullmatch(cleaned):
        raise InvalidOwner(
            f"invalid owner {owner!r}: 1-100 characters, letters, digits and ' .@+:/-_', "
            "starting with a letter or digit"
        )
    return cleaned


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_key_record(key_hash: str, owner: str, role: Role) -> KeyRecord:
    """The record of a key created now."""
    return KeyRecord(
        key_id=key_id_of(key_hash), owner=owner, role=role.value, created_at=_now_iso()
    )


def parse_table(document: Mapping[str, Any]) -> dict[str, KeyRecord]:
    """Records by hash from the stored document; malformed entries are reported and skipped so
    one bad entry cannot lock every client out."""
    table: dict[str, KeyRecord] = {}
    for key_hash, entry in document.items():
        try:
            if not _HASH_PATTERN.fullmatch(key_hash):
                raise ValueError("not a SHA-256 hex digest")
            table[key_hash] = KeyRecord.from_dict(entry)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("api_key_entry_malformed", key_id=str(key_hash)[:KEY_ID_LENGTH], error=str(exc))
    return table


def add_key_entry(document: dict[str, Any], key_hash: str, record: KeyRecord) -> dict[str, Any]:
    document[key_hash] = record.to_dict()
    return document


# -- without Vault ------------------------------------------------------------------------------
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


# -- with Vault ---------------------------------------------------------------------------------
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < refresh_s <= cache_ttl_s:
            raise ValueError(
                f"vault.refresh_s ({refresh_s}) must be > 0 and <= vault.cache_ttl_s ({cache_ttl_s})"
            )
        self._session = session
        self._mount = kv_mount
        self._path = keys_path
        self._cache_ttl_s = float(cache_ttl_s)
        self._refresh_s = float(refresh_s)
        self._clock = clock
        self._bootstrap_key = bootstrap_key or None
        self._bootstrap_written = False
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._table: dict[str, KeyRecord] | None = None
        self._loaded_at = float("-inf")
        self._last_failure_at = float("-inf")
        self._background_refresh: threading.Thread | None = None
        self._stop = threading.Event()
        self._periodic: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: DictConfig, bootstrap_key: str | None) -> VaultKeyStore:
        vault = settings.vault
        credentials = VaultCredentials.from_env(approle_file=vault.get("approle_file"))
        session = VaultSession(
            vault_url(vault.addr, vault.port),
            credentials,
            timeout_s=float(vault.timeout_s),
            approle_mount=vault.approle_mount,
        )
        return cls(
            session,
            kv_mount=vault.kv_mount,
            keys_path=vault.keys_path,
            cache_ttl_s=float(vault.cache_ttl_s),
            refresh_s=float(vault.refresh_s),
            bootstrap_key=bootstrap_key,
        )

    @property
    def url(self) -> str:
        return self._session.url

    # -- ApiKeyStore --------------------------------------------------------------------------
    def verify(self, api_key: str) -> KeyRecord | None:
        if not api_key:
            return None
        return match_key(api_key, self._current_table())

    def verify_cached(self, api_key: str) -> KeyRecord | None | NotCached:
        if not api_key:
            return None
        table = self._usable_cached_table()
        return NOT_CACHED if table is None else match_key(api_key, table)

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
        with self._refresh_lock:
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
        with self._lock:
            fresh = self._table is not None and self._age() < self._refresh_s
        if fresh:
            return True
        try:
            self.refresh()
        except KeyStoreUnavailable:
            return False
        return True

    def start(self) -> None:
        """Load the table now (seeding API_KEY) and keep refreshing it every `refresh_s` in a
        daemon thread until `close()`. A Vault outage at start is logged, not raised: requests
        get 503 until Vault answers."""
        try:
            self.refresh()
        except KeyStoreUnavailable as exc:
            log.warning("key_store_start_without_vault", vault=self.url, reason=str(exc))
        if self._periodic is None:
            self._stop.clear()
            self._periodic = threading.Thread(
                target=self._refresh_periodically, name="api-key-refresh", daemon=True
            )
            self._periodic.start()

    def close(self) -> None:
        self._stop.set()
        if self._periodic is not None:
            self._periodic.join(timeout=self._session_timeout() + 1)
            self._periodic = None

    # -- cache --------------------------------------------------------------------------------
    def refresh(self) -> dict[str, KeyRecord]:
        """Read the table from Vault now (writing API_KEY in first if absent)."""
        try:
            document, _ = read_document(self._session, self._mount, self._path)
            document = self._seed_bootstrap(document)
        except VaultUnavailable as exc:
            with self._lock:
                self._last_failure_at = self._clock()
            log.warning("key_store_refresh_failed", vault=self.url, reason=str(exc))
            raise KeyStoreUnavailable(
                f"cannot verify API keys: Vault at {self.url} is unavailable ({exc})"
            ) from exc
        except VaultError as exc:
            raise KeyStoreError(f"Vault at {self.url}: {exc}") from exc
        return self._remember(document)

    def _current_table(self) -> dict[str, KeyRecord]:
        table = self._usable_cached_table()
        return table if table is not None else self._refresh_blocking()

    def _usable_cached_table(self) -> dict[str, KeyRecord] | None:
        """The cached table while within its TTL (refreshed in the background once it is older
        than refresh_s), else None: only Vault can answer now."""
        with self._lock:
            table, age = self._table, self._age()
        if table is not None and age < self._refresh_s:
            return table
        if table is not None and age < self._cache_ttl_s:
            self._refresh_in_background()
            return table
        return None

    def _refresh_blocking(self) -> dict[str, KeyRecord]:
        # One caller at a time asks Vault; the others reuse its answer (or its failure, for a
        # moment, so an outage does not make every request wait for its own timeout).
        with self._refresh_lock:
            with self._lock:
                table, age = self._table, self._age()
                failed_recently = self._clock() - self._last_failure_at < self._session_timeout()
            if table is not None and age < self._cache_ttl_s:
                return table
            if failed_recently:
                raise KeyStoreUnavailable(
                    f"cannot verify API keys: Vault at {self.url} is unavailable and the cached "
                    "keys have expired"
                )
            return self.refresh()

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._background_refresh is not None and self._background_refresh.is_alive():
                return
            self._background_refresh = threading.Thread(
                target=self._refresh_quietly, name="api-key-refresh-once", daemon=True
            )
            self._background_refresh.start()

    def _refresh_quietly(self) -> None:
        try:
            with self._refresh_lock:
                self.refresh()
        except KeyStoreError:
            pass  # already logged by refresh(); the cache serves until its TTL

    def _refresh_periodically(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self._refresh_quietly()

    def _remember(self, document: Mapping[str, Any]) -> dict[str, KeyRecord]:
        table = parse_table(document)
        with self._lock:
            self._table = table
            self._loaded_at = self._clock()
        return table

    def _age(self) -> float:
        return self._clock() - self._loaded_at

    def _session_timeout(self) -> float:
        return self._session.timeout_s

    def _update(self, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        try:
            document = update_document(self._session, self._mount, self._path, change)
        except VaultUnavailable as exc:
            raise KeyStoreUnavailable(f"Vault at {self.url} is unavailable ({exc})") from exc
        except VaultError as exc:
            raise KeyStoreError(f"Vault at {self.url}: {exc}") from exc
        self._remember(document)

    def _seed_bootstrap(self, document: dict[str, Any]) -> dict[str, Any]:
        if self._bootstrap_key is None or self._bootstrap_written:
            return document
        if hash_key(self._bootstrap_key) not in document:
            try:
                document, _ = seed_admin_key(
                    self._session, self._mount, self._path, self._bootstrap_key
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
    session: VaultSession, kv_mount: str, keys_path: str, api_key: str
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

    document = update_document(session, kv_mount, keys_path, add_if_absent)
    if added:
        log.info("api_key_seeded", key_id=record.key_id, owner=BOOTSTRAP_OWNER, role="admin")
    return document, (added[0] if added else None)


def build_key_store(settings: DictConfig | None = None) -> ApiKeyStore:
    """Vault-backed when `vault.addr` (env VAULT_ADDR) is set, else the API_KEY-only store."""
    settings = settings if settings is not None else get_settings()
    bootstrap_key = secret("API_KEY")
    if settings.vault.addr:
        try:
            return VaultKeyStore.from_settings(settings, bootstrap_key)
        except VaultError as exc:
            raise KeyStoreError(str(exc)) from exc
    return EnvKeyStore(bootstrap_key)
