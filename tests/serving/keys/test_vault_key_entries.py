"""One KV v2 entry per key against a real OpenBao dev server: hundreds of keys (one document of
records was refused from the 111th key on), refresh cost, and the move from the old layout."""

from __future__ import annotations

import threading
import time

import hvac
import pytest
from hvac import exceptions as hvac_errors
from structlog.testing import capture_logs

from serving.keys import vault_migration
from serving.keys.records import generate_key, hash_key, new_key_record
from serving.keys.vault_migration import migrate_key_document
from serving.roles import Role
from serving.vault import VaultCredentials, VaultSession
from serving.vault_init import bootstrap
from tests.serving.keys.test_vault_store import (
    answer_of,
    make_store,
    stored_table,
    vault_requests,
)


def root_client(bao) -> hvac.Client:
    return hvac.Client(url=bao.addr, token=bao.root_token, timeout=5)


def test_openbao_refuses_one_document_of_111_key_records(bao, keys_path) -> None:
    # Why the table is not one document (the old layout): OpenBao's listener refuses a request
    # whose JSON holds more than 1000 strings, and a record is 9 of them.
    document = {}
    for _ in range(111):
        key_hash = hash_key(generate_key())
        document[key_hash] = new_key_record(key_hash, "owner", Role.PREDICT).to_dict()
    with pytest.raises(hvac_errors.InvalidRequest, match="exceeded maximum number of strings"):
        root_client(bao).secrets.kv.v2.create_or_update_secret(
            path=keys_path, secret=document, mount_point="secret")


def test_300_keys_created_listed_verified_and_one_revoked(bao, keys_path, vault_audit_log) -> None:
    cli = make_store(bao, keys_path)
    created = dict(cli.create(f"owner{i}", "predict") for i in range(300))
    assert len(stored_table(bao, keys_path)) == 300
    listed = cli.list()
    assert sorted(r.key_id for r in listed) == sorted(r.key_id for r in created.values())

    proxy = make_store(bao, keys_path, cache_ttl_s=30.0, refresh_s=0.3)
    proxy.refresh()  # every entry read once
    # A refresh reads only what changed: one LIST, then the one entry created since.
    newcomer, newcomer_record = cli.create("newcomer", "train")
    reads_before = vault_requests(vault_audit_log, keys_path, "read", "data")
    lists_before = vault_requests(vault_audit_log, keys_path, "list", "metadata")
    proxy.refresh()
    assert vault_requests(vault_audit_log, keys_path, "read", "data") - reads_before == 1
    assert vault_requests(vault_audit_log, keys_path, "list", "metadata") - lists_before == 1
    proxy.start()
    try:
        assert all(answer_of(proxy, key) == record for key, record in created.items())
        assert answer_of(proxy, newcomer) == newcomer_record

        leaver, record = next(iter(created.items()))
        assert cli.revoke(record.key_id) is True
        deadline = time.monotonic() + 10
        while answer_of(proxy, leaver) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert answer_of(proxy, leaver) is None
        assert hash_key(leaver) not in stored_table(bao, keys_path)  # destroyed, not soft-deleted
        others = [key for key in created if key != leaver]
        assert all(answer_of(proxy, key) is not None for key in others)
        assert len(cli.list()) == 300  # 300 - the leaver + the newcomer
    finally:
        proxy.close()


# -- the old layout: one document at keys_path mapping every hash to its record ------------------
def write_old_document(bao, keys_path, n_keys: int) -> dict[str, dict]:
    """A key table as the previous release stored it; returns the keys with their records."""
    keys, document = {}, {}
    for i in range(n_keys):
        key = generate_key()
        record = new_key_record(hash_key(key), f"old{i}", Role.PREDICT).to_dict()
        keys[key], document[hash_key(key)] = record, record
    root_client(bao).secrets.kv.v2.create_or_update_secret(
        path=keys_path, secret=document, mount_point="secret")
    return keys


def old_document_exists(bao, keys_path) -> bool:
    try:
        root_client(bao).secrets.kv.v2.read_secret_metadata(path=keys_path, mount_point="secret")
    except hvac_errors.InvalidPath:
        return False
    return True


def migrations(logs: list[dict]) -> list[dict]:
    return [entry for entry in logs if entry["event"] == "api_keys_migrated"]


def test_two_replicas_starting_together_move_the_old_table_once(bao, keys_path) -> None:
    old_keys = write_old_document(bao, keys_path, 100)
    replicas = [make_store(bao, keys_path, bootstrap_key="boot") for _ in range(2)]
    barrier = threading.Barrier(len(replicas))
    errors: list[BaseException] = []

    def start(store) -> None:
        barrier.wait()
        try:
            store.start()
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(store,)) for store in replicas]
    with capture_logs() as logs:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    try:
        assert not errors
        migrated = migrations(logs)
        assert len(migrated) == 1 and migrated[0]["keys"] == 100, migrated
        assert not old_document_exists(bao, keys_path)
        stored = stored_table(bao, keys_path)
        assert set(stored) == {hash_key(k) for k in old_keys} | {hash_key("boot")}
        for store in replicas:
            for key, record in old_keys.items():
                assert answer_of(store, key).to_dict() == record
            assert answer_of(store, "boot").role == "admin"
    finally:
        for store in replicas:
            store.close()
    # A later start finds nothing to move and logs nothing.
    with capture_logs() as logs:
        assert len(make_store(bao, keys_path).list()) == 101
    assert migrations(logs) == []


def test_a_replica_that_loses_the_race_keeps_the_entries_it_copied(
    bao, keys_path, monkeypatch
) -> None:
    """The interleaving the threaded test above hits only sometimes, made certain. Replica B has
    copied every record and is about to empty the document. Replica A empties it first but has
    not yet destroyed it. B's check-and-set fails, and B re-reads an empty document. An empty
    document means the move is done, not that every key was revoked: B must keep its copies."""
    old_keys = write_old_document(bao, keys_path, 20)
    replica_a, replica_b = (make_store(bao, keys_path) for _ in range(2))
    real_write, real_destroy = vault_migration.write_document, vault_migration.destroy_secret
    a_running = threading.Event()
    b_writes: list[int] = []

    def write(session, mount, path, document, version):
        if session is replica_b._session and not b_writes:
            a_running.set()
            assert migrate_key_document(replica_a._session, "secret", keys_path,
                                        replica_a._entries, 3) == 20
            a_running.clear()
        if session is replica_b._session:
            b_writes.append(version)
        return real_write(session, mount, path, document, version)

    def destroy(session, mount, path):
        if not a_running.is_set():  # A's destroy comes after B has re-read
            real_destroy(session, mount, path)

    monkeypatch.setattr(vault_migration, "write_document", write)
    monkeypatch.setattr(vault_migration, "destroy_secret", destroy)
    assert migrate_key_document(replica_b._session, "secret", keys_path, replica_b._entries, 3) is None
    assert b_writes == [1], "B's check-and-set did not lose to A"
    assert set(stored_table(bao, keys_path)) == {hash_key(k) for k in old_keys}
    assert not old_document_exists(bao, keys_path)
    for key, record in old_keys.items():
        assert answer_of(make_store(bao, keys_path), key).to_dict() == record


def test_the_cli_revokes_a_key_still_in_the_old_table(bao, keys_path) -> None:
    old_keys = write_old_document(bao, keys_path, 3)
    leaver, record = next(iter(old_keys.items()))
    assert make_store(bao, keys_path).revoke(record["key_id"]) is True
    assert not old_document_exists(bao, keys_path)
    fresh = make_store(bao, keys_path)
    assert fresh.verify(leaver) is None
    assert [fresh.verify(k) is not None for k in old_keys if k != leaver] == [True, True]


def test_the_approle_policy_allows_the_move_and_every_operation(bao, settings) -> None:
    keys_path = settings.vault.keys_path
    old_keys = write_old_document(bao, keys_path, 5)
    result = bootstrap(bao.addr, bao.root_token, settings=settings)
    session = VaultSession(bao.addr, VaultCredentials(role_id=result.role_id,
                                                     secret_id=result.secret_id), timeout_s=2.0)
    from serving.keys.vault_store import VaultKeyStore

    store = VaultKeyStore(session, kv_mount="secret", keys_path=keys_path, cache_ttl_s=60,
                          refresh_s=15, bootstrap_key="boot")
    assert len(store.list()) == 6  # moved, and API_KEY seeded
    assert not old_document_exists(bao, keys_path)
    key, record = store.create("alice", "predict")
    assert store.verify(key) == record
    assert store.revoke(next(iter(old_keys.values()))["key_id"]) is True
    assert store.revoke(record.key_id) is True
    assert store.verify(key) is None
    assert len(store.list()) == 5
