"""The audit trail: one JSON line per prediction, training request, promotion, refusal and key
operation; and no key, key hash or Vault token in it or in the logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.api.schemas import SPEC_BEST_MODEL_BODY, SPEC_PREDICT_BODY, SPEC_TRAIN_BODY
from serving.audit import AuditLog
from serving.cli.main import app as cli
from serving.keys.factory import build_key_store
from serving.keys.records import hash_key
from serving.settings import get_settings
from tests.support.bao import start_bao
from tests.support.serving import FixedSupervisor

EVENT_FIELDS = {"at", "action", "status", "request_id", "key_id", "role", "actor", "model_name",
                "model_version", "inputs", "outputs", "latency_ms", "detail"}


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_request_is_one_line_with_what_was_served(
    make_client, fake_model_server, auth, api_key, api_settings
) -> None:
    client = make_client(supervisor=FixedSupervisor(fake_model_server.url))
    ok = client.post("/predict", json=SPEC_PREDICT_BODY, headers=auth)
    bad_row = {**SPEC_PREDICT_BODY, "features": [{**SPEC_PREDICT_BODY["features"][0],
                                                  "sector": "atlantis"}]}
    refused = client.post("/predict", json=bad_row, headers=auth)
    queued = client.post("/train", json=SPEC_TRAIN_BODY, headers=auth)
    denied = client.post("/predict", json=SPEC_PREDICT_BODY, headers={"X-API-Key": "pv_wrong"})
    assert [ok.status_code, refused.status_code, queued.status_code, denied.status_code] == \
        [200, 422, 202, 401]

    events = _events(Path(api_settings.audit.path))
    assert [(e["action"], e["status"]) for e in events] == [
        ("predict", 200), ("predict", 422), ("train", 202), ("denied:predict", 401)]
    assert all(set(e) == EVENT_FIELDS for e in events)
    served, invalid, train, unknown = events
    key_id = hash_key(api_key)[:12]
    assert served["request_id"] == ok.headers["X-Request-ID"]
    assert (served["key_id"], served["role"]) == (key_id, "admin")
    assert (served["model_name"], served["model_version"]) == ("property_friends_best_model", "7")
    assert served["inputs"] == SPEC_PREDICT_BODY["features"]
    assert served["outputs"] == ok.json()["predictions"]
    assert served["latency_ms"] > 0
    assert invalid["detail"][0]["field"] == "sector" and invalid["outputs"] is None
    assert train["outputs"]["job_id"] == queued.json()["job_id"]
    assert train["inputs"]["pipeline_config"]["model"] == "GradientBoostingRegressor"
    assert unknown["key_id"] is None and unknown["detail"] == "invalid API key"


def test_lines_are_appended_never_rewritten(tmp_path) -> None:
    path = tmp_path / "trail" / "audit.jsonl"
    first = AuditLog(path, retention_days=3)
    first.record("predict", status=200, key_id="a" * 12)
    first.close()
    second = AuditLog(path, retention_days=3)  # a restart appends to the same file
    second.record("train", status=202, key_id="b" * 12, inputs=list(range(5)))
    # flushed per line: readable before close
    assert [e["action"] for e in _events(path)] == ["predict", "train"]
    second.close()
    big = AuditLog(path, max_input_rows=2)
    big.record("predict", status=200, inputs=[1, 2, 3, 4])
    big.close()
    assert _events(path)[-1]["inputs"] == {"first_rows": [1, 2], "total_rows": 4,
                                           "truncated": True, "field": "inputs"}


def test_retention_is_daily_rotation_keeping_n_days(tmp_path) -> None:
    trail = AuditLog(tmp_path / "audit.jsonl", retention_days=7)
    handler = trail._handler
    assert (handler.when, handler.backupCount, handler.utc) == ("MIDNIGHT", 7, True)
    assert handler.mode == "a"
    trail.record("predict", status=200)
    # A file already rotated under today's name (by another writer) is never overwritten.
    rotated = tmp_path / "audit.jsonl.2026-01-01"
    rotated.write_text('{"action": "kept"}\n')
    assert handler.rotation_filename(str(rotated)) == f"{rotated}.1"
    handler.doRollover()
    assert rotated.read_text() == '{"action": "kept"}\n'
    assert len(list(tmp_path.glob("audit.jsonl.*"))) == 2
    trail.close()
    cli_writer = AuditLog(tmp_path / "audit.jsonl", rotate=False)
    assert type(cli_writer._handler).__name__ == "FileHandler" and cli_writer._handler.mode == "a"
    cli_writer.close()


@pytest.mark.slow
def test_no_key_hash_or_token_in_the_audit_trail_or_the_logs(
    make_client, fake_model_server, api_settings, tmp_path, monkeypatch, capsys, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    audit_file = Path(api_settings.audit.path)
    bao = start_bao(tmp_path)
    store = None
    try:
        for name in ("VAULT_PORT", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "VAULT_APPROLE_FILE",
                     "API_KEY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("VAULT_ADDR", bao.addr)
        monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
        monkeypatch.setenv("AUDIT_LOG_PATH", str(audit_file))  # the CLI writes the same trail
        get_settings.cache_clear()
        runner = CliRunner()
        created = runner.invoke(cli, ["keys", "create", "--owner", "auditor", "--role", "admin"])
        assert created.exit_code == 0, created.output
        admin_key = created.stdout.strip().splitlines()[-1]
        other = runner.invoke(cli, ["keys", "create", "--owner", "leaver", "--role", "predict"])
        predict_key = other.stdout.strip().splitlines()[-1]
        revoked = runner.invoke(cli, ["keys", "revoke", hash_key(predict_key)[:12]])
        assert revoked.exit_code == 0, revoked.output

        store = build_key_store(get_settings())
        store.start()
        client = make_client(supervisor=FixedSupervisor(fake_model_server.url), key_store=store)
        admin = {"X-API-Key": admin_key}
        assert client.post("/predict", json=SPEC_PREDICT_BODY, headers=admin).status_code == 200
        assert client.post("/train", json=SPEC_TRAIN_BODY, headers=admin).status_code == 202
        assert client.post("/best_model", json=SPEC_BEST_MODEL_BODY,
                           headers=admin).status_code == 404  # no such experiment here
        assert client.post("/predict", json=SPEC_PREDICT_BODY,
                           headers={"X-API-Key": predict_key}).status_code == 401  # revoked
    finally:
        if store is not None:
            store.close()
        bao.stop()
        get_settings.cache_clear()

    trail = audit_file.read_text()
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    actions = [e["action"] for e in _events(audit_file)]
    assert actions == ["keys:create", "keys:create", "keys:revoke", "predict", "train",
                       "promote:best_model", "denied:predict"]
    assert hash_key(admin_key)[:12] in trail  # key ids are there ...
    for secret in (admin_key, predict_key, hash_key(admin_key), hash_key(predict_key),
                   bao.root_token):
        assert secret not in trail  # ... keys, hashes and the root token are not
        assert secret not in logs


def test_cli_promotion_is_audited(tmp_path, monkeypatch) -> None:
    import uuid

    from mlflow import MlflowClient

    from valuation.registry import register_version

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    audit_file = tmp_path / "cli-audit.jsonl"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AUDIT_LOG_PATH", str(audit_file))
    get_settings.cache_clear()
    name = f"model_{uuid.uuid4().hex[:8]}"
    (tmp_path / "model").mkdir()
    register_version(MlflowClient(tracking_uri=uri), name, str(tmp_path / "model"),
                     tags={"valuation.validated": "true"})
    try:
        done = CliRunner().invoke(cli, ["promote", "1", "--model", name, "--reason", "audited"])
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    (event,) = _events(audit_file)
    assert (event["action"], event["status"], event["model_name"], event["model_version"]) == \
        ("promote:cli", "ok", name, "1")
    assert event["actor"].startswith("cli") and event["inputs"]["reason"] == "audited"
    assert event["outputs"] == {"from_version": None, "to_version": "1"}
