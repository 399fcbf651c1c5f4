"""Which Vault `valuation keys` talks to, and how it found it.

1. The one VAULT_ADDR (+ VAULT_PORT) names, with the credentials the environment gives.
2. Else the Vault of the `make stack` running from this checkout: the stack writes its endpoints
   and the path of its AppRole credentials to `stack.json` in its state directory
   (`stack.state_dir`, env STACK_STATE_DIR) with its own pid, so a stack that has stopped is
   told apart from a running one.
3. Else none: only the key in API_KEY is known, and keys cannot be created or revoked.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from serving.vault import vault_url
from valuation.config import resolve_path

STACK_STATE_FILE = "stack.json"  # written by the stack launcher while it runs
HOW_TO_GET_ONE = ("start `make stack`, or export VAULT_ADDR and VAULT_APPROLE_FILE "
                  "(or VAULT_TOKEN)")


class VaultChoiceError(Exception):
    """The stack's state file exists but cannot be used; the message says why."""


@dataclass(frozen=True)
class VaultChoice:
    settings: DictConfig  # the settings, with `vault` pointing at the chosen Vault
    url: str | None  # None: no Vault
    origin: str  # where the address came from, or why there is none

    def describe(self) -> str:
        """One line for stderr saying which Vault is used."""
        if self.url is None:
            return f"using no Vault: {self.origin}; only the key in API_KEY is known"
        return f"using Vault at {self.url} ({self.origin})"


def choose_vault(settings: DictConfig) -> VaultChoice:
    """The Vault to use (see the module docstring); VaultError for a malformed VAULT_ADDR,
    VaultChoiceError for an unusable state file."""
    vault = settings.vault
    if vault.addr:
        return VaultChoice(settings, vault_url(vault.addr, vault.port), "VAULT_ADDR")
    state_file = resolve_path(settings.stack.state_dir) / STACK_STATE_FILE
    if not state_file.exists():
        return VaultChoice(settings, None, f"VAULT_ADDR is not set and no `make stack` runs "
                                           f"from this checkout (no {state_file})")
    state = _read_state(state_file)
    if not _running(state["pid"]):
        return VaultChoice(settings, None, f"VAULT_ADDR is not set and the `make stack` that "
                                           f"wrote {state_file} is not running (pid {state['pid']})")
    chosen = OmegaConf.merge(settings, {"vault": {
        "addr": state["vault"],
        "port": None,
        "approle_file": vault.approle_file or state["approle_file"],
    }})
    return VaultChoice(chosen, vault_url(state["vault"]), f"the running `make stack`, {state_file}")


def _read_state(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        state = {"pid": int(document["pid"]), "vault": str(document["endpoints"]["vault"]),
                 "approle_file": str(document["approle_file"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VaultChoiceError(
            f"{path} does not say where the stack's Vault is ({type(exc).__name__}: {exc}); "
            f"{HOW_TO_GET_ONE}"
        ) from exc
    return state


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True

