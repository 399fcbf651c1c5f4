"""The Prometheus alerting rules in deploy/prometheus/: valid (`promtool check rules`), behaving
as their unit tests say (`promtool test rules`, Debian's `prometheus` package, installed by
`make system-packages`), and written against metrics the code really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from valuation.config import PROJECT_ROOT

RULES = PROJECT_ROOT / "deploy" / "prometheus" / "valuation-alerts.yml"
RULE_TESTS = PROJECT_ROOT / "deploy" / "prometheus" / "tests" / "valuation-alerts.test.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(promtool).exists(), "promtool is missing: run `make system-packages` (as root) " \
                                    "or `sudo apt-get install -y prometheus`"
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout


def test_promtool_runs_the_rule_unit_tests() -> None:
    done = _promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_expectation_fails_the_rule_tests(tmp_path: Path) -> None:
    # The unit tests do test something: a wrong expected label makes promtool fail.
    broken = RULE_TESTS.read_text().replace('feature: net_usable_area}', 'feature: sector}', 1)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / RULE_TESTS.name).write_text(broken)
    shutil.copy(RULES, tmp_path / RULES.name)
    assert _promtool("test", "rules", str(tmp_path / "tests" / RULE_TESTS.name)).returncode != 0


def test_every_metric_in_the_rules_is_exported_by_the_code() -> None:
    expressions = " ".join(rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"]
                           for rule in group["rules"])
    used = set(re.findall(r"\bvaluation_[a-z_]+", expressions))
    source = "".join((PROJECT_ROOT / "serving" / path).read_text()
                     for path in ("monitoring/metrics.py", "prediction_store/writer.py"))
    # A counter family is declared without its _total suffix.
    missing = sorted(name for name in used if name.removesuffix("_total") not in source)
    assert used and missing == []
