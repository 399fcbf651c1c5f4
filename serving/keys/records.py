"""What a key is and what is stored about it: the key format, its hash, its public id, its record,
and the stored table (hash -> record) parsed and matched in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from serving.logging import get_logger
from serving.roles import Role

log = get_logger(__name__)

KEY_PREFIX = "pv_"
KEY_RANDOM_BYTES = 32
KEY_ID_LENGTH = 12
BOOTSTRAP_OWNER = "bootstrap"
# What generate_key makes: the prefix and the URL-safe base64 of KEY_RANDOM_BYTES, unpadded.
_KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}[A-Za-z0-9_-]{{{(KEY_RANDOM_BYTES * 4 + 2) // 3}}}$")
_HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# Owners show up in listings and logs: printable, no control characters, bounded.
_OWNER_PATTERN = re.compile(r"^[\w][\w .@+:/-]{0,99}$")


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


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def is_well_formed(api_key: str) -> bool:
    """Whether `api_key` has the shape of a key `generate_key` makes (it may still be unknown)."""
    return _KEY_PATTERN.fullmatch(api_key) is not None


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
