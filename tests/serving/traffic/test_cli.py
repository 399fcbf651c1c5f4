"""`valuation promote --challenger` (the promotion gate, on a real store and registry) and
`valuation traffic set|show|reset` (the run-time split, in the real Redis)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.cli.main import app
from serving.settings import get_settings
from tests.serving.traffic.support import add_labelled_rows
from valuation.registry import alias_history, alias_version

runner = CliRunner()


def invoke(*args: str):
    get_settings.cache_clear()
    return runner.invoke(app, list(args))


@pytest.fixture
def cli_env(monkeypatch, gate_registry, store_url, tmp_path: Path) -> Path:
    """The CLI pointed at the test's registry, store and audit trail; returns the audit path."""
    audit_path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gate_registry.tracking_uri)
    monkeypatch.setenv("PREDICTION_STORE_URL", store_url)
    monkeypatch.setenv("AUDIT_LOG_PATH", str(audit_path))
    return audit_path


def _audit(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_promote_challenger_refuses_a_worse_challenger_with_the_figures(
    cli_env, engine, gate_registry
) -> None:
    gate_registry.aliases(champion="1", challenger="2")
    add_labelled_rows(engine, champion="1", challenger="2", n=220, champion_error=0.05,
                      challenger_error=0.12)
    refused = invoke("promote", "--challenger", "--model", gate_registry.name)
    assert refused.exit_code == 1, refused.output
    assert "promotion gate refused" in refused.stderr and "worse by" in refused.stderr
    assert "220 labelled rows priced by both (at least 200)" in refused.stdout
    assert "champion:    version 1: 0.05" in refused.stdout
    assert "challenger:  version 2: 0.1" in refused.stdout
    assert "margin 5.0%" in refused.stdout and "passed:      no" in refused.stdout
    assert alias_version(gate_registry.client, gate_registry.name, "champion") == "1"
    assert [m.alias for m in alias_history(gate_registry.client, gate_registry.name)] == []
    [line] = _audit(cli_env)
    assert (line["action"], line["status"], line["model_version"]) == \
        ("promote:gate", "refused", "2")
    assert line["outputs"]["rows"] == 220 and line["outputs"]["passed"] is False


def test_promote_challenger_moves_the_champion_when_the_gate_passes(
    cli_env, engine, gate_registry
) -> None:
    gate_registry.aliases(champion="1", challenger="3")
    add_labelled_rows(engine, champion="1", challenger="3", n=210, champion_error=0.15,
                      challenger_error=0.05, how="canary")
    moved = invoke("promote", "--challenger", "--model", gate_registry.name,
                   "--reason", "March canary")
    assert moved.exit_code == 0, moved.output
    assert "champion 1 -> 3 (promotion gate passed)" in moved.stdout
    assert "passed:      yes" in moved.stdout
    assert alias_version(gate_registry.client, gate_registry.name, "champion") == "3"
    [move] = alias_history(gate_registry.client, gate_registry.name)
    assert move.reason.startswith("March canary; promotion gate: challenger v3 vs champion v1")
    assert move.comparison["rows"] == 210 and move.comparison["margin"] == 0.05
    assert move.comparison["challenger_figure"] < move.comparison["champion_figure"]
    assert [(line["action"], line["status"]) for line in _audit(cli_env)] == \
        [("promote:gate", "ok")]

    status = invoke("status", "--model", gate_registry.name)
    assert status.exit_code == 0, status.output
    assert f"medape {move.comparison['challenger_figure']:.4g} vs " \
           f"{move.comparison['champion_figure']:.4g} on 210 rows, margin 5.0%" in status.stdout

    again = invoke("promote", "--challenger", "--model", gate_registry.name)
    assert again.exit_code == 1 and "already the champion" in again.stderr


def test_promote_challenger_takes_no_version(cli_env, gate_registry) -> None:
    both = invoke("promote", "2", "--challenger", "--model", gate_registry.name)
    assert both.exit_code == 2 and "give no VERSION" in both.stderr
    neither = invoke("promote", "--model", gate_registry.name)
    assert neither.exit_code == 2 and "or --challenger" in neither.stderr


@pytest.fixture
def traffic_key(monkeypatch, redis_conn, tmp_path: Path) -> str:
    key = f"test-traffic:{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("TRAFFIC_REDIS_KEY", key)
    monkeypatch.setenv("AUDIT_LOG_PATH", str(tmp_path / "audit.jsonl"))
    yield key
    redis_conn.delete(key)


def test_traffic_set_show_and_reset(traffic_key, redis_conn, tmp_path: Path) -> None:
    shown = invoke("traffic", "show")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == {"shadow": 0.0, "canary": 0.0, "source": "config",
                                             "set_at": None, "set_by": None}

    first = invoke("traffic", "set", "--shadow", "0.25")
    assert first.exit_code == 0, first.output
    assert "shadow 0.25, canary 0" in first.stdout
    second = invoke("traffic", "set", "--canary", "0.1")  # the shadow share is kept
    assert second.exit_code == 0, second.output
    stored = json.loads(redis_conn.get(traffic_key))
    assert (stored["shadow"], stored["canary"]) == (0.25, 0.1)
    assert stored["set_by"].startswith("cli") and stored["set_at"]
    shown = json.loads(invoke("traffic", "show").stdout)
    assert (shown["shadow"], shown["canary"], shown["source"]) == (0.25, 0.1, "runtime")

    reset = invoke("traffic", "reset")
    assert reset.exit_code == 0 and "back to the config's shadow 0, canary 0" in reset.stdout
    assert redis_conn.get(traffic_key) is None
    actions = [json.loads(line)["action"]
               for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert actions == ["traffic:cli"] * 3


def test_traffic_set_refuses_what_is_not_a_fraction(traffic_key, redis_conn) -> None:
    nothing = invoke("traffic", "set")
    assert nothing.exit_code == 2 and "--shadow and/or --canary" in nothing.stderr
    for bad in ("1.5", "-0.1", "nan"):
        refused = invoke("traffic", "set", "--canary", bad)
        assert refused.exit_code == 2, (bad, refused.output)
        assert "canary must be a fraction from 0 to 1" in refused.stderr
    assert redis_conn.get(traffic_key) is None

    redis_conn.set(traffic_key, "not json")
    broken = invoke("traffic", "show")
    assert broken.exit_code == 1 and f"Redis key '{traffic_key}' does not hold" in broken.stderr
    fixed = invoke("traffic", "set", "--shadow", "0.5")  # setting it again repairs it
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(redis_conn.get(traffic_key))["canary"] == 0.0
