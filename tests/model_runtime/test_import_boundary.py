"""What ships inside the model imports only the standard library, itself, and distributions pinned
in the model's requirements: never the rest of the project, Hydra or the training-side libraries."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from valuation.packaging import RUNTIME_DIR, model_requirements

# Project packages and training/serving-side libraries the model runtime must never need.
FORBIDDEN = {"valuation", "serving", "steps", "bench", "tests", "hydra", "omegaconf", "pandera",
             "sqlalchemy", "psycopg2", "fastapi", "redis", "rq", "hvac", "structlog", "typer"}


def absolute_imports(directory: Path) -> list[tuple[str, int, str]]:
    """(file, line, top-level module) for every absolute import in every module, nested ones too."""
    found = []
    for path in sorted(directory.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [(path.name, node.lineno, name.partition(".")[0]) for name in names]
    return found


def undeclared_imports(directory: Path, requirements: list[str]) -> list[str]:
    """Imports of `directory` that are neither stdlib, nor the package itself, nor provided by a
    distribution named in `requirements` (`name==version` lines)."""
    pinned = {line.partition("==")[0].lower() for line in requirements}
    providers = packages_distributions()
    problems = []
    for file, line, module in absolute_imports(directory):
        if module in sys.stdlib_module_names or module in ("__future__", directory.name):
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
    modules = {module for _, _, module in absolute_imports(RUNTIME_DIR)}
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
