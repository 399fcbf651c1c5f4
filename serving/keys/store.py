"""What the proxy and the CLI ask of a key store (`ApiKeyStore`), and the ways it can refuse."""

from __future__ import annotations

import builtins
import enum
from typing import Protocol, runtime_checkable

from serving.keys.records import KeyRecord


class KeyStoreError(Exception):
    """The key store cannot do what was asked (configuration or operation not supported)."""


class KeyStoreUnavailable(KeyStoreError):
    """Vault cannot be reached and no usable cache is left: refuse rather than guess."""


class KeyStoreReadOnly(KeyStoreError):
    """Keys cannot be created or revoked without Vault."""


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
