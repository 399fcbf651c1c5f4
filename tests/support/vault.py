"""Fixtures for the key-store and CLI tests (their conftests import them): one real OpenBao dev
server per session, a fresh key path per test (so tests sharing the server never see each
other's keys), and settings pointing at it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig

from serving.settings import get_settings
from serving.vault import VaultCredentials, VaultSession
from tests.support.bao import BaoServer, start_bao, vault_settings

# Environment the key store and the CLI read; cleared so the outer shell cannot leak in.
VAULT_ENV = (
    "VAULT_ADDR",
    "VAULT_PORT",
    "VAULT_TOKEN",
    "VAULT_DEV_ROOT_TOKEN",
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
    "VAULT_APPROLE_FILE",
    "API_KEY",
)


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    directory = tmp_path_factory.mktemp("bao")
    server = start_bao(directory, audit_log=directory / "audit.jsonl")
    yield server
    server.stop()


@pytest.fixture
def vault_audit_log(bao: BaoServer) -> Path:
    """The session server's audit log: every request it answered, one JSON line each."""
    return bao.log_path.parent / "audit.jsonl"


@pytest.fixture(autouse=True)
def clean_vault_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[None]:
    for name in VAULT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUDIT_LOG_PATH", str(tmp_path / "audit.jsonl"))  # the CLI's audit trail
    # No `make stack` of this checkout is seen unless a test writes one's state here.
    monkeypatch.setenv("STACK_STATE_DIR", str(tmp_path / "stack"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def keys_path() -> str:
    return f"valuation-test/{uuid.uuid4().hex}"


@pytest.fixture
def settings(bao: BaoServer, keys_path: str) -> DictConfig:
    return vault_settings(bao.addr, keys_path)


@pytest.fixture
def root_session(bao: BaoServer) -> VaultSession:
    return VaultSession(bao.addr, VaultCredentials(token=bao.root_token), timeout_s=2.0)
