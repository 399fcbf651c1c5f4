"""Key generation, hashing, matching, Vault addresses, credentials and the Vault-less store."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from serving.keys.cache import KeyTableCache
from serving.keys.env_store import EnvKeyStore
from serving.keys.factory import build_key_store
from serving.keys.records import (
    BOOTSTRAP_OWNER,
    InvalidOwner,
    KeyRecord,
    generate_key,
    hash_key,
    key_id_of,
    match_key,
    validate_owner,
)
from serving.keys.store import KeyStoreError, KeyStoreReadOnly
from serving.vault import VaultCredentials, VaultError, vault_url
from valuation.config import load_config


def test_generated_keys_are_prefixed_random_and_long() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(k.startswith("pv_") and len(k) >= 40 for k in keys)


def test_hash_is_sha256_hex_and_key_id_its_prefix() -> None:
    digest = hash_key("pv_example")
    assert digest == hashlib.sha256(b"pv_example").hexdigest()
    assert key_id_of(digest) == digest[:12]


def test_match_key_finds_only_the_right_record() -> None:
    first, second = generate_key(), generate_key()
    table = {
        hash_key(first): KeyRecord("id1", "alice", "predict", "2025-01-01T00:00:00+00:00"),
        hash_key(second): KeyRecord("id2", "bob", "admin", "2025-01-01T00:00:00+00:00"),
    }
    assert match_key(first, table).owner == "alice"
    assert match_key(second, table).owner == "bob"
    assert match_key(first + "x", table) is None
    assert match_key("", table) is None


@pytest.mark.parametrize(
    ("addr", "port", "expected"),
    [
        ("http://vault", "8200", "http://vault:8200"),  # the specification's .env form
        ("http://127.0.0.1:8200", "9999", "http://127.0.0.1:8200"),  # port in the address wins
        ("vault", 8200, "http://vault:8200"),
        ("https://vault.example.com/", None, "https://vault.example.com"),
        (" http://vault ", " 8200 ", "http://vault:8200"),
    ],
)
def test_vault_url_accepts_both_address_forms(addr, port, expected) -> None:
    assert vault_url(addr, port) == expected


@pytest.mark.parametrize(("addr", "port"), [("", None), ("http://vault", "eighty"), ("http://", 1)])
def test_vault_url_rejects_nonsense(addr, port) -> None:
    with pytest.raises(VaultError):
        vault_url(addr, port)


@pytest.mark.parametrize("owner", ["", "   ", "a\nb", "x" * 101, "-leading-dash", "tab\there"])
def test_owner_names_fit_for_logs(owner) -> None:
    with pytest.raises(InvalidOwner, match="invalid owner"):
        validate_owner(owner)


def test_owner_is_trimmed() -> None:
    assert validate_owner("  team-pricing@example.cl ") == "team-pricing@example.cl"


def test_env_store_accepts_api_key_as_admin_and_nothing_else() -> None:
    store = EnvKeyStore("spec-api-key")
    record = store.verify("spec-api-key")
    assert record is not None and record.role == "admin" and record.owner == BOOTSTRAP_OWNER
    assert record.key_id == key_id_of(hash_key("spec-api-key"))
    assert store.verify("spec-api-key ") is None
    assert store.verify("") is None
    assert store.list() == [record]
    assert store.healthy()


def test_env_store_cannot_create_or_revoke_and_says_vault_is_needed() -> None:
    store = EnvKeyStore("spec-api-key")
    with pytest.raises(KeyStoreReadOnly, match="without Vault.*VAULT_ADDR"):
        store.create("alice", "predict")
    with pytest.raises(KeyStoreReadOnly, match="without Vault"):
        store.revoke("abc")


def test_env_store_without_api_key_accepts_nothing() -> None:
    store = EnvKeyStore(None)
    assert store.verify("anything") is None
    assert store.list() == []


def test_build_key_store_without_vault_uses_api_key(monkeypatch) -> None:
    monkeypatch.setenv("API_KEY", "from-env")
    store = build_key_store(load_config(config_name="serving"))
    assert store.backend == "env"
    assert store.verify("from-env").role == "admin"


def test_build_key_store_with_vault_but_no_credentials_fails_clearly(monkeypatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1")
    monkeypatch.setenv("VAULT_PORT", "8200")
    with pytest.raises(KeyStoreError, match="VAULT_ROLE_ID.*VAULT_TOKEN"):
        build_key_store(load_config(config_name="serving"))


def test_credentials_prefer_approle_then_file_then_token(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VAULT_DEV_ROOT_TOKEN", "dev-root")
    assert VaultCredentials.from_env().token == "dev-root"
    monkeypatch.setenv("VAULT_TOKEN", "explicit")
    assert VaultCredentials.from_env().token == "explicit"

    creds_file = tmp_path / "approle.json"
    creds_file.write_text(json.dumps({"role_id": "r-file", "secret_id": "s-file"}))
    from_file = VaultCredentials.from_env(approle_file=creds_file)
    assert (from_file.method, from_file.role_id, from_file.secret_id) == (
        "approle",
        "r-file",
        "s-file",
    )
    monkeypatch.setenv("VAULT_ROLE_ID", "r-env")
    monkeypatch.setenv("VAULT_SECRET_ID", "s-env")
    assert VaultCredentials.from_env(approle_file=creds_file).role_id == "r-env"
    assert "s-env" not in repr(VaultCredentials.from_env())


def test_credentials_half_an_approle_is_an_error(monkeypatch) -> None:
    monkeypatch.setenv("VAULT_ROLE_ID", "r-env")
    with pytest.raises(VaultError, match="both VAULT_ROLE_ID and VAULT_SECRET_ID"):
        VaultCredentials.from_env()


def test_credentials_file_must_exist_and_hold_both_ids(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="does not exist"):
        VaultCredentials.from_approle_file(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"role_id": "only"}')
    with pytest.raises(VaultError, match="role_id and secret_id"):
        VaultCredentials.from_approle_file(broken)


def test_a_read_that_began_before_a_write_does_not_replace_what_the_write_stored() -> None:
    # The cache's source is a plain function here: the race needs a read held open on purpose.
    old_table = {hash_key("pv_old"): KeyRecord("old", "a", "predict", "2026-01-01T00:00:00")}
    new_table = {**old_table, hash_key("pv_new"): KeyRecord("new", "b", "predict", "2026-01-02")}
    reading, release = threading.Event(), threading.Event()

    def slow_read() -> dict:
        reading.set()
        release.wait(5)
        return old_table

    cache = KeyTableCache(slow_read, source="test", refresh_s=1.0, cache_ttl_s=10.0,
                          failure_backoff_s=1.0, close_wait_s=1.0, clock=time.monotonic)
    reader = threading.Thread(target=cache.refresh)
    reader.start()
    assert reading.wait(5)
    cache.remember(new_table)  # a create ended while the read was under way
    release.set()
    reader.join(5)
    assert cache.usable() == new_table
