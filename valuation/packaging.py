"""Log the pyfunc: its code (valuation.model_runtime alone), artifacts, signature, input example and
the requirements derived from what that code imports."""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.metadata import packages_distributions
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow

from valuation import model_runtime
from valuation.model_runtime.bundle import save_bundle
from valuation.model_runtime.extras import METADATA_KEY, PARAMS_DEFAULTS, available_extras
from valuation.model_runtime.fitted import FittedModel
from valuation.model_runtime.intervals import IntervalCalibration
from valuation.model_runtime.pyfunc import BUNDLE_ARTIFACT
from valuation.model_runtime.schema import EXAMPLE_ROW, FEATURES
from valuation.model_runtime.validation import ValidationRules

RUNTIME_DIR = Path(model_runtime.__file__).resolve().parent
RUNTIME_PACKAGE = RUNTIME_DIR.name  # its import name inside a deployed model
MODEL_CODE_FILE = "model_code.py"

# Distributions the runtime needs that no import statement names.
IMPLICIT_REQUIREMENTS = {
    # skops rebuilds stored scikit-learn estimators by class name: the version that fitted them.
    "scikit-learn": "skops",
}
# Where a module ships in several distributions, the one the model needs. The `mlflow` module
# comes from mlflow-skinny; the full `mlflow` adds what `mlflow models serve` runs on.
CHOSEN_DISTRIBUTION = {"mlflow": "mlflow"}


def imported_modules(directory: Path = RUNTIME_DIR) -> dict[str, set[str]]:
    """Top-level names of the absolute imports in every module under `directory`, each with the
    files that import it (stdlib and the package's own relative imports left out)."""
    found: dict[str, set[str]] = {}
    own = directory.name
    for path in sorted(directory.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top in sys.stdlib_module_names or top in (own, "__future__"):
                    continue
                found.setdefault(top, set()).add(path.name)
    return found


def distribution_of(module: str) -> str:
    """The installed distribution that provides top-level `module`."""
    if module in CHOSEN_DISTRIBUTION:
        return CHOSEN_DISTRIBUTION[module]
    candidates = packages_distributions().get(module, [])
    if len(set(candidates)) != 1:
        provided = ", ".join(candidates) or "no installed distribution"
        raise RuntimeError(f"model_runtime imports {module!r}, provided by {provided}: "
                           "name its distribution in valuation.packaging.CHOSEN_DISTRIBUTION")
    return candidates[0]


@cache
def model_requirements() -> tuple[str, ...]:
    """`name==version` for every distribution the runtime imports (plus the implicit ones), at the
    versions installed here, which trained the model."""
    names = {distribution_of(module) for module in imported_modules()} | set(IMPLICIT_REQUIREMENTS)
    return tuple(f"{name}=={package_version(name)}" for name in sorted(names))


def log_valuation_model(
    fitted: FittedModel,
    rules: ValidationRules,
    estimator_key: str,
    workdir: Path,
    metadata: dict[str, Any],
    calibration: IntervalCalibration | None = None,
) -> mlflow.models.model.ModelInfo:
    """Log the pyfunc with signature, input example, pinned requirements and code_paths.

    The signature comes from ValuationModel.predict's type hints; MLflow checks the input example
    against it by predicting it at log time. The example's params (PARAMS_DEFAULTS, nothing asked)
    become the signature's params schema, so the model server accepts `params` for the extras.
    """
    bundle = save_bundle(fitted, rules, estimator_key, workdir / BUNDLE_ARTIFACT, calibration)
    example = {name: EXAMPLE_ROW[name] for name in FEATURES}
    if example["sector"] not in rules.sectors:  # a model trained without that sector
        example["sector"] = rules.sectors[0]
    package = stage_runtime(workdir / "code")
    with importable(package.parent):
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(package / MODEL_CODE_FILE),
            artifacts={BUNDLE_ARTIFACT: str(bundle)},
            code_paths=[str(package)],
            input_example=([example], dict(PARAMS_DEFAULTS)),
            pip_requirements=list(model_requirements()),
            metadata={"validation_rules": rules.to_dict(),
                      METADATA_KEY: available_extras(fitted, calibration), **metadata},
        )


def stage_runtime(code_dir: Path) -> Path:
    """A clean copy of the runtime package (no bytecode caches) under `code_dir`: what ships."""
    package = code_dir / RUNTIME_PACKAGE
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(RUNTIME_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    return package


@contextmanager
def importable(code_dir: Path) -> Iterator[None]:
    """`code_dir` on sys.path while MLflow runs the entry file at log time, as a model server puts
    the model's code directory on it at load time (the entry file imports `model_runtime`)."""
    sys.path.insert(0, str(code_dir))
    try:
        yield
    finally:
        sys.path.remove(str(code_dir))
