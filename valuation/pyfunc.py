"""The custom pyfunc the model server runs: row checks, feature engineering, estimator.

Logged as "models from code" (valuation/model_code.py) with the `valuation` package as code_paths,
so loading it executes our code and reads JSON/npz/LightGBM-text/skops artifacts: no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from pydantic import BaseModel, create_model

from valuation.config import PROJECT_ROOT
from valuation.estimators import load_estimator, save_estimator
from valuation.schema import EXAMPLE_ROW, FEATURES
from valuation.validation import FieldError, RowValidationError, ValidationRules

BUNDLE_ARTIFACT = "bundle"
RULES_FILE = "validation_rules.json"
MODEL_FILE = "model.json"
# Pinned into the logged model so `mlflow models serve` and Docker images rebuild the same stack.
RUNTIME_PACKAGES = ("mlflow", "lightgbm", "scikit-learn", "skops", "scipy", "numpy", "pandas", "pydantic",
                    "omegaconf")

def save_bundle(fitted: Any, rules: ValidationRules, estimator_key: str, directory: Path) -> Path:
    """Write everything the pyfunc needs into one directory (JSON, npz, native model files)."""
    directory.mkdir(parents=True, exist_ok=True)
    fitted.encoder.save(directory / "encoder")
    save_estimator(fitted.estimator, directory / "estimator", estimator_key)
    (directory / MODEL_FILE).write_text(
        json.dumps({"target_transform": fitted.target_transform, "estimator": estimator_key})
    )
    (directory / RULES_FILE).write_text(json.dumps(rules.to_dict(), indent=2))
    return directory


def load_bundle(directory: Path) -> tuple[Any, ValidationRules]:
    from valuation.features import FeatureEncoder
    from valuation.training import FittedModel

    meta = json.loads((directory / MODEL_FILE).read_text())
    fitted = FittedModel(
        encoder=FeatureEncoder.load(directory / "encoder"),
        estimator=load_estimator(directory / "estimator"),
        target_transform=meta["target_transform"],
    )
    rules = ValidationRules.from_dict(json.loads((directory / RULES_FILE).read_text()))
    return fitted, rules


# One property as the model takes it. The fields accept any JSON value on purpose: MLflow's own
# type check would answer a wrong type with its message, before ours; ValidationRules judge every
# value instead, with the messages the API gives (row, field, why). The rules themselves travel in
# the model metadata (`validation_rules`).
PropertyRow = create_model(
    "PropertyRow",
    __doc__="One property: the eight features (checked by ValidationRules, not by type).",
    **{name: (Any, None) for name in FEATURES},
)


class ValuationModel(mlflow.pyfunc.PythonModel):
    """Checks each row, then prices it. Errors name the row and the field.

    The input is declared with a type hint (a list of PropertyRow), so MLflow derives the signature
    from it and skips its DataFrame schema enforcement, which cost more than our whole prediction
    for one row; `mlflow models serve` takes `{"inputs": [{...}, ...]}` and no DataFrame is built.
    A DataFrame passed to `predict` (evaluation, notebooks) is turned into rows by MLflow.
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.fitted, self.rules = load_bundle(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, model_input: list[PropertyRow], params: dict[str, Any] | None = None) -> list[float]:
        records = [row if isinstance(row, Mapping) else vars(row) for row in model_input]
        try:
            columns = self.rules.validate_records(records)
        except RowValidationError as error:
            # INVALID_PARAMETER_VALUE makes `mlflow models serve` answer 400 with this message.
            raise MlflowException(str(_as_given(error, model_input)),
                                  error_code=INVALID_PARAMETER_VALUE) from error
        return self.fitted.predict_columns(columns).tolist()


def _as_given(error: RowValidationError, model_input: Sequence[Any]) -> RowValidationError:
    """`error` with a field the caller left out reported as missing, not as null (a PropertyRow
    holds None for it); only the bad rows are looked at again."""
    if not any(isinstance(row, BaseModel) for row in model_input):
        return error
    errors = []
    for found in error.errors:
        row = model_input[found.row] if found.row is not None else None
        if isinstance(row, BaseModel) and found.field not in row.model_fields_set:
            found = FieldError(found.row, found.field, "is required")
        errors.append(found)
    return RowValidationError(errors, total=error.total)


def pinned_requirements() -> list[str]:
    return [f"{name}=={package_version(name)}" for name in RUNTIME_PACKAGES]


def log_valuation_model(
    fitted: Any,
    rules: ValidationRules,
    estimator_key: str,
    workdir: Path,
    metadata: dict[str, Any],
) -> mlflow.models.model.ModelInfo:
    """Log the pyfunc with signature, input example, pinned requirements and code_paths.

    The signature comes from ValuationModel.predict's type hints; MLflow checks the input example
    against it by predicting it at log time.
    """
    bundle = save_bundle(fitted, rules, estimator_key, workdir / BUNDLE_ARTIFACT)
    example = {name: EXAMPLE_ROW[name] for name in FEATURES}
    if example["sector"] not in rules.sectors:  # a model trained without that sector
        example["sector"] = rules.sectors[0]
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PROJECT_ROOT / "valuation" / "model_code.py"),
        artifacts={BUNDLE_ARTIFACT: str(bundle)},
        code_paths=[str(PROJECT_ROOT / "valuation")],
        input_example=[example],
        pip_requirements=pinned_requirements(),
        metadata={"validation_rules": rules.to_dict(), **metadata},
    )
