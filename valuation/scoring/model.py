"""The model a scoring job uses: a registered version resolved once (an alias that moves during
the job does not change its answers), loaded with its own row rules from its metadata."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from valuation.model_runtime.extras import METADATA_KEY as EXTRAS_METADATA_KEY
from valuation.model_runtime.validation import ValidationRules

# models:/NAME@ALIAS or models:/NAME/VERSION
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelNotFoundError(ValueError):
    """The model URI names no registered version; the message names the URI."""


@dataclass(frozen=True)
class ScoringModel:
    uri: str  # as given, e.g. models:/property_friends_best_model@champion
    name: str
    version: str
    tracking_uri: str
    rules: ValidationRules
    extras: tuple[str, ...] = ()  # what the model can add to a price (`prediction_extras` metadata)

    @property
    def version_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @cached_property
    def pyfunc(self) -> Any:
        import mlflow

        use_store(self.tracking_uri)
        return mlflow.pyfunc.load_model(self.version_uri)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Prices of rows the rules accept (at most `rules.max_rows`), by the model's own code.

        A model of this project's runtime is called on columns: the same rules and estimator its
        pyfunc runs, without MLflow turning each row of a DataFrame into a typed row first, which
        costs several times the prediction. Any other pyfunc is called as it is."""
        python_model = self.pyfunc.unwrap_python_model()
        fitted = getattr(python_model, "fitted", None)
        if fitted is None or not hasattr(fitted, "predict_columns"):
            return np.asarray(self.pyfunc.predict(features), dtype=np.float64)
        columns = python_model.rules.validate_frame(features)
        return np.asarray(fitted.predict_columns(columns), dtype=np.float64)

    def predict_interval(self, features: pd.DataFrame, level: float) -> PricedWithInterval:
        """Prices and their interval at `level` for rows the rules accept (at most
        `rules.max_rows`): what the pyfunc answers to `params={"interval": level}`.

        A model of this project's runtime is called on columns, with the pieces its pyfunc
        combines (price parts, then the calibration's bounds); any other pyfunc through MLflow,
        its answer (one object per row) read back into columns."""
        python_model = self.pyfunc.unwrap_python_model()
        fitted = getattr(python_model, "fitted", None)
        calibration = getattr(python_model, "calibration", None)
        if fitted is None or calibration is None or not hasattr(fitted, "price_parts"):
            answers = self.pyfunc.predict(features, params={"interval": level})
            return PricedWithInterval(
                np.array([a["price"] for a in answers], dtype=np.float64),
                np.array([a["interval"]["lower"] for a in answers], dtype=np.float64),
                np.array([a["interval"]["upper"] for a in answers], dtype=np.float64))
        columns = python_model.rules.validate_frame(features)
        parts = fitted.price_parts(columns)
        lower, upper = calibration.bounds(fitted, columns, parts, level)
        return PricedWithInterval(np.asarray(parts.price, dtype=np.float64),
                                  np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64))


@dataclass(frozen=True)
class PricedWithInterval:
    price: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def resolve_model(uri: str, tracking_uri: str) -> ScoringModel:
    """The registered version `uri` names, with the rules it was logged with. Raises
    ModelNotFoundError naming the URI and the store."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    match = _MODEL_URI.match(uri)
    if not match:
        raise ModelNotFoundError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    name = match["name"]
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        if match["alias"]:
            version = str(client.get_model_version_by_alias(name, match["alias"]).version)
        else:
            version = str(client.get_model_version(name, match["version"]).version)
    except MlflowException as exc:
        raise ModelNotFoundError(f"{uri}: no such model version in the tracking store "
                                 f"({exc.message.splitlines()[0]})") from None
    use_store(tracking_uri)
    try:
        metadata = get_model_info(f"models:/{name}/{version}").metadata or {}
    except MlflowException as exc:
        raise ModelNotFoundError(f"{uri} (version {version}): cannot read its MLmodel: "
                                 f"{exc.message.splitlines()[0]}") from None
    if "validation_rules" not in metadata:
        raise ModelNotFoundError(f"{uri} (version {version}) has no 'validation_rules' in its "
                                 "metadata; it was not logged by this project's pipeline")
    rules = ValidationRules.from_dict(metadata["validation_rules"])
    extras = tuple(metadata.get(EXTRAS_METADATA_KEY) or ())
    return ScoringModel(uri, name, version, tracking_uri, rules, extras)



def use_store(tracking_uri: str) -> None:
    """Make `tracking_uri` MLflow's store in this process: MLflow resolves a `models:/` URI's
    files through its process-wide tracking and registry URIs, whatever client asked."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
