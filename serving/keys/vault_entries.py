"""The key table in Vault as one KV v2 entry per key: `<keys_path>/<SHA-256 of the key>` holds that
key's record ({key_id, owner, role, created_at}), and a LIST of `<keys_path>` is the index.

Why not one document holding every record: OpenBao refuses a request whose JSON holds more than
1000 strings (its listener's `max_request_json_strings`); a record is 9 strings, so writing the
table failed from the 111th key on. An entry is one small request whatever the number of keys.

Entries are written once (check-and-set 0: create only) and destroyed on revocation, never
updated, so a name seen before needs no second read: refreshing the table costs one LIST plus one
read per key created since the last refresh, not one read per key.
"""

from __future__ import annotations

import re
from typing import Any

import hvac
from hvac import exceptions as hvac_errors

from serving.keys.records import KeyRecord, key_id_of
from serving.logging import get_logger
from serving.vault import CasConflict, VaultSession, destroy_secret, list_names, write_document

log = get_logger(__name__)

_HASH_NAME = re.compile(r"^[0-9a-f]{64}$")


class KeyEntries:
    """The per-key entries under one path, and the records already read from them.

    `table()` is called by one thread at a time (the key cache's refresh lock)."""

    def __init__(self, session: VaultSession, mount: str, keys_path: str) -> None:
        self._session = session
        self._mount = mount
        self._path = keys_path.strip("/")
        self._known: dict[str, KeyRecord] = {}
        self._unusable: set[str] = set()  # malformed entries, reported once
        self.loaded = False  # whether `table()` ran once

    def path_of(self, key_hash: str) -> str:
        return f"{self._path}/{key_hash}"

    def hashes(self) -> list[str]:
        """The key hashes stored now (one LIST). Other names under the path are not keys."""
        return [n for n in list_names(self._session, self._mount, self._path) if _HASH_NAME.match(n)]

    def table(self, hashes: list[str]) -> dict[str, KeyRecord]:
        """Records by hash for `hashes`: the known ones from memory, the others read now."""
        table: dict[str, KeyRecord] = {}
        for key_hash in hashes:
            record = self._known.get(key_hash)
            if record is None and key_hash not in self._unusable:
                record = self._read(key_hash)
            if record is not None:
                table[key_hash] = record
        self._known = dict(table)
        self._unusable &= set(hashes)
        self.loaded = True
        return table

    def create(self, key_hash: str, record: KeyRecord) -> bool:
        """Write `record` as the entry of `key_hash` unless one exists (then False)."""
        try:
            write_document(self._session, self._mount, self.path_of(key_hash), record.to_dict(), 0)
        except CasConflict:
            return False
        return True

    def destroy(self, key_hash: str) -> None:
        destroy_secret(self._session, self._mount, self.path_of(key_hash))

    def _read(self, key_hash: str) -> KeyRecord | None:
        """The entry's record; None when it is gone (revoked since the LIST) or malformed (one
        bad entry must not lock every client out: it is reported and skipped)."""

        def read(client: hvac.Client) -> dict[str, Any] | None:
            try:
                answer = client.secrets.kv.v2.read_secret_version(
                    path=self.path_of(key_hash), mount_point=self._mount,
                    raise_on_deleted_version=False,
                )
            except hvac_errors.InvalidPath:
                return None
            return (answer.get("data") or {}).get("data")

        data = self._session.call(read)
        if data is None:
            return None
        try:
            record = KeyRecord.from_dict(data)
            if record.key_id != key_id_of(key_hash):
                raise ValueError(f"key_id {record.key_id!r} is not the hash's prefix")
        except (KeyError, TypeError, ValueError) as exc:
            log.error("api_key_entry_malformed", key_id=key_id_of(key_hash), error=str(exc))
            self._unusable.add(key_hash)
            return None
        return record
