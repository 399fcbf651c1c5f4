"""The report writer on a real (tiny) measurement: a quick pyfunc-latency run on synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.common import PROJECT_ROOT
from bench.report import REPORT_FILE, build_report, format_cell


@pytest.mark.slow
def test_report_from_a_quick_synthetic_run_has_every_section(tmp_path):
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "bench.pyfunc_latency", "--quick", "--synthetic", "400",
         "--results-dir", str(results)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    measured = json.loads((results / "pyfunc_latency.json").read_text())
    assert measured["quick"] is True and measured["data"].startswith("synthetic")
    assert measured["rows_timed"] > 50
    latency = measured["latency"]
    assert set(latency) >= {"pyfunc_predict", "sklearn_pipeline_predict", "python_model_predict"}
    assert all(v["p50_ms"] > 0 and v["p95_ms"] >= v["p50_ms"] for v in latency.values())
    assert (results / "pyfunc_profile.txt").read_text().count("ValuationModel.predict") >= 1

    report = build_report(results)
    assert report.name == REPORT_FILE
    text = report.read_text()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    for heading in ("# Benchmark report", "## Targets", "## Serving single rows",
                    "## Where serving time goes", "## One row in process", "## Batches", "## Training cost",
                    "## Batch scoring", "## Quality", "## What each change bought", "## Reproduce"):
        assert any(h.startswith(heading) for h in headings), heading
    assert "| cores |" in text and "quick smoke run" in text
    # The measured part is filled in; the parts not run say how to run them, with no numbers made up.
    pyfunc_row = next(line for line in text.splitlines() if line.startswith("| (a) `mlflow.pyfunc"))
    assert format_cell(latency["pyfunc_predict"]["p50_ms"]) in pyfunc_row
    assert "_Not measured yet: run `python -m bench.serving`._" in text
    assert "_Not measured yet: run `python -m bench.batches`._" in text


def test_proxy_floor_section_lists_each_forwarder_against_the_direct_p50():
    from bench.report import _proxy_floor

    def level(rps, p50):
        return {"requests_per_s": rps, "p50_ms": p50}

    result = {
        "started_at": "2026-11-26T07:30:00+00:00", "data": "real (client CSVs)",
        "plan": {"concurrency": [1], "duration_s": 20},
        "results": {"direct": {"1": level(900.0, 1.0)}, "bare_starlette": {"1": level(600.0, 1.6)},
                    "bare_fastapi": {"1": level(610.0, 1.55)}, "proxy": {"1": level(480.0, 2.0)}},
        "p50_over_direct": {"1": {"bare_starlette": 1.6, "bare_fastapi": 1.55, "proxy": 2.0}},
    }
    text = _proxy_floor(result)
    assert text.startswith("## The floor of one Python proxy hop")
    assert "| 1 | bare Starlette forwarder | 600 | 1.60 | 1.00 | 1.60 |" in text
    assert "| 1 | the project's proxy | 480 | 2.00 | 1.00 | 2.00 |" in text
    assert "python -m bench.proxy_floor" in _proxy_floor(None)


def test_replicas_section_gives_each_configuration_its_cpu_and_ceiling():
    from bench.report_replicas import replicas_section

    def level(rps, cpu_ms, cores):
        return {"requests_per_s": rps, "p50_ms": 10.0, "p99_ms": 100.0, "errors": 0,
                "server_cpu_ms_per_request": cpu_ms, "server_cpu_cores": cores}

    result = {
        "started_at": "2026-12-02T11:00:00+00:00", "data": "real (client CSVs)",
        "machine": {"cores": 2},
        "results": {"nginx + one proxy": {"8": level(300.0, 2.0, 0.6)},
                    "nginx + two proxies": {"8": level(450.0, 2.5, 1.1)}},
        "two_over_one": {"8": 1.5},
    }
    text = replicas_section(result)
    assert text.startswith("## Proxy replicas behind nginx")
    # ceiling: 2 cores x 1000 / 2.5 ms per request
    assert "| nginx + two proxies | 8 | 450 | 10.0 | 100 | 0 | 2.50 | 1.10 | 800 |" in text
    assert "1.50× at concurrency 8" in text and "on 2 cores" in text
    assert "python -m bench.replicas" in replicas_section(None)


def test_scoring_section_shows_each_run_and_the_local_engines_memory_growth():
    from bench.report import _scoring

    def run(engine, rows, wall_s, peak_mb):
        return {"engine": engine, "rows": rows, "ok": True, "wall_s": wall_s, "rows_per_s": rows / wall_s,
                "peak_tree_rss_mb": peak_mb}

    result = {"started_at": "2026-12-02T11:00:00+00:00", "data": "synthetic", "portfolio": None,
              "runs": [run("local", 1_000_000, 20.0, 400.0), run("local", 10_000_000, 200.0, 440.0),
                       run("spark", 1_000_000, 80.0, 1500.0),
                       run("pyfunc.predict (in memory)", 1_000_000, 10.0, 900.0)]}
    text = _scoring(result)
    assert text.startswith("## Batch scoring")
    assert "| local | 10,000,000 |" in text and "| spark | 1,000,000 |" in text
    assert "400 MB → 440 MB (1.10×)" in text
    assert "_Not measured yet: run `python -m bench.scoring`._" in _scoring(None)
