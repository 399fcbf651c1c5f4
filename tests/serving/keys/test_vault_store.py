"""VaultKeyStore against a real OpenBao dev server."""

from __future__ import annotations

import json
import threading
import time

import hvac
import pytest

from serving.keys.factory import build_key_store
from serving.keys.records import (
    BOOTSTRAP_OWNER,
    InvalidOwner,
    generate_key,
    hash_key,
    is_well_formed,
    key_id_of,
)
from serving.keys.store import NOT_CACHED
from serving.keys.vault_store import VaultKeyStore
from serving.roles import UnknownRole
from serving.vault import VaultCredentials, VaultSession


def make_store(bao, keys_path, *, cache_ttl_s=60.0, refresh_s=15.0, bootstrap_key=None):
    session = VaultSession(bao.addr, VaultCredentials(token=bao.root_token), timeout_s=2.0)
    return VaultKeyStore(
        session,
        kv_mount="secret",
        keys_path=keys_path,
        cache_ttl_s=cache_ttl_s,
        refresh_s=refresh_s,
        bootstrap_key=bootstrap_key,
    )


def stored_table(bao, keys_path) -> dict:
    """The key table exactly as Vault holds it (one entry per key hash), read with the root token."""
    client = hvac.Client(url=bao.addr, token=bao.root_token, timeout=2)
    try:
        names = client.secrets.kv.v2.list_secrets(path=keys_path, mount_point="secret")["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        return {}
    return {
        name: client.secrets.kv.v2.read_secret_version(
            path=f"{keys_path}/{name}", mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]
        for name in names
    }


def test_create_verify_list_revoke(bao, keys_path) -> None:
    store = make_store(bao, keys_path)
    key, record = store.create("alice", "predict")
    assert key.startswith("pv_")
    assert (record.owner, record.role) == ("alice", "predict")
    assert record.key_id == key_id_of(hash_key(key))

    assert store.verify(key) == record
    assert [r.key_id for r in store.list()] == [record.key_id]

    assert store.revoke(record.key_id) is True
    assert store.verify(key) is None
    assert store.list() == []
    assert store.revoke(record.key_id) is False


def test_vault_holds_only_hashes(bao, keys_path) -> None:
    store = make_store(bao, keys_path)
    key, record = store.create("alice", "train")
    raw = stored_table(bao, keys_path)
    assert key not in json.dumps(raw)
    assert key[3:] not in json.dumps(raw)  # not even without its prefix
    assert list(raw) == [hash_key(key)]
    assert raw[hash_key(key)] == {
        "key_id": record.key_id,
        "owner": "alice",
        "role": "train",
        "created_at": record.created_at,
    }


def test_wrong_or_empty_key_is_not_verified(bao, keys_path) -> None:
    store = make_store(bao, keys_path)
    key, _ = store.create("alice", "admin")
    assert store.verify(key[:-1]) is None
    assert store.verify(key + "a") is None
    assert store.verify("") is None
    assert store.verify(hash_key(key)) is None  # knowing the stored hash is not enough


def test_invalid_role_or_owner_writes_nothing(bao, keys_path) -> None:
    store = make_store(bao, keys_path)
    with pytest.raises(UnknownRole, match="'root'"):
        store.create("alice", "root")
    with pytest.raises(InvalidOwner):
        store.create("al\nice", "predict")
    assert store.list() == []


def test_api_key_is_seeded_as_admin_once(bao, settings, monkeypatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    monkeypatch.setenv("API_KEY", "the-spec-api-key")
    store = build_key_store(settings)
    assert store.backend == "vault"
    record = store.verify("the-spec-api-key")
    assert record is not None
    assert (record.owner, record.role) == (BOOTSTRAP_OWNER, "admin")

    again = build_key_store(settings)  # a second proxy starting: no duplicate, same record
    assert again.verify("the-spec-api-key") == record
    assert list(stored_table(bao, settings.vault.keys_path)) == [hash_key("the-spec-api-key")]


def test_revocation_reaches_other_processes_after_refresh(bao, keys_path) -> None:
    writer = make_store(bao, keys_path)
    reader = make_store(bao, keys_path, cache_ttl_s=5.0, refresh_s=0.2)
    key, record = writer.create("alice", "predict")
    assert reader.verify(key) == record
    writer.revoke(record.key_id)
    deadline = time.monotonic() + 10
    while reader.verify(key) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reader.verify(key) is None


def test_concurrent_creates_from_two_stores_all_land(bao, keys_path) -> None:
    # Two proxies (or operators) writing at once: check-and-set must not lose either write.
    stores = [make_store(bao, keys_path), make_store(bao, keys_path)]
    created: list[str] = []
    lock = threading.Lock()

    def create_some(store: VaultKeyStore, owner: str) -> None:
        for _ in range(4):
            key, _ = store.create(owner, "predict")
            with lock:
                created.append(key)

    threads = [
        threading.Thread(target=create_some, args=(store, f"owner{i}"))
        for i, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(created) == 8
    assert set(stored_table(bao, keys_path)) == {hash_key(k) for k in created}
    fresh = make_store(bao, keys_path)
    assert all(fresh.verify(k) is not None for k in created)


def test_healthy_reflects_vault(bao, keys_path) -> None:
    assert make_store(bao, keys_path).healthy() is True


def test_start_loads_and_close_stops_the_refresher(bao, keys_path) -> None:
    writer = make_store(bao, keys_path)
    key, record = writer.create("alice", "predict")
    store = make_store(bao, keys_path, cache_ttl_s=5.0, refresh_s=0.2, bootstrap_key="boot")
    store.start()
    try:
        assert store.verify(key) == record
        assert store.verify("boot").owner == BOOTSTRAP_OWNER
        thread = store._cache._periodic
        assert thread is not None and thread.is_alive()
    finally:
        store.close()
    assert not thread.is_alive()


# -- keys unknown to the cached table: new keys at once, floods cheap, revocations quick ----------
def answer_of(store: VaultKeyStore, key: str):
    """What the proxy's auth dependency gets: from memory, or from `verify` when memory says
    the answer needs Vault (serving/api/auth.py)."""
    record = store.verify_cached(key)
    return store.verify(key) if record is NOT_CACHED else record


def vault_requests(audit_log, keys_path, operation: str | None = None, under: str = "") -> int:
    """Requests about the key table the Vault server answered (`operation`: "list", "read", ...;
    `under`: "data" or "metadata"), counted from its audit log."""
    count = 0
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        request = entry.get("request") or {}
        path = request.get("path") or ""
        if (entry.get("type") == "response" and keys_path in path
                and path.startswith(f"secret/{under}")
                and operation in (None, request.get("operation"))):
            count += 1
    return count


def key_table_reads(audit_log, keys_path) -> int:
    """Reads of the key table (one LIST of its entries each) the Vault server answered."""
    return vault_requests(audit_log, keys_path, "list", "metadata")


def test_only_generated_keys_are_well_formed() -> None:
    assert is_well_formed(generate_key())
    for other in ("", "pv_", "pv_short", generate_key() + "x", "xx" + generate_key()[2:], "boot"):
        assert not is_well_formed(other), other


def test_a_key_created_after_start_is_accepted_on_its_first_request(bao, keys_path) -> None:
    proxy = make_store(bao, keys_path, refresh_s=30.0)  # no periodic read during the test
    proxy.start()
    try:
        key, record = make_store(bao, keys_path).create("newcomer", "predict")  # the CLI
        assert proxy.verify_cached(key) is NOT_CACHED  # a well-formed miss: Vault is asked
        assert answer_of(proxy, key) == record
        assert proxy.verify_cached(key) == record  # and from memory afterwards
    finally:
        proxy.close()


def test_a_flood_of_unknown_keys_reads_vault_once_per_interval(
    bao, keys_path, vault_audit_log
) -> None:
    interval = 0.5
    proxy = make_store(bao, keys_path, cache_ttl_s=5.0, refresh_s=interval)
    proxy.start()
    try:
        before = key_table_reads(vault_audit_log, keys_path)
        started = time.monotonic()
        answers = []

        def flood() -> None:
            for _ in range(100):
                answers.append(answer_of(proxy, generate_key()))
                time.sleep(0.02)

        threads = [threading.Thread(target=flood) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        reads = key_table_reads(vault_audit_log, keys_path) - before
    finally:
        proxy.close()
    assert len(answers) == 400 and not any(answers)
    # Per interval one read for the misses and the periodic one (plus one of each that may
    # straddle the end of the flood); 400 unthrottled misses would be 400 reads.
    assert 1 <= reads <= 2 * (elapsed / interval + 1), (reads, elapsed)


def test_malformed_keys_never_read_vault(bao, keys_path, vault_audit_log) -> None:
    proxy = make_store(bao, keys_path, refresh_s=30.0)
    proxy.refresh()
    before = vault_requests(vault_audit_log, keys_path)
    for guess in ("admin", "pv_guess", "x" * 46):
        assert proxy.verify_cached(guess) is None
        assert proxy.verify(guess) is None
    assert vault_requests(vault_audit_log, keys_path) == before


def test_a_revoked_key_is_refused_within_the_interval(bao, keys_path) -> None:
    interval = 0.5
    slack = 0.5  # one key-table read on a busy machine
    cli = make_store(bao, keys_path)
    proxy = make_store(bao, keys_path, cache_ttl_s=5.0, refresh_s=interval)
    proxy.start()
    try:
        key, record = cli.create("leaver", "predict")
        assert answer_of(proxy, key) == record
        cli.revoke(record.key_id)
        revoked_at = time.monotonic()
        while answer_of(proxy, key) is not None:
            assert time.monotonic() - revoked_at < interval + slack, "revoked key still accepted"
            time.sleep(0.02)
    finally:
        proxy.close()
