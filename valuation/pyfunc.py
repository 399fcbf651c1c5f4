"""The custom pyfunc the model server runs: row checks, feature engineering, estimator.

Logged as "models from code" (valuation/model_code.py) with the `valuation` package as code_paths,
so loading it executes our code and reads JSON/npz/LightGBM-text/skops artifacts: no pickle.
"""

from __future__ import annotations

import json
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from valuation.config import PROJECT_ROOT
from valuation.estimators import load_estimator, save_estimator
from valuation.schema import EXAMPLE_ROW, FEATURES
from valuation.validation import RowValidationError, ValidationRules

BUNDLE_ARTIFACT = "bundle"
RULES_FILE = "validation_rules.json"
MODEL_FILE = "model.json"
# Pinned into the logged model so `mlflow models serve` and Docker images rebuild the same stack.
RUNTIME_PACKAGES = ("mlflow", "lightgbm", "scikit-learn", "skops", "scipy", "numpy", "pandas", "omegaconf")

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


class ValuationModel(mlflow.pyfunc.PythonModel):
    """Checks each row, then prices it. Errors name the row and the field."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.fitted, self.rules = load_bundle(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: Any, params: dict | None = None
    ) -> np.ndarray:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            columns = self.rules.validate_frame(frame)
        except RowValidationError as error:
            # INVALID_PARAMETER_VALUE makes `mlflow models serve` answer 400 with this message.
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from error
        return self.fitted.predict_columns(columns)


def pinned_requirements() -> list[str]:
    return [f"{name}=={package_version(name)}" for name in RUNTIME_PACKAGES]


def log_valuation_model(
    fitted: Any,
    rules: ValidationRules,
    estimator_key: str,
    workdir: Path,
    metadata: dict[str, Any],
) -> mlflow.models.model.ModelInfo:
    """Log the pyfunc with signature, input example, pinned requirements and code_paths."""
    from mlflow.models import infer_signature

    bundle = save_bundle(fitted, rules, estimator_key, workdir / BUNDLE_ARTIFACT)
    example = pd.DataFrame([EXAMPLE_ROW])[list(FEATURES)]
    if EXAMPLE_ROW["sector"] not in rules.sectors:  # a model trained without that sector
        example["sector"] = rules.sectors[0]
    prediction = fitted.predict_columns(rules.validate_frame(example))
    signature = infer_signature(example, prediction)
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PROJECT_ROOT / "valuation" / "model_code.py"),
        artifacts={BUNDLE_ARTIFACT: str(bundle)},
        code_paths=[str(PROJECT_ROOT / "valuation")],
        signature=signature,
        input_example=example,
        pip_requirements=pinned_requirements(),
        metadata={"validation_rules": rules.to_dict(), **metadata},
    )
