"""The custom pyfunc the model server runs: row checks, feature engineering, estimator.

Logged as "models from code" (model_code.py beside this file) with this package as the model's only
code_paths, so loading it executes our code and reads JSON/npz/LightGBM-text/skops artifacts: no pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from pydantic import BaseModel, create_model

from .bundle import load_bundle, load_calibration
from .extras import ExtrasAsked, predict_with_extras
from .schema import FEATURES
from .validation import FieldError, RowValidationError

BUNDLE_ARTIFACT = "bundle"


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
        bundle = Path(context.artifacts[BUNDLE_ARTIFACT])
        self.fitted, self.rules = load_bundle(bundle)
        self.calibration = load_calibration(bundle)

    def predict(self, model_input: list[PropertyRow], params: dict[str, Any] | None = None) -> list[float]:
        """Prices in UF; with `params` asking for extras (valuation/model_runtime/extras.py), one
        object per row instead (the declared list[float] is the plain answer)."""
        records = [row if isinstance(row, Mapping) else vars(row) for row in model_input]
        try:
            asked = ExtrasAsked.from_params(params)
            columns = self.rules.validate_records(records)
            if asked.any:
                return predict_with_extras(self.fitted, self.calibration, columns, asked)
        except RowValidationError as error:
            # INVALID_PARAMETER_VALUE makes `mlflow models serve` answer 400 with this message.
            raise MlflowException(str(_as_given(error, model_input)),
                                  error_code=INVALID_PARAMETER_VALUE) from error
        except ValueError as error:  # a param out of range, or an extra this model cannot give
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from error
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
