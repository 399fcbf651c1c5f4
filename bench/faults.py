"""Fault injection: the tests that break a real dependency under the service, run as one pytest process.

    python -m bench.faults [--results-dir DIR] [--quick]

Collects the selected tests (a selection that matches none is reported as missing, not skipped
quietly), runs them in one pytest process with `--junitxml`, and writes faults.json: each test's
outcome, duration, the fault it proves (its docstring's first line, else the description below)
and the figures it records with `record_property` (e.g. how many 200s and 503s a killed model
server caused). `--quick` changes nothing: the tests are as short as they can be already.
"""

from __future__ import annotations

import ast
import contextlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET  # noqa: S405 - parses the junit file our own pytest run wrote
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, BenchError, parser, progress, results_dir, start_stamp, write_result
from bench.processes import run_part

RESULT_NAME = "faults"
PYTEST_TIMEOUT_S = 3 * 3600  # every selected test together; each starts real servers or trains


@dataclass(frozen=True)
class Selection:
    """Tests of one file: those whose function name contains one of `names` (all when empty)."""

    path: str
    names: tuple[str, ...] = ()

    def matches(self, node_id: str) -> bool:
        path, _, name = node_id.partition("::")
        return path == self.path and (not self.names or any(n in function_name(name) for n in self.names))

    def describe(self) -> str:
        return self.path + (f" -k \"{' or '.join(self.names)}\"" if self.names else "")


SELECTIONS = (
    Selection("tests/serving/model_servers/test_proxy_faults.py"),
    Selection("tests/serving/jobs/test_worker.py", ("killed_worker",)),
    # Not the whole "redis" match: test_the_counter_is_shared_by_limiters_on_one_redis breaks nothing.
    Selection("tests/serving/api/test_rate_limit.py", ("redis_down", "redis_kill")),
    Selection("tests/serving/keys/test_vault_outage.py"),
    Selection("tests/serving/model_servers/test_model_server.py", ("dead_model_server", "broken_versions")),
)
# The fault each test proves, for tests without a docstring (keyed by test function name).
DESCRIPTIONS = {
    "test_killed_model_server_under_load_gives_only_503_then_recovers":
        "Model server SIGKILLed under load through the proxy: only 200/503 answers, no hung request, "
        "automatic restart, predictions resume",
    "test_a_killed_worker_fails_its_job_and_registers_nothing":
        "Training worker and/or its work horse SIGKILLed mid-training: the job ends failed with the "
        "reason, never stays started; the run is killed and nothing is registered",
    "test_redis_down_predictions_flow_training_is_503":
        "Redis killed: /predict keeps answering (rate limit fails open, logged), /train answers 503 "
        "with a message; limits and training return with Redis",
    "test_a_queued_job_survives_a_redis_kill_and_then_runs":
        "Redis SIGKILLed with a training job queued: the job survives (append-only file) and runs to "
        "a registered version once Redis is back",
    "test_outage_serves_cache_until_ttl_then_fails_closed_then_recovers":
        "Vault (OpenBao) stopped: cached keys work until their TTL, then the key store fails closed "
        "(503); it recovers when Vault returns",
    "test_approle_token_near_expiry_is_replaced_before_use":
        "Vault token close to expiry: a new AppRole login before the token is used",
    "test_expired_approle_token_is_replaced_after_403":
        "Vault token expired under the store: Vault's 403 leads to a new login and the read is retried",
    "test_dead_model_server_is_down_then_restarted":
        "Model server SIGKILLed: the supervisor reports down, then restarts it and serves again",
    "test_broken_versions_are_never_switched_to":
        "Champion moved to a version whose artifacts fail to load or are missing: never switched to, "
        "the old version keeps serving",
}


def function_name(name: str) -> str:
    """`test_x[param]` -> `test_x`."""
    return name.split("[", 1)[0]


# --- pure parts -----------------------------------------------------------------------------------

def parse_collected(output: str) -> list[str]:
    """Node ids from `pytest --collect-only -q` output."""
    return [line.strip() for line in output.splitlines() if "::" in line and not line.startswith(" ")]


def select(node_ids: Iterable[str], selections: Sequence[Selection]) -> tuple[list[str], list[str]]:
    """The node ids some selection matches (in collection order), and the selections matching none."""
    node_ids = list(node_ids)
    chosen = [n for n in node_ids if any(s.matches(n) for s in selections)]
    missing = [s.describe() for s in selections if not any(s.matches(n) for n in node_ids)]
    return chosen, missing


def docstrings_of(path: Path) -> dict[str, str]:
    """First docstring line of each test function in a test file, by name."""
    tree = ast.parse(Path(path).read_text())
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            doc = ast.get_docstring(node)
            if doc:
                out[node.name] = doc.strip().splitlines()[0]
    return out


def parse_junit(xml_text: str) -> list[dict[str, Any]]:
    """One entry per testcase of a pytest junit file: id, outcome, duration, message, properties."""
    root = ET.fromstring(xml_text)  # noqa: S314 - our own pytest run's output, not untrusted input
    cases = []
    for case in root.iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        module_parts = [p for p in classname.split(".") if p]
        # classname is "tests.serving.jobs.test_worker" (or "...test_x.TestClass" for a method).
        while module_parts and not module_parts[-1].startswith("test_"):
            module_parts.pop()
        path = "/".join(module_parts) + ".py" if module_parts else classname
        outcome, message = "passed", None
        for tag, label in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            found = case.find(tag)
            if found is not None:
                outcome, message = label, (found.get("message") or found.text or "").strip()
                break
        cases.append({
            "id": f"{path}::{name}", "file": path, "name": name, "function": function_name(name),
            "outcome": outcome, "duration_s": float(case.get("time") or 0.0),
            "message": _first_line(message) if message else None,
            "properties": {p.get("name"): _number(p.get("value")) for p in case.iter("property")},
        })
    return cases


def build_faults(cases: Sequence[Mapping[str, Any]], docstrings: Mapping[str, str],
                 selected: Sequence[str], missing: Sequence[str]) -> dict[str, Any]:
    """faults.json's body: every selected test with the fault it proves; a selected test with no
    result (pytest died, or a timeout) is listed as not run."""
    by_id = {c["id"]: c for c in cases}
    tests = []
    for node_id in selected:
        case = by_id.get(node_id) or {"id": node_id, "file": node_id.partition("::")[0],
                                      "name": node_id.partition("::")[2], "outcome": "not run",
                                      "duration_s": None, "message": None, "properties": {}}
        function = function_name(case["name"])
        tests.append({**case, "function": function,
                      "description": docstrings.get(function) or DESCRIPTIONS.get(function)
                      or function.removeprefix("test_").replace("_", " ")})
    outcomes = Counter(t["outcome"] for t in tests)
    return {
        "selections": [s.describe() for s in SELECTIONS],
        "missing_selections": list(missing),
        "tests": tests,
        "summary": {"selected": len(tests), **{k: outcomes.get(k, 0) for k in
                                               ("passed", "failed", "error", "skipped", "not run")}},
        "all_passed": bool(tests) and not missing and outcomes.get("passed", 0) == len(tests),
    }


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]


def _number(value: str | None) -> Any:
    if value is not None and re.fullmatch(r"-?\d+", value):
        return int(value)
    if value is not None and re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", value):
        return float(value)
    return value


# --- the part --------------------------------------------------------------------------------------

def pytest_command(*args: str) -> list[str]:
    # -p no:cacheprovider: a bench run leaves the project's .pytest_cache as it was.
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def collect(selections: Sequence[Selection]) -> tuple[list[str], list[str]]:
    paths = sorted({s.path for s in selections if (PROJECT_ROOT / s.path).is_file()})
    output = ""
    if paths:
        done = subprocess.run(pytest_command("--collect-only", "-q", *paths), cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=600)
        if done.returncode not in (0, 5):  # 5: nothing collected
            raise BenchError(f"collecting the fault tests failed:\n{(done.stdout + done.stderr)[-3000:]}")
        output = done.stdout
    return select(parse_collected(output), selections)


def run_pytest(command: list[str]) -> int | str:
    """Run pytest to the end; its exit code. Interrupted, pytest gets SIGINT so that its fixtures
    stop the servers they started (SIGKILL would leave them running)."""
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT)
    try:
        return proc.wait(timeout=PYTEST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _interrupt(proc)
        return f"timed out after {PYTEST_TIMEOUT_S} s"
    except KeyboardInterrupt:
        _interrupt(proc)
        raise


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)  # Ctrl-C reached pytest too: let it tear down on its own
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: Any) -> dict[str, Any]:
    stamp = start_stamp()
    selected, missing = collect(SELECTIONS)
    for described in missing:
        progress(f"faults: no test matches {described}")
    if not selected:
        raise BenchError("no fault-injection test found")
    progress(f"faults: running {len(selected)} tests in one pytest process")
    docstrings: dict[str, str] = {}
    for path in {n.partition("::")[0] for n in selected}:
        docstrings.update(docstrings_of(PROJECT_ROOT / path))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        junit = Path(tmp) / "faults.xml"
        exit_code = run_pytest(pytest_command("-q", "-rA", f"--junitxml={junit}", *selected))
        cases = parse_junit(junit.read_text()) if junit.is_file() else []
    data = {**stamp, "data": "tests' own (synthetic) data", "pytest_exit_code": exit_code,
            "wall_s": time.monotonic() - started,
            "command": "pytest " + " ".join(s.describe() for s in SELECTIONS),
            **build_faults(cases, docstrings, selected, missing)}
    # Not marked quick even under --quick: the same tests run in full either way.
    path = write_result(results_dir(args), RESULT_NAME, data, quick=False)
    summary = data["summary"]
    progress(f"faults: {summary['passed']}/{summary['selected']} passed, {summary['failed']} failed, "
             f"{summary['error']} errors, {summary['skipped']} skipped; wrote {path}")
    return data


def main() -> None:
    run_part(run, parser(__doc__.split("\n\n")[0]))


if __name__ == "__main__":
    main()
