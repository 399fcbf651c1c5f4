"""Fixtures of the key-store tests: a real OpenBao dev server (tests/support/vault.py)."""

from tests.support.vault import (  # noqa: F401  (fixtures: pytest finds them by name here)
    bao,
    clean_vault_env,
    keys_path,
    root_session,
    settings,
    vault_audit_log,
)
