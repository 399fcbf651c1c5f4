"""A connection to Vault/OpenBao: address, credentials, login, token renewal and KV v2 documents.

Everything that talks to Vault goes through `VaultSession.call`, which bounds each request by a
timeout, keeps the token fresh (AppRole re-login, or renew-self for renewable tokens) and turns
every way of not getting an answer into `VaultUnavailable`, so callers can fail closed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hvac
import requests
from hvac import exceptions as hvac_errors
from omegaconf import DictConfig

from serving.logging import get_logger
from serving.settings import get_settings

# urllib3 logs each request line at DEBUG; the key store's Vault paths carry key hashes, which
# must never reach a log, whatever level a deployment or a test sets.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

log = get_logger(__name__)
T = TypeVar("T")


class VaultError(Exception):
    """Vault is misconfigured for this use (wrong mount type, missing credentials, ...)."""


class VaultUnavailable(VaultError):
    """Vault could not be asked: unreachable, timed out, sealed, or it refused our credentials."""


def vault_url(addr: str, port: str | int | None = None) -> str:
    """The base URL of Vault from the spec's two variables.

    The specification's .env splits them (VAULT_ADDR="http://vault", VAULT_PORT=8200); the usual
    Vault convention puts the port in VAULT_ADDR. Both work: `port` is appended only when the
    address has none. A bare host name gets http://.
    """
    text = str(addr).strip()
    if not text:
        raise VaultError("VAULT_ADDR is empty")
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    if not parts.hostname:
        raise VaultError(f"VAULT_ADDR {addr!r} has no host name")
    try:
        has_port = parts.port is not None
    except ValueError as exc:
        raise VaultError(f"VAULT_ADDR {addr!r} has an invalid port") from exc
    port_text = "" if port is None else str(port).strip()
    if port_text and not port_text.isdigit():
        raise VaultError(f"VAULT_PORT {port!r} is not a port number")
    netloc = parts.netloc if has_port or not port_text else f"{parts.netloc}:{port_text}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class VaultCredentials:
    """How to log in: AppRole (role_id + secret_id) when given, else a token. Never printed."""

    token: str | None = field(default=None, repr=False)
    role_id: str | None = field(default=None, repr=False)
    secret_id: str | None = field(default=None, repr=False)

    @property
    def method(self) -> str:
        return "approle" if self.role_id and self.secret_id else "token"

    @classmethod
    def from_env(cls, approle_file: str | os.PathLike[str] | None = None) -> VaultCredentials:
        """VAULT_ROLE_ID + VAULT_SECRET_ID, else the AppRole file written by `serving.vault_init`,
        else VAULT_TOKEN, else VAULT_DEV_ROOT_TOKEN (the specification's name)."""
        role_id, secret_id = _env("VAULT_ROLE_ID"), _env("VAULT_SECRET_ID")
        if bool(role_id) != bool(secret_id):
            raise VaultError("set both VAULT_ROLE_ID and VAULT_SECRET_ID, or neither")
        if role_id and secret_id:
            return cls(role_id=role_id, secret_id=secret_id)
        if approle_file:
            return cls.from_approle_file(approle_file)
        token = _env("VAULT_TOKEN") or _env("VAULT_DEV_ROOT_TOKEN")
        if token:
            return cls(token=token)
        raise VaultError(
            "Vault is configured (VAULT_ADDR) but no credentials are: set VAULT_ROLE_ID and "
            "VAULT_SECRET_ID, VAULT_APPROLE_FILE, or VAULT_TOKEN"
        )

    @classmethod
    def from_approle_file(cls, path: str | os.PathLike[str]) -> VaultCredentials:
        """Read {"role_id": ..., "secret_id": ...} as written by `serving.vault_init --out`."""
        source = Path(path)
        try:
            document = json.loads(source.read_text(encoding="utf-8"))
            return cls(role_id=str(document["role_id"]), secret_id=str(document["secret_id"]))
        except FileNotFoundError as exc:
            raise VaultError(f"AppRole credentials file {source} does not exist") from exc
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise VaultError(
                f"AppRole credentials file {source} is not JSON with role_id and secret_id"
            ) from exc


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


class VaultSession:
    """An authenticated hvac client that logs in lazily and keeps its token fresh.

    A token is replaced (or renewed) when less than `renew_fraction` of its lifetime is left, at
    least `renew_min_margin_s` before it expires, never earlier than half way through its life
    (both default to conf/serving.yaml's `vault.token_renew_*`).
    """

    def __init__(
        self,
        url: str,
        credentials: VaultCredentials,
        *,
        timeout_s: float,
        approle_mount: str = "approle",
        renew_fraction: float | None = None,
        renew_min_margin_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        configured = get_settings().vault
        self.url = url
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._approle_mount = approle_mount
        self._clock = clock
        self._renew_fraction = float(
            configured.token_renew_fraction if renew_fraction is None else renew_fraction
        )
        self._renew_min_margin_s = float(
            configured.token_renew_min_margin_s if renew_min_margin_s is None
            else renew_min_margin_s
        )
        self._lock = threading.RLock()
        self._client: hvac.Client | None = None
        self._expires_at: float | None = None  # None: the token does not expire
        self._ttl_s = 0.0
        self._renewable = False

    @classmethod
    def from_settings(cls, vault: DictConfig) -> VaultSession:
        """The session the `vault` section of the settings describes (credentials from env or
        `vault.approle_file`)."""
        return cls(
            vault_url(vault.addr, vault.port),
            VaultCredentials.from_env(approle_file=vault.get("approle_file")),
            timeout_s=float(vault.timeout_s),
            approle_mount=vault.approle_mount,
            renew_fraction=float(vault.token_renew_fraction),
            renew_min_margin_s=float(vault.token_renew_min_margin_s),
        )

    # -- public -----------------------------------------------------------------------------
    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def call(self, operation: Callable[[hvac.Client], T]) -> T:
        """Run `operation(client)`; VaultUnavailable for every failure to get an answer.

        A 403 is retried once after a fresh AppRole login (the token may have expired early,
        e.g. Vault restarted and lost it); with a static token it means the token is no good.
        """
        with self._lock:
            client = self._authenticated_client()
        try:
            return _translate(operation, client)
        except _Forbidden as exc:
            if self._credentials.method != "approle":
                raise VaultUnavailable(f"Vault at {self.url} refused the token") from exc
            with self._lock:
                self._client = None
                client = self._authenticated_client()
            try:
                return _translate(operation, client)
            except _Forbidden as again:
                raise VaultUnavailable(
                    f"Vault at {self.url} refused the AppRole token for this path"
                ) from again

    def healthy(self) -> bool:
        """Whether Vault answers its health endpoint as initialized and unsealed."""
        probe = hvac.Client(url=self.url, timeout=self._timeout_s)
        try:
            status = probe.sys.read_health_status(method="GET")
        except (requests.RequestException, hvac_errors.VaultError):
            return False
        return (
            isinstance(status, dict)
            and bool(status.get("initialized"))
            and not status.get("sealed")
        )

    # -- token lifecycle --------------------------------------------------------------------
    def _authenticated_client(self) -> hvac.Client:
        if self._client is not None and not self._needs_refresh():
            return self._client
        if self._client is not None and self._renewable and self._credentials.method == "token":
            try:
                self._renew(self._client)
                return self._client
            except VaultUnavailable:
                log.warning("vault_token_renew_failed", vault=self.url)
        self._client = self._login()
        return self._client

    def _needs_refresh(self) -> bool:
        if self._expires_at is None:
            return False
        # A share of the lifetime, at least a few seconds, but never more than half of it.
        margin = min(
            max(self._renew_min_margin_s, self._renew_fraction * self._ttl_s), self._ttl_s / 2
        )
        return self._clock() >= self._expires_at - margin

    def _login(self) -> hvac.Client:
        client = hvac.Client(url=self.url, timeout=self._timeout_s)
        creds = self._credentials
        if creds.method == "approle":
            try:
                answer = _translate(
                    lambda c: c.auth.approle.login(
                        role_id=creds.role_id,
                        secret_id=creds.secret_id,
                        mount_point=self._approle_mount,
                    ),
                    client,
                )
            except (_Forbidden, hvac_errors.InvalidRequest) as exc:
                raise VaultUnavailable(f"AppRole login to {self.url} was refused") from exc
            auth = answer["auth"]
            self._set_lease(float(auth.get("lease_duration") or 0), bool(auth.get("renewable")))
            log.info("vault_login", vault=self.url, method="approle")
            return client
        client.token = creds.token
        try:
            info = _translate(lambda c: c.auth.token.lookup_self(), client)["data"]
        except _Forbidden as exc:
            raise VaultUnavailable(f"Vault at {self.url} refused the token") from exc
        self._set_lease(float(info.get("ttl") or 0), bool(info.get("renewable")))
        return client

    def _renew(self, client: hvac.Client) -> None:
        try:
            answer = _translate(lambda c: c.auth.token.renew_self(), client)
        except _Forbidden as exc:
            raise VaultUnavailable("token renewal refused") from exc
        auth = answer["auth"]
        self._set_lease(float(auth.get("lease_duration") or 0), bool(auth.get("renewable")))

    def _set_lease(self, ttl_s: float, renewable: bool) -> None:
        self._ttl_s = ttl_s
        self._renewable = renewable
        self._expires_at = self._clock() + ttl_s if ttl_s > 0 else None


class _Forbidden(Exception):
    """Internal: Vault answered 401/403 (maybe an expired token)."""


def _translate(operation: Callable[[hvac.Client], T], client: hvac.Client) -> T:
    try:
        return operation(client)
    except (hvac_errors.Forbidden, hvac_errors.Unauthorized) as exc:
        raise _Forbidden(str(exc)) from exc
    except requests.Timeout as exc:
        raise VaultUnavailable(f"Vault did not answer in time ({type(exc).__name__})") from exc
    except requests.RequestException as exc:
        raise VaultUnavailable(f"cannot reach Vault ({type(exc).__name__})") from exc
    except (
        hvac_errors.VaultDown,
        hvac_errors.VaultNotInitialized,
        hvac_errors.InternalServerError,
        hvac_errors.BadGateway,
        hvac_errors.RateLimitExceeded,
    ) as exc:
        raise VaultUnavailable(f"Vault cannot serve requests ({type(exc).__name__})") from exc


# -- KV v2 documents ----------------------------------------------------------------------------
class CasConflict(Exception):
    """Someone else wrote the document between our read and our write."""


def read_document(
    session: VaultSession, mount: str, path: str
) -> tuple[dict[str, Any], int]:
    """The current data of a KV v2 secret and its version (({}, 0) when it does not exist yet)."""

    def read(client: hvac.Client) -> tuple[dict[str, Any], int]:
        try:
            answer = client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=False
            )
        except hvac_errors.InvalidPath:
            return {}, 0
        data = answer["data"]
        return dict(data.get("data") or {}), int(data["metadata"]["version"])

    return session.call(read)


def write_document(
    session: VaultSession, mount: str, path: str, document: dict[str, Any], expected_version: int
) -> int:
    """Write `document` only if the secret is still at `expected_version` (check-and-set)."""

    def write(client: hvac.Client) -> int:
        try:
            answer = client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=document, cas=expected_version, mount_point=mount
            )
        except hvac_errors.InvalidRequest as exc:
            if "check-and-set" in str(exc):
                raise CasConflict(path) from exc
            raise
        return int(answer["data"]["version"])

    return session.call(write)


def update_document(
    session: VaultSession,
    mount: str,
    path: str,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
    attempts: int,
) -> dict[str, Any]:
    """Read-modify-write with check-and-set, tried up to `attempts` times on conflicts.

    `change` gets a copy of the current document and returns the new one, or None to leave the
    secret untouched. Returns the document as stored afterwards.
    """
    for _ in range(attempts):
        current, version = read_document(session, mount, path)
        updated = change(dict(current))
        if updated is None:
            return current
        try:
            write_document(session, mount, path, updated, version)
        except CasConflict:
            continue
        return updated
    raise VaultUnavailable(f"{mount}/{path} kept changing under us ({attempts} attempts)")


def list_names(session: VaultSession, mount: str, path: str) -> list[str]:
    """The names a KV v2 LIST finds directly under `path` (folders end with "/"); [] when none."""

    def names(client: hvac.Client) -> list[str]:
        try:
            answer = client.secrets.kv.v2.list_secrets(path=path, mount_point=mount)
        except hvac_errors.InvalidPath:
            return []
        return [str(name) for name in (answer.get("data") or {}).get("keys") or []]

    return session.call(names)


def destroy_secret(session: VaultSession, mount: str, path: str) -> None:
    """Delete a KV v2 secret with all its versions and metadata (nothing left to undelete)."""
    session.call(
        lambda client: client.secrets.kv.v2.delete_metadata_and_all_versions(
            path=path, mount_point=mount
        )
    )
