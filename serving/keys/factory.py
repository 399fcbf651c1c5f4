"""The key store the settings ask for."""

from __future__ import annotations

from omegaconf import DictConfig

from serving.keys.env_store import EnvKeyStore
from serving.keys.store import ApiKeyStore, KeyStoreError
from serving.keys.vault_store import VaultKeyStore
from serving.settings import get_settings, secret
from serving.vault import VaultError


def build_key_store(settings: DictConfig | None = None) -> ApiKeyStore:
    """Vault-backed when `vault.addr` (env VAULT_ADDR) is set, else the API_KEY-only store."""
    settings = settings if settings is not None else get_settings()
    bootstrap_key = secret("API_KEY")
    if settings.vault.addr:
        try:
            return VaultKeyStore.from_settings(settings, bootstrap_key)
        except VaultError as exc:
            raise KeyStoreError(str(exc)) from exc
    return EnvKeyStore(bootstrap_key)
