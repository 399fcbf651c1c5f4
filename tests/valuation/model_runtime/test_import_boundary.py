"""What ships inside the model imports only the standard library, itself, and distributions pinned
in the model's requirements: never the rest of the project, Hydra or the training-side libraries."""

from __future__ import annotations

import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from tests.support.imports import imports_in
from valuation.packaging import RUNTIME_DIR, model_requirements

# Project packages and training/serving-side libraries the model runtime must never need.
FORBIDDEN = {"valuation", "serving", "steps", "bench", "tests", "hydra", "omegaconf", "pandera",
             "sqlalchemy", "psycopg2", "fastapi", "redis", "rq", "hvac", "structlog", "typer"}


def undeclared_imports(directory: Path, requirements: list[str]) -> list[str]:
    """Imports of `directory` that are neither stdlib, nor the package itself, nor provided by a
    distribution named in `requirements` (`name==version` lines)."""
    pinned = {line.partition("==")[0].lower() for line in requirements}
    providers = packages_distributions()
    problems = []
    for found in imports_in(directory):
        file, line, module = found.file.name, found.line, found.top
        if found.level or module in sys.stdlib_module_names or module in ("__future__", directory.name):
            continue
        if module in FORBIDDEN:
            problems.append(f"{file}:{line} imports {module}, which the model must not need")
        elif not {name.lower() for name in providers.get(module, [])} & pinned:
            problems.append(f"{file}:{line} imports {module} ({providers.get(module)}), not in requirements")
    return problems


def test_every_module_shipped_in_the_model_imports_only_what_its_requirements_pin() -> None:
    requirements = list(model_requirements())
    assert undeclared_imports(RUNTIME_DIR, requirements) == []
    # The walk sees every module that ships, lazy imports inside functions included.
    modules = {found.top for found in imports_in(RUNTIME_DIR) if not found.level}
    assert {"mlflow", "numpy", "pandas", "scipy", "skops", "lightgbm", "pydantic"} <= modules


def test_the_check_catches_an_import_of_the_project_or_of_an_unpinned_distribution(tmp_path: Path) -> None:
    package = tmp_path / "model_runtime"
    package.mkdir()
    (package / "leaky.py").write_text(
        "import json\nfrom . import schema\nfrom valuation.config import PROJECT_ROOT\n"
        "def later():\n    import hydra\n    import yaml\n"
    )
    problems = undeclared_imports(package, ["numpy==2.0"])
    assert problems == [
        "leaky.py:3 imports valuation, which the model must not need",
        "leaky.py:5 imports hydra, which the model must not need",
        f"leaky.py:6 imports yaml ({packages_distributions().get('yaml')}), not in requirements",
    ]


def test_requirements_pin_every_imported_distribution_and_scikit_learn_for_skops() -> None:
    names = [line.partition("==")[0] for line in model_requirements()]
    assert names == sorted(names)
    expected = {"mlflow", "lightgbm", "scikit-learn", "skops", "scipy", "numpy", "pandas", "pydantic"}
    assert set(names) == expected
    assert all("==" in line for line in model_requirements())
