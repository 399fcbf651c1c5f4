"""faults.json from a real pytest run's junit file, and the fault selections against the real tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from bench.faults import (
    DESCRIPTIONS,
    SELECTIONS,
    Selection,
    build_faults,
    collect,
    docstrings_of,
    parse_collected,
    parse_junit,
    select,
)

SAMPLE_TESTS = '''
import pytest


def test_outage_recovers(record_property):
    """A dependency stopped and started again: the service recovers."""
    record_property("answers_200", 41)
    record_property("kill_to_recovery_s", 2.5)
    record_property("job_error", "WorkerLost: the worker process")


@pytest.mark.parametrize("victim", ["horse", "worker"])
def test_killed_victim(victim):
    assert victim == "horse", "the worker's job stayed started"


def test_needs_something_absent():
    pytest.skip("no bao binary")
'''


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """A real pytest run of SAMPLE_TESTS (a pass with figures, a parametrized fail, a skip)."""
    root = tmp_path_factory.mktemp("faults")
    tests = root / "tests" / "test_sample.py"
    tests.parent.mkdir()
    tests.write_text(SAMPLE_TESTS)
    (root / "tests" / "__init__.py").write_text("")
    (root / "pytest.ini").write_text("[pytest]\n")  # keeps the project's pytest settings out
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    collected = subprocess.run([*base, "--collect-only", "-q", "tests"], cwd=root, capture_output=True,
                               text=True, timeout=120)
    junit = root / "junit.xml"
    run = subprocess.run([*base, "-q", f"--junitxml={junit}", "tests"], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 1, run.stdout[-2000:]  # one test fails
    return root, collected.stdout, junit.read_text()


def test_junit_results_become_faults_json(sample_run):
    root, collect_output, junit = sample_run
    node_ids = parse_collected(collect_output)
    assert node_ids == ["tests/test_sample.py::test_outage_recovers",
                        "tests/test_sample.py::test_killed_victim[horse]",
                        "tests/test_sample.py::test_killed_victim[worker]",
                        "tests/test_sample.py::test_needs_something_absent"]
    selections = [Selection("tests/test_sample.py", ("outage", "killed_victim", "absent")),
                  Selection("tests/test_gone.py")]
    selected, missing = select(node_ids, selections)
    assert selected == node_ids and missing == ["tests/test_gone.py"]

    cases = parse_junit(junit)
    docstrings = docstrings_of(root / "tests" / "test_sample.py")
    assert docstrings == {
        "test_outage_recovers": "A dependency stopped and started again: the service recovers."}
    faults = build_faults(cases, docstrings, [*selected, "tests/test_sample.py::test_never_ran"], missing)
    tests = {t["id"]: t for t in faults["tests"]}
    assert list(tests) == [*node_ids, "tests/test_sample.py::test_never_ran"]

    outage = tests["tests/test_sample.py::test_outage_recovers"]
    assert outage["outcome"] == "passed" and outage["duration_s"] >= 0
    assert outage["description"] == docstrings["test_outage_recovers"]
    assert outage["properties"] == {"answers_200": 41, "kill_to_recovery_s": 2.5,
                                    "job_error": "WorkerLost: the worker process"}
    failed = tests["tests/test_sample.py::test_killed_victim[worker]"]
    assert failed["outcome"] == "failed" and failed["function"] == "test_killed_victim"
    assert "the worker's job stayed started" in failed["message"]
    assert failed["description"] == "killed victim"  # no docstring, no description: its name
    assert tests["tests/test_sample.py::test_killed_victim[horse]"]["outcome"] == "passed"
    skipped = tests["tests/test_sample.py::test_needs_something_absent"]
    assert skipped["outcome"] == "skipped" and "no bao binary" in skipped["message"]
    assert tests["tests/test_sample.py::test_never_ran"]["outcome"] == "not run"
    assert faults["summary"] == {"selected": 5, "passed": 2, "failed": 1, "error": 0, "skipped": 1,
                                 "not run": 1}
    assert faults["all_passed"] is False
    assert faults["missing_selections"] == ["tests/test_gone.py"]


def test_all_passed_needs_every_selection_matched():
    case = {"id": "tests/t.py::test_a", "file": "tests/t.py", "name": "test_a", "outcome": "passed",
            "duration_s": 1.0, "message": None, "properties": {}}
    assert build_faults([case], {}, ["tests/t.py::test_a"], [])["all_passed"] is True
    assert build_faults([case], {}, ["tests/t.py::test_a"], ["tests/u.py"])["all_passed"] is False


def test_every_fault_selection_names_real_tests_each_described():
    selected, missing = collect(SELECTIONS)
    assert missing == []
    functions = {node.partition("::")[2].split("[")[0] for node in selected}
    assert "test_the_counter_is_shared_by_limiters_on_one_redis" not in functions  # no fault in it
    assert {"test_killed_model_server_under_load_gives_only_503_then_recovers",
            "test_a_killed_worker_fails_its_job_and_registers_nothing",
            "test_redis_down_predictions_flow_training_is_503",
            "test_outage_serves_cache_until_ttl_then_fails_closed_then_recovers",
            "test_dead_model_server_is_down_then_restarted",
            "test_broken_versions_are_never_switched_to"} <= functions
    assert functions <= set(DESCRIPTIONS)  # the report says what each one proves
    assert sum("test_a_killed_worker" in node for node in selected) == 3  # horse, worker, both


def test_collected_ids_skip_other_lines():
    output = textwrap.dedent("""\
        tests/a.py::test_x
        tests/a.py::test_y[1-2]

          warnings summary
        2 tests collected in 0.1s
        """)
    assert parse_collected(output) == ["tests/a.py::test_x", "tests/a.py::test_y[1-2]"]
