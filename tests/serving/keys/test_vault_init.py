"""Bootstrapping Vault: KV v2, AppRole with a policy limited to the key table, API_KEY seeding."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import hvac
import pytest
from hvac import exceptions as hvac_errors

from serving.keys.records import hash_key
from serving.keys.vault_store import VaultKeyStore
from serving.vault import VaultCredentials, VaultError, VaultSession
from serving.vault_init import bootstrap, keys_policy, write_credentials
from tests.support.bao import BaoServer, vault_settings


def approle_client(bao: BaoServer, role_id: str, secret_id: str) -> hvac.Client:
    client = hvac.Client(url=bao.addr, timeout=2)
    client.auth.approle.login(role_id=role_id, secret_id=secret_id)
    return client


def test_policy_names_only_the_key_table() -> None:
    policy = keys_policy("secret", "valuation/api-keys")
    assert 'path "secret/data/valuation/api-keys/+"' in policy  # one entry per key
    assert 'path "secret/metadata/valuation/api-keys"' in policy
    assert 'path "secret/data/valuation/api-keys"' in policy  # the old document, migrated
    assert "*" not in policy and "sys/" not in policy


def test_bootstrap_is_idempotent_and_seeds_api_key_once(bao, settings) -> None:
    first = bootstrap(bao.addr, bao.root_token, api_key="seed-me", settings=settings)
    second = bootstrap(bao.addr, bao.root_token, api_key="seed-me", settings=settings)
    assert first.role_id == second.role_id
    assert first.secret_id != second.secret_id
    assert first.seeded_key_id == second.seeded_key_id
    assert first.secret_id not in repr(first)

    root = hvac.Client(url=bao.addr, token=bao.root_token, timeout=2)
    names = root.secrets.kv.v2.list_secrets(path=settings.vault.keys_path, mount_point="secret")
    assert names["data"]["keys"] == [hash_key("seed-me")]
    entry = root.secrets.kv.v2.read_secret_version(
        path=f"{settings.vault.keys_path}/{hash_key('seed-me')}", mount_point="secret",
        raise_on_deleted_version=True,
    )["data"]["data"]
    assert entry["role"] == "admin"
    # both secret_ids log in
    for result in (first, second):
        assert approle_client(bao, result.role_id, result.secret_id).is_authenticated()


def test_approle_credentials_reach_the_key_table_and_nothing_else(bao, settings) -> None:
    result = bootstrap(bao.addr, bao.root_token, api_key="seed-me", settings=settings)
    session = VaultSession(
        bao.addr,
        VaultCredentials(role_id=result.role_id, secret_id=result.secret_id),
        timeout_s=2.0,
    )
    store = VaultKeyStore(
        session,
        kv_mount="secret",
        keys_path=settings.vault.keys_path,
        cache_ttl_s=60,
        refresh_s=15,
    )
    key, record = store.create("alice", "predict")  # write
    assert store.verify("seed-me").role == "admin"  # read
    assert store.verify(key) == record

    client = approle_client(bao, result.role_id, result.secret_id)
    assert client.token != bao.root_token
    with pytest.raises(hvac_errors.Forbidden):
        client.sys.list_acl_policies()
    with pytest.raises(hvac_errors.Forbidden):
        client.sys.read_policy("root")
    with pytest.raises(hvac_errors.Forbidden):
        client.sys.create_or_update_policy("escalate", 'path "*" { capabilities = ["sudo"] }')
    with pytest.raises(hvac_errors.Forbidden):
        client.secrets.kv.v2.read_secret_version(
            path="someone-else", mount_point="secret", raise_on_deleted_version=True
        )
    with pytest.raises(hvac_errors.Forbidden):
        client.secrets.kv.v2.create_or_update_secret(
            path="valuation/other", secret={"a": "b"}, mount_point="secret"
        )


def test_bootstrap_refuses_a_mount_that_is_not_kv2(bao, keys_path) -> None:
    settings = vault_settings(bao.addr, keys_path, kv_mount="cubbyhole")
    with pytest.raises(VaultError, match="KV version 2"):
        bootstrap(bao.addr, bao.root_token, settings=settings)


def test_bootstrap_enables_kv2_where_missing(bao, keys_path) -> None:
    settings = vault_settings(bao.addr, keys_path, kv_mount=f"kv-{keys_path[-8:]}")
    result = bootstrap(bao.addr, bao.root_token, api_key="k", settings=settings)
    mounts = hvac.Client(url=bao.addr, token=bao.root_token).sys.list_mounted_secrets_engines()
    mount = mounts["data"][f"{settings.vault.kv_mount}/"]
    assert mount["type"] == "kv" and mount["options"]["version"] == "2"
    assert result.kv_mount == settings.vault.kv_mount


def test_credentials_file_is_private(tmp_path, bao, settings) -> None:
    result = bootstrap(bao.addr, bao.root_token, settings=settings)
    path = write_credentials(result, tmp_path / "nested" / "approle.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert (document["role_id"], document["secret_id"]) == (result.role_id, result.secret_id)
    assert VaultCredentials.from_approle_file(path).role_id == result.role_id


@pytest.mark.slow
def test_cli_reads_spec_env_and_prints_only_the_path(tmp_path, bao) -> None:
    out = tmp_path / "approle.json"
    host, port = bao.addr.rsplit(":", 1)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VAULT_")},
        "VAULT_ADDR": host,  # the specification's split form: address and port apart
        "VAULT_PORT": port,
        "VAULT_DEV_ROOT_TOKEN": bao.root_token,
        "API_KEY": "cli-seeded-key",
    }
    done = subprocess.run(
        [sys.executable, "-m", "serving.vault_init", "--out", str(out), "--wait", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{out}\n"  # logs go to stderr
    assert "vault_bootstrapped" in done.stderr
    document = json.loads(out.read_text())
    assert document["secret_id"] not in done.stdout + done.stderr
    assert bao.root_token not in done.stdout + done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    client = approle_client(bao, document["role_id"], document["secret_id"])
    entry = client.secrets.kv.v2.read_secret_version(
        path=f"valuation/api-keys/{hash_key('cli-seeded-key')}", mount_point="secret",
        raise_on_deleted_version=True,
    )["data"]["data"]
    assert entry["owner"] == "bootstrap"


def test_cli_without_token_exits_with_usage_error(tmp_path, bao) -> None:
    from serving.vault_init import main

    assert main(["--out", str(tmp_path / "x.json"), "--addr", bao.addr]) == 2
    assert not (tmp_path / "x.json").exists()
