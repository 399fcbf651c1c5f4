"""The promotion gate (serving/monitoring/gate.py) on labelled rows fabricated in a real store
(SQLite and PostgreSQL) and a real MLflow registry: it pairs the challenger's shadow and canary
prices with the champion's price of the same request row, and judges them by the config."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serving.monitoring.gate import auto_promotion, evaluate_gate, paired_rows, promote_challenger
from tests.serving.traffic.support import add_labelled_rows
from valuation.registry import alias_history, alias_version


def test_a_better_challenger_passes_and_the_move_records_the_comparison(engine, gate_registry) -> None:
    gate_registry.aliases(champion="1", challenger="2")
    add_labelled_rows(engine, champion="1", challenger="2", n=40, champion_error=0.20,
                      challenger_error=0.05, how="shadow", prefix="s")
    add_labelled_rows(engine, champion="1", challenger="2", n=30, champion_error=0.20,
                      challenger_error=0.05, how="canary", prefix="c")
    settings = gate_registry.settings(min_rows=60, margin=0.10, metric="medape")

    result = evaluate_gate(settings, gate_registry.client, engine)
    assert result.passed, result.reason
    assert (result.rows, result.champion_version, result.challenger_version) == (70, "1", "2")
    assert result.challenger_figure == pytest.approx(0.05, rel=0.25)
    assert result.champion_figure == pytest.approx(0.20, rel=0.25)
    assert result.improvement == pytest.approx(
        1 - result.challenger_figure / result.champion_figure)

    move = promote_challenger(settings, gate_registry.client, result, actor="cli:test")
    assert alias_version(gate_registry.client, gate_registry.name, "champion") == "2"
    last = alias_history(gate_registry.client, gate_registry.name)[-1]
    assert last == move
    assert (last.from_version, last.to_version) == ("1", "2")
    assert last.comparison == {"metric": "medape", "rows": 70, "champion_version": "1",
                               "champion_figure": result.champion_figure,
                               "challenger_version": "2",
                               "challenger_figure": result.challenger_figure, "margin": 0.10,
                               "passed": True}
    assert "promotion gate" in last.reason and "70 labelled rows" in last.reason


def test_a_worse_challenger_is_refused_with_the_figures(engine, gate_registry) -> None:
    gate_registry.aliases(champion="1", challenger="2")
    add_labelled_rows(engine, champion="1", challenger="2", n=80, champion_error=0.05,
                      challenger_error=0.15)
    result = evaluate_gate(gate_registry.settings(min_rows=50, margin=0.05), gate_registry.client,
                           engine)
    assert not result.passed
    assert result.rows == 80 and result.improvement < 0
    assert result.challenger_figure > result.champion_figure
    assert f"{result.challenger_figure:.4g} vs {result.champion_figure:.4g}" in result.reason
    assert "worse by" in result.reason and "needs better by 5.0%" in result.reason
    with pytest.raises(ValueError, match="did not pass"):
        promote_challenger(gate_registry.settings(), gate_registry.client, result, "cli:test")
    assert alias_version(gate_registry.client, gate_registry.name, "champion") == "1"


def test_a_slightly_better_challenger_needs_the_margin(engine, gate_registry) -> None:
    gate_registry.aliases(champion="1", challenger="2")
    add_labelled_rows(engine, champion="1", challenger="2", n=80, champion_error=0.10,
                      challenger_error=0.095, seed=3)
    result = evaluate_gate(gate_registry.settings(min_rows=50, margin=0.25), gate_registry.client,
                           engine)
    assert not result.passed and result.improvement < 0.25
    assert "needs better by 25.0%" in result.reason


def test_only_request_rows_priced_by_both_versions_count(engine, gate_registry) -> None:
    gate_registry.aliases(champion="1", challenger="2")
    add_labelled_rows(engine, champion="1", challenger="2", n=12, champion_error=0.2,
                      challenger_error=0.05, prefix="both")
    # Other versions' rows, and rows of the pair outside the window, are not compared.
    add_labelled_rows(engine, champion="3", challenger="2", n=20, champion_error=0.2,
                      challenger_error=0.05, prefix="other")
    add_labelled_rows(engine, champion="1", challenger="2", n=20, champion_error=0.2,
                      challenger_error=0.05, prefix="old", at=datetime.now(UTC) - timedelta(days=45))
    paired = paired_rows(engine, "1", "2", since=datetime.now(UTC) - timedelta(days=30))
    assert sorted(paired.request_id) == sorted(f"both-{i}" for i in range(12))
    assert set(paired.columns) >= {"observed_price", "champion_price", "challenger_price"}

    result = evaluate_gate(gate_registry.settings(min_rows=13, window_days=30),
                           gate_registry.client, engine)
    assert not result.passed and result.rows == 12
    assert "12 labelled rows priced by both, the gate needs 13" in result.reason
    assert result.challenger_figure is not None  # the figures so far are given too
    assert "so far" in result.reason


def test_nothing_to_compare_is_refused_with_the_reason(engine, gate_registry) -> None:
    settings = gate_registry.settings(min_rows=1)
    gate_registry.aliases(champion="1", challenger=None)
    assert "has no 'challenger' alias" in evaluate_gate(settings, gate_registry.client,
                                                         engine).reason
    gate_registry.aliases(champion=None, challenger="1")
    same = evaluate_gate(settings, gate_registry.client, engine)
    assert not same.passed and "already the champion" in same.reason
    gate_registry.aliases(champion="1", challenger="2")
    empty = evaluate_gate(settings, gate_registry.client, engine)
    assert not empty.passed and empty.rows == 0 and "0 labelled rows" in empty.reason


def test_a_wrong_gate_config_is_refused_naming_the_key(engine, gate_registry) -> None:
    gate_registry.aliases(champion="1", challenger="2")
    with pytest.raises(ValueError, match="promotion_gate.metric='mape'"):
        evaluate_gate(gate_registry.settings(metric="mape"), gate_registry.client, engine)
    with pytest.raises(ValueError, match="margin from 0 to below 1"):
        evaluate_gate(gate_registry.settings(margin=1.5), gate_registry.client, engine)


def test_the_automatic_policy_is_off_by_default_and_promotes_on_a_pass(
    engine, gate_registry, tmp_path: Path
) -> None:
    gate_registry.aliases(champion="1", challenger="2")
    add_labelled_rows(engine, champion="1", challenger="2", n=60, champion_error=0.2,
                      challenger_error=0.05)
    audit_path = tmp_path / "audit.jsonl"
    settings = gate_registry.settings(min_rows=50)
    settings.audit.path = str(audit_path)
    assert settings.promotion_gate.auto_promote is False
    assert auto_promotion(settings, gate_registry.client, engine) is None
    assert alias_version(gate_registry.client, gate_registry.name, "champion") == "1"

    settings.promotion_gate.auto_promote = True
    outcome = auto_promotion(settings, gate_registry.client, engine)
    assert outcome["promoted"] and (outcome["from_version"], outcome["to_version"]) == ("1", "2")
    assert alias_version(gate_registry.client, gate_registry.name, "champion") == "2"
    last = alias_history(gate_registry.client, gate_registry.name)[-1]
    assert last.actor == "monitoring" and last.comparison["rows"] == 60
    [line] = [json.loads(text) for text in audit_path.read_text().splitlines()]
    assert (line["action"], line["status"], line["model_version"]) == ("promote:gate", "ok", "2")
    assert line["outputs"]["comparison"]["rows"] == 60

    # Promoted: the challenger is the champion now, so the next run has nothing to do.
    again = auto_promotion(settings, gate_registry.client, engine)
    assert not again["promoted"] and "already the champion" in again["detail"]
