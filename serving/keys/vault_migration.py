"""Moving a key table stored the old way (one KV v2 document at `<keys_path>` mapping every hash
to its record) to one entry per key (vault_entries.py), once, safely with replicas racing.

Every replica that finds the old document copies its records to per-key entries (create-only, so
copies of the same record agree), then empties the document with check-and-set on the version it
read. Exactly one replica wins that write: it destroys the document and logs the migration. A
replica that loses re-reads: the document is empty (done: the winner had copied every record,
so nothing is destroyed) or was changed by someone still running the old code (copy again;
entries it copied for keys revoked meanwhile are destroyed). One case cannot be told apart: old
code revoking the last key empties the document too, and that key's copy is kept.
"""

from __future__ import annotations

from serving.keys.records import parse_table
from serving.keys.vault_entries import KeyEntries
from serving.logging import get_logger
from serving.vault import (
    CasConflict,
    VaultSession,
    VaultUnavailable,
    destroy_secret,
    read_document,
    write_document,
)

log = get_logger(__name__)


def migrate_key_document(
    session: VaultSession, mount: str, keys_path: str, entries: KeyEntries, attempts: int
) -> int | None:
    """Move the old document's keys to `entries`. Returns how many keys this call moved, or None
    when there was nothing to move (no old document, or another replica moved it)."""
    path = keys_path.strip("/")
    copied: set[str] = set()
    for _ in range(attempts):
        document, version = read_document(session, mount, path)
        if version == 0:
            return None
        if not document:
            # Emptied by the replica that won: every record was copied before that write, so
            # the entries stand (this is not "every key revoked"). Destroying it again is harmless.
            destroy_secret(session, mount, path)
            return None
        table = parse_table(document)
        for key_hash in copied - set(table):  # revoked in the old document since our last copy
            entries.destroy(key_hash)
        copied = (copied & set(table)) | {
            h for h, record in table.items() if h not in copied and entries.create(h, record)
        }
        try:
            write_document(session, mount, path, {}, version)
        except CasConflict:
            continue
        destroy_secret(session, mount, path)
        log.info("api_keys_migrated", keys=len(table), source=f"{mount}/{path}",
                 layout=f"{mount}/{path}/<sha256>")
        return len(table)
    raise VaultUnavailable(f"{mount}/{path} kept changing during the key migration ({attempts} attempts)")
