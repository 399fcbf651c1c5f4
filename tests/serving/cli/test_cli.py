"""The `valuation` console script: keys against a real OpenBao, promote/status against a real
(SQLite) MLflow registry."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from serving.cli.main import app
from serving.keys.factory import build_key_store
from serving.keys.records import hash_key
from serving.ports import free_port
from serving.settings import get_settings
from serving.vault_init import bootstrap, write_credentials
from valuation.registry import alias_history, alias_version, register_version

runner = CliRunner()
MODEL = "property_friends_best_model"


@pytest.fixture
def vault_env(bao, monkeypatch):
    """The specification's .env form: VAULT_ADDR without the port, VAULT_PORT apart."""
    host, port = bao.addr.rsplit(":", 1)
    monkeypatch.setenv("VAULT_ADDR", host)
    monkeypatch.setenv("VAULT_PORT", port)
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    get_settings.cache_clear()
    return bao


def invoke(*args: str):
    get_settings.cache_clear()
    return runner.invoke(app, list(args))


def test_keys_create_prints_the_key_last_and_it_verifies(vault_env) -> None:
    result = invoke("keys", "create", "--owner", "alice", "--role", "predict")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    key = lines[-1]
    assert key.startswith("pv_") and " " not in key
    record = build_key_store(get_settings()).verify(key)
    assert record is not None and (record.owner, record.role) == ("alice", "predict")
    assert record.key_id in "\n".join(lines[:-1])


def test_keys_list_shows_ids_but_never_keys_or_hashes(vault_env) -> None:
    created = invoke("keys", "create", "--owner", "lister", "--role", "TRAIN")
    key = created.stdout.strip().splitlines()[-1]
    key_id = hash_key(key)[:12]

    table = invoke("keys", "list")
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if line.startswith(key_id))
    assert "lister" in row and "train" in row
    assert key not in table.stdout and hash_key(key) not in table.stdout

    as_json = invoke("keys", "list", "--json")
    records = {r["key_id"]: r for r in json.loads(as_json.stdout)}
    assert records[key_id]["owner"] == "lister"
    assert set(records[key_id]) == {"key_id", "owner", "role", "created_at"}


def test_keys_revoke_then_unknown_id(vault_env) -> None:
    key = invoke("keys", "create", "--owner", "leaver", "--role", "predict").stdout.split()[-1]
    key_id = hash_key(key)[:12]
    revoked = invoke("keys", "revoke", key_id)
    assert revoked.exit_code == 0, revoked.output
    assert build_key_store(get_settings()).verify(key) is None

    again = invoke("keys", "revoke", key_id)
    assert again.exit_code == 1
    assert f"no API key with id '{key_id}'" in again.stderr


def test_keys_create_with_unknown_role_is_a_usage_error(vault_env) -> None:
    result = invoke("keys", "create", "--owner", "mallory", "--role", "root")
    assert result.exit_code == 2
    assert "'root'" in result.output and "predict" in result.output
    assert "pv_" not in result.stdout


def test_keys_create_with_bad_owner_is_a_usage_error(vault_env) -> None:
    result = invoke("keys", "create", "--owner", "bad\nowner", "--role", "predict")
    assert result.exit_code == 2
    assert "invalid owner" in result.stderr


def test_keys_with_vault_unreachable_fail_clearly(monkeypatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("VAULT_TOKEN", "whatever")
    for args in (("keys", "list"), ("keys", "create", "--owner", "a", "--role", "admin")):
        result = invoke(*args)
        assert result.exit_code == 1
        assert "error:" in result.stderr and "cannot reach Vault" in result.stderr


def test_keys_without_vault_say_vault_is_needed(monkeypatch) -> None:
    monkeypatch.setenv("API_KEY", "env-only")
    result = invoke("keys", "create", "--owner", "alice", "--role", "predict")
    assert result.exit_code == 1
    assert "without Vault" in result.stderr
    listed = invoke("keys", "list")
    assert listed.exit_code == 0 and "bootstrap" in listed.stdout


def test_keys_with_approle_file(bao, monkeypatch, tmp_path) -> None:
    result = bootstrap(bao.addr, bao.root_token, settings=get_settings())
    monkeypatch.setenv("VAULT_ADDR", bao.addr)
    monkeypatch.setenv("VAULT_APPROLE_FILE", str(write_credentials(result, tmp_path / "a.json")))
    created = invoke("keys", "create", "--owner", "via-approle", "--role", "admin")
    assert created.exit_code == 0, created.output
    assert build_key_store(get_settings()).verify(created.stdout.split()[-1]).role == "admin"


# -- which Vault: VAULT_ADDR, else the running `make stack` of this checkout -----------------------
def write_stack_state(state_dir: Path, *, pid: int, vault: str, approle_file: Path) -> None:
    """What a running `make stack` keeps in its state directory (serving/devstack/, stack.json)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "stack.json").write_text(json.dumps({
        "pid": pid,
        "endpoints": {"mlflow": "http://127.0.0.1:5000", "vault": vault,
                      "proxy": "http://127.0.0.1:8000"},
        "parts": {},
        "approle_file": str(approle_file),
    }))


@pytest.fixture
def stack_dir() -> Path:
    """STACK_STATE_DIR as the autouse fixture sets it."""
    return Path(os.environ["STACK_STATE_DIR"])


def running_stack(bao, stack_dir: Path, pid: int) -> None:
    """A stack's Vault bootstrapped as `make stack` does it, its state written with `pid`."""
    result = bootstrap(bao.addr, bao.root_token, settings=get_settings())
    approle = write_credentials(result, stack_dir / "vault-approle.json")
    write_stack_state(stack_dir, pid=pid, vault=bao.addr, approle_file=approle)


def test_keys_use_the_running_stacks_vault_and_say_so(bao, stack_dir, monkeypatch) -> None:
    running_stack(bao, stack_dir, pid=os.getpid())  # this process plays the running stack
    created = invoke("keys", "create", "--owner", "stack-user", "--role", "predict")
    assert created.exit_code == 0, created.output
    assert created.stderr.strip() == (
        f"using Vault at {bao.addr} (the running `make stack`, {stack_dir / 'stack.json'})"
    )
    key = created.stdout.split()[-1]
    listed = invoke("keys", "list")
    assert listed.exit_code == 0 and hash_key(key)[:12] in listed.stdout
    assert f"using Vault at {bao.addr}" in listed.stderr

    monkeypatch.setenv("VAULT_ADDR", bao.addr)  # the same Vault, asked directly
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    get_settings.cache_clear()
    assert build_key_store(get_settings()).verify(key).owner == "stack-user"


def test_vault_addr_wins_over_a_running_stack(vault_env, stack_dir) -> None:
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens: using it would fail
    write_stack_state(stack_dir, pid=os.getpid(), vault=gone, approle_file=stack_dir / "none")
    created = invoke("keys", "create", "--owner", "env-user", "--role", "predict")
    assert created.exit_code == 0, created.output
    assert created.stderr.strip() == f"using Vault at {vault_env.addr} (VAULT_ADDR)"


def test_keys_with_a_stopped_stack_say_what_to_do(bao, stack_dir) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    running_stack(bao, stack_dir, pid=ended.pid)
    result = invoke("keys", "create", "--owner", "late", "--role", "predict")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "is not running" in lines[0] and f"pid {ended.pid}" in lines[0]
    assert "start `make stack`" in lines[0] and "export VAULT_ADDR" in lines[0]
    assert "pv_" not in result.stdout


def test_keys_without_vault_or_stack_say_what_to_export(stack_dir) -> None:
    for args in (("keys", "create", "--owner", "a", "--role", "admin"), ("keys", "revoke", "x")):
        result = invoke(*args)
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: cannot {args[1]} API keys without Vault")
        assert str(stack_dir / "stack.json") in lines[0]
        assert "start `make stack`" in lines[0]
        assert "export VAULT_ADDR and VAULT_APPROLE_FILE" in lines[0]


def test_an_unreadable_stack_state_is_an_error(stack_dir) -> None:
    stack_dir.mkdir(parents=True)
    (stack_dir / "stack.json").write_text('{"pid": 1}')
    result = invoke("keys", "list")
    assert result.exit_code == 1
    assert "does not say where the stack's Vault is" in result.stderr


# -- promote and status -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def module_tracking_uri(tmp_path_factory) -> str:
    # One SQLite store for the module (creating one costs seconds); each test gets its own model.
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def registry(module_tracking_uri, monkeypatch, tmp_path) -> tuple[MlflowClient, str]:
    """A fresh registered model with three versions: 1 and 2 validated, 3 failed thresholds."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", module_tracking_uri)
    get_settings.cache_clear()
    client = MlflowClient(tracking_uri=module_tracking_uri)
    name = f"model_{uuid.uuid4().hex[:8]}"
    source = tmp_path / "model"
    source.mkdir()
    for validated, rmse in (("true", "5000"), ("true", "4500"), ("false", "9000")):
        register_version(
            client,
            name,
            str(source),
            tags={"valuation.validated": validated, "test_rmse": rmse, "test_mae": "2000"},
        )
    return client, name


def test_promote_moves_the_alias_and_records_why(registry) -> None:
    client, name = registry
    first = invoke("promote", "1", "--model", name)
    assert first.exit_code == 0, first.output
    second = invoke("promote", "2", "--model", name, "--reason", "better on March data")
    assert second.exit_code == 0, second.output
    assert "champion 1 -> 2" in second.stdout
    assert alias_version(client, name, "champion") == "2"
    last = alias_history(client, name)[-1]
    assert (last.from_version, last.to_version, last.reason) == ("1", "2", "better on March data")
    assert last.actor.startswith("cli")

    challenger = invoke("promote", "1", "--model", name, "--alias", "challenger")
    assert challenger.exit_code == 0
    assert alias_version(client, name, "challenger") == "1"


def test_promote_refuses_bad_input(registry) -> None:
    client, name = registry
    unknown = invoke("promote", "99", "--model", name)
    assert unknown.exit_code == 1 and "has no version 99" in unknown.stderr
    not_a_number = invoke("promote", "latest", "--model", name)
    assert not_a_number.exit_code == 2 and "positive integer" in not_a_number.stderr
    bad_alias = invoke("promote", "1", "--model", name, "--alias", "production")
    assert bad_alias.exit_code == 2 and "champion" in bad_alias.stderr
    assert alias_history(client, name) == []


def test_promote_an_unvalidated_version_needs_force(registry) -> None:
    client, name = registry
    refused = invoke("promote", "3", "--model", name)
    assert refused.exit_code == 1 and "--force" in refused.stderr
    assert alias_version(client, name, "champion") is None
    forced = invoke("promote", "3", "--model", name, "--force", "--reason", "hotfix")
    assert forced.exit_code == 0
    assert alias_version(client, name, "champion") == "3"


def test_status_lists_versions_aliases_and_history(registry) -> None:
    _, name = registry
    invoke("promote", "1", "--model", name, "--reason", "first")
    invoke("promote", "2", "--model", name, "--reason", "second")
    result = invoke("status", "--model", name)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    version_rows = {line.split()[0]: line.split() for line in lines if line[:1].isdigit()}
    assert version_rows["2"][1] == "champion" and "4500" in version_rows["2"]
    assert version_rows["1"][1] == "-"
    assert version_rows["3"][3] == "false"
    history = lines[lines.index("alias history") + 2 :]
    assert [(row.split()[1], row.split()[2], row.split()[3]) for row in history] == [
        ("champion", "-", "1"),
        ("champion", "1", "2"),
    ]


def test_status_of_an_unknown_model_and_default_name(registry) -> None:
    result = invoke("status", "--model", "nobody")
    assert result.exit_code == 1 and "no registered model named 'nobody'" in result.stderr
    default = invoke("status")  # the configured name, not registered in this store
    assert default.exit_code == 1 and f"'{MODEL}'" in default.stderr
