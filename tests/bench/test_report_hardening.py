"""The report's soak and fault-injection sections, from small result files shaped as the parts write them."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from bench.common import write_result
from bench.faults import build_faults
from bench.report import build_report
from bench.report_hardening import SOAK_PLOT, faults_section, soak_section, target_rows
from bench.soak import SoakPlan, summarize


@pytest.fixture
def soak() -> dict:
    plan = SoakPlan(duration_s=30, warmup_s=3, window_s=10, rss_interval_s=1, probe_s=3)
    outcomes = [(0.01 * i, 4.0 + (i % 100) / 10, "200") for i in range(3000)]
    outcomes += [(12.0, 1.0, "503"), (13.0, 1.0, "503"), (25.0, 10000.0, "ReadTimeout")]
    samples = [{"t_s": float(t), "proxy_mb": 120.0 + (t % 2), "model_server_mb": 640.0} for t in range(30)]
    return {"started_at": "2026-11-26T06:00:00+00:00", "load_avg_1m_at_start": 1.0,
            "data": "synthetic (valuation.synthetic)", "plan": asdict(plan), "load_fraction": 0.8,
            "max_throughput": {"requests_per_s": 125.0, "concurrency": 8, "source": "serving.json"},
            "rate_from_flag": False, "connections": 8, "client_cpu_cores": 0.12,
            **summarize(outcomes, plan, 100.0, samples)}


@pytest.fixture
def faults() -> dict:
    proxy_test = "test_killed_model_server_under_load_gives_only_503_then_recovers"
    cases = [
        {"id": f"tests/stack/test_proxy_faults.py::{proxy_test}", "file": "tests/stack/test_proxy_faults.py",
         "name": proxy_test, "outcome": "passed",
         "duration_s": 95.2, "message": None,
         "properties": {"answers_200": 412, "answers_503": 37, "kill_to_recovery_s": 6.5}},
        {"id": "tests/api/test_worker.py::test_a_killed_worker_fails_its_job_and_registers_nothing[horse]",
         "file": "tests/api/test_worker.py",
         "name": "test_a_killed_worker_fails_its_job_and_registers_nothing[horse]", "outcome": "failed",
         "duration_s": 40.0, "message": "AssertionError: the job stayed started", "properties": {}},
    ]
    body = build_faults(cases, {}, [c["id"] for c in cases], [])
    return {"started_at": "2026-11-26T06:10:00+00:00", "data": "tests' own (synthetic) data",
            "pytest_exit_code": 1, "wall_s": 140.0, **body}


def test_soak_section_shows_rates_errors_p99_and_memory(soak):
    text = soak_section(soak, {"soak": SOAK_PLOT})
    assert text.startswith("## Soak: 0.5 minutes at 100 req/s")
    assert "80% of 125 req/s" in text and "serving part measured (at concurrency 8)" in text
    assert "| errors by status | 503: 2, ReadTimeout: 1 |" in text
    assert "| requests issued / answered 200 | 3,003 / 3,000 |" in text
    assert "| achieved: 200 answers per second | 100 |" in text
    assert "RSS proxy: start / end / max (MB) | 120 / 121 / 121" in text
    assert "RSS model server (tree): start / end / max (MB) | 640 / 640 / 640" in text
    # Verdicts: two 503s and a timeout are errors; p99 stayed put; memory stayed flat.
    assert "| **no** | yes | yes | yes |" in text
    assert text.count("| 0–10 |") == 1 and "| 20–30 |" in text  # every window in the details
    assert f"![soak: p99 per window and memory]({SOAK_PLOT})" in text


def test_faults_section_lists_each_fault_with_outcome_and_figures(faults):
    text = faults_section(faults)
    assert "**1 passed**, 1 failed" in text
    assert ("| Model server SIGKILLed under load through the proxy: only 200/503 answers, no hung request, "
            "automatic restart, predictions resume |") in text
    assert "answers_200 = 412, answers_503 = 37, kill_to_recovery_s = 6.50" in text
    assert "| **failed**: AssertionError: the job stayed started |" in text


def test_targets_rows_for_soak_and_faults(soak, faults):
    rows = {row[0].split(":")[0]: row for row in target_rows(soak, faults)}
    assert rows["soak (0.5 min at 100 req/s)"][1:] == ["3 errors", False]
    assert rows["soak"][2] is True  # memory flat (the last row with that prefix)
    assert rows["fault injection"][1:] == ["1/2 passed", False]
    assert target_rows(None, None) == []


def test_report_places_soak_and_faults_beside_serving(tmp_path, soak, faults):
    write_result(tmp_path, "soak", soak, quick=True)
    write_result(tmp_path, "faults", faults, quick=False)
    text = build_report(tmp_path).read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    names = [h.split(":")[0] for h in headings]
    order = [names.index(name) for name in ("## Serving single rows", "## Soak", "## Fault injection",
                                            "## Where serving time goes")]
    assert order == sorted(order)
    assert "| soak (0.5 min at 100 req/s): zero errors | 3 errors | **no** |" in text
    assert "| fault injection: every fault test passes | 1/2 passed | **no** |" in text
    assert (tmp_path / SOAK_PLOT).stat().st_size > 10_000


def test_report_without_hardening_results_says_how_to_get_them(tmp_path):
    text = build_report(tmp_path).read_text()
    assert "## Soak\n\n_Not measured yet: run `python -m bench.soak`._" in text
    assert "## Fault injection\n\n_Not measured yet: run `python -m bench.faults`._" in text
    assert not (tmp_path / SOAK_PLOT).exists()
