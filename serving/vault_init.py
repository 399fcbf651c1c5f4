"""Prepare a Vault/OpenBao server for the proxy, idempotently, with the root token.

Makes sure KV v2 is mounted at `vault.kv_mount`, AppRole auth is enabled, a policy allows read and
write on the API-key secret only, and an AppRole role carries that policy; seeds API_KEY as an
admin key; and hands out the role_id plus a fresh secret_id, so the proxy logs in with those
instead of the root token. Used by `make stack` and by the compose one-shot init container:

    python -m serving.vault_init --out /run/secrets/vault-approle.json

reads VAULT_ADDR (+ VAULT_PORT), VAULT_TOKEN or VAULT_DEV_ROOT_TOKEN, and API_KEY from the
environment, writes {"role_id", "secret_id", ...} to the file (mode 600) and prints only its path.
Point the proxy at it with VAULT_APPROLE_FILE, or export VAULT_ROLE_ID / VAULT_SECRET_ID.
In a Kubernetes pod (the Helm chart's vault-init Job), `--kubernetes-secret NAME` puts the same
keys in the Secret NAME of the pod's namespace instead (serving/kubernetes_secret.py), which the
proxy Deployment reads role_id and secret_id from.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import structlog
from hvac import exceptions as hvac_errors
from omegaconf import DictConfig

from serving.keys.records import hash_key, key_id_of
from serving.keys.vault_store import seed_admin_key
from serving.kubernetes_secret import Cluster, KubernetesError, write_secret
from serving.logging import configure_logging, get_logger
from serving.settings import get_settings, secret
from serving.vault import (
    VaultCredentials,
    VaultError,
    VaultSession,
    VaultUnavailable,
    vault_url,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class BootstrapResult:
    role_id: str
    secret_id: str = field(repr=False)
    role_name: str
    policy_name: str
    approle_mount: str
    kv_mount: str
    keys_path: str
    seeded_key_id: str | None  # key_id of API_KEY when it was given

    def credentials_document(self) -> dict[str, Any]:
        """What the proxy needs to log in (the file behind VAULT_APPROLE_FILE)."""
        return {
            "role_id": self.role_id,
            "secret_id": self.secret_id,
            "approle_mount": self.approle_mount,
            "role_name": self.role_name,
        }


def keys_policy(kv_mount: str, keys_path: str) -> str:
    """HCL granting the key table and nothing else (KV v2 paths): its per-key entries (`+` is
    one path segment: a key's hash), their LIST, and the old single document, which the proxy
    reads, empties and deletes once when it moves a table stored the old way
    (serving/keys/vault_migration.py)."""
    mount, path = kv_mount.strip("/"), keys_path.strip("/")
    rules = {
        f"{mount}/data/{path}/+": '"create", "read", "update"',  # update: cas=0 answers "exists"
        f"{mount}/metadata/{path}/+": '"delete"',
        f"{mount}/metadata/{path}": '"list", "read", "delete"',
        f"{mount}/metadata/{path}/": '"list"',
        f"{mount}/data/{path}": '"read", "update"',
    }
    return "".join(
        f'path "{where}" {{\n  capabilities = [{allowed}]\n}}\n' for where, allowed in rules.items()
    )


def bootstrap(
    addr: str,
    root_token: str,
    *,
    api_key: str | None = None,
    settings: DictConfig | None = None,
    timeout_s: float | None = None,
) -> BootstrapResult:
    """Configure the server at `addr` (a URL) for the proxy; safe to run any number of times.

    Names (mounts, paths, policy, role, token TTLs) come from the `vault` section of
    conf/serving.yaml. Every run issues a new secret_id; earlier ones stay valid.
    """
    addr = vault_url(addr)
    vault = (settings if settings is not None else get_settings()).vault
    timeout = float(timeout_s if timeout_s is not None else vault.timeout_s)
    session = VaultSession(addr, VaultCredentials(token=root_token), timeout_s=timeout)
    kv_mount, keys_path = vault.kv_mount.strip("/"), vault.keys_path.strip("/")
    approle_mount = vault.approle_mount.strip("/")

    session.call(lambda c: _ensure_kv2(c, kv_mount))
    session.call(lambda c: _ensure_approle(c, approle_mount))
    session.call(
        lambda c: c.sys.create_or_update_policy(
            name=vault.policy_name, policy=keys_policy(kv_mount, keys_path)
        )
    )
    session.call(
        lambda c: c.auth.approle.create_or_update_approle(
            role_name=vault.approle_role,
            token_policies=[vault.policy_name],
            token_ttl=str(vault.token_ttl),
            token_max_ttl=str(vault.token_max_ttl),
            mount_point=approle_mount,
        )
    )
    role_id = session.call(
        lambda c: c.auth.approle.read_role_id(
            role_name=vault.approle_role, mount_point=approle_mount
        )
    )["data"]["role_id"]
    secret_id = session.call(
        lambda c: c.auth.approle.generate_secret_id(
            role_name=vault.approle_role, mount_point=approle_mount
        )
    )["data"]["secret_id"]

    seeded = None
    if api_key:
        seed_admin_key(session, kv_mount, keys_path, api_key)
        seeded = key_id_of(hash_key(api_key))
    log.info(
        "vault_bootstrapped",
        vault=addr,
        policy=vault.policy_name,
        approle_role=vault.approle_role,
        seeded_key_id=seeded,
    )
    return BootstrapResult(
        role_id=role_id,
        secret_id=secret_id,
        role_name=vault.approle_role,
        policy_name=vault.policy_name,
        approle_mount=approle_mount,
        kv_mount=kv_mount,
        keys_path=keys_path,
        seeded_key_id=seeded,
    )


def _ensure_kv2(client: hvac.Client, mount: str) -> None:
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    existing = mounts.get(f"{mount}/")
    if existing is None:
        client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
        log.info("vault_kv_enabled", mount=mount)
        return
    version = str((existing.get("options") or {}).get("version", "1"))
    if existing.get("type") != "kv" or version != "2":
        raise VaultError(
            f"mount {mount}/ exists as {existing.get('type')} (version {version}); "
            "the key store needs a KV version 2 engine there: choose another vault.kv_mount"
        )


def _ensure_approle(client: hvac.Client, mount: str) -> None:
    methods = client.sys.list_auth_methods()["data"]
    existing = methods.get(f"{mount}/")
    if existing is None:
        client.sys.enable_auth_method("approle", path=mount)
        log.info("vault_approle_enabled", mount=mount)
    elif existing.get("type") != "approle":
        raise VaultError(f"auth mount {mount}/ exists as {existing.get('type')}, not approle")


def write_credentials(result: BootstrapResult, path: str | os.PathLike[str]) -> Path:
    """Write the AppRole credentials as JSON readable by the owner only (created 0600)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(result.credentials_document(), handle)
    os.chmod(temporary, 0o600)
    os.replace(temporary, target)
    return target


def publish_credentials(result: BootstrapResult, cluster: Cluster, secret_name: str) -> str:
    """Put the credentials document's keys (role_id, secret_id, ...) in the Kubernetes Secret
    `secret_name`; returns "created" or "updated"."""
    action = write_secret(cluster, secret_name, result.credentials_document())
    log.info("vault_approle_secret_written", secret=secret_name, namespace=cluster.namespace,
             action=action)
    return action


def wait_until_ready(addr: str, timeout_s: float, vault: DictConfig) -> None:
    """Wait until Vault answers its health endpoint unsealed (compose starts both together),
    probing every `vault.init_poll_s`, each probe bounded by `vault.timeout_s`."""
    deadline = time.monotonic() + timeout_s
    probe = VaultSession(addr, VaultCredentials(), timeout_s=float(vault.timeout_s))
    while not probe.healthy():
        if time.monotonic() >= deadline:
            raise VaultUnavailable(f"Vault at {addr} not ready after {timeout_s:.0f} s")
        time.sleep(float(vault.init_poll_s))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.vault_init",
        description="Prepare Vault/OpenBao for the valuation proxy (idempotent).",
    )
    parser.add_argument(
        "--out", help="file to write the proxy's AppRole credentials to (mode 600)"
    )
    parser.add_argument(
        "--kubernetes-secret",
        metavar="NAME",
        help="in a Kubernetes pod: create or update this Secret (of the pod's namespace) with the "
        "credentials, using the pod's service-account token",
    )
    parser.add_argument("--addr", help="Vault URL (default: VAULT_ADDR + VAULT_PORT)")
    parser.add_argument(
        "--wait", type=float, help="seconds to wait for Vault to be ready (vault.init_wait_s)"
    )
    args = parser.parse_args(argv)
    configure_logging()
    # Logs on stderr: stdout carries only the credentials file's path, for scripts to read.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    # The standard library's loggers too (httpx logs each request to the Kubernetes API).
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)

    settings = get_settings()
    wait_s = args.wait if args.wait is not None else float(settings.vault.init_wait_s)
    raw_addr = args.addr or settings.vault.addr
    root_token = secret("VAULT_TOKEN") or secret("VAULT_DEV_ROOT_TOKEN")
    if not args.out and not args.kubernetes_secret:
        print("error: say where the credentials go: --out FILE and/or --kubernetes-secret NAME",
              file=sys.stderr)
        return 2
    if not raw_addr:
        print("error: set VAULT_ADDR (and VAULT_PORT) or pass --addr", file=sys.stderr)
        return 2
    if not root_token:
        print("error: set VAULT_TOKEN or VAULT_DEV_ROOT_TOKEN to a root token", file=sys.stderr)
        return 2
    try:
        # Before touching Vault: outside a pod (or without a token) nothing is bootstrapped.
        cluster = Cluster.in_cluster() if args.kubernetes_secret else None
        addr = vault_url(raw_addr, None if args.addr else settings.vault.port)
        wait_until_ready(addr, wait_s, settings.vault)
        result = bootstrap(addr, root_token, api_key=secret("API_KEY"), settings=settings)
        if cluster is not None:
            publish_credentials(result, cluster, args.kubernetes_secret)
    except (VaultError, hvac_errors.VaultError, KubernetesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out:
        print(write_credentials(result, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
