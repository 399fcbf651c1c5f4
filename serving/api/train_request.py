"""Translate a /train body into the MLflow Project's parameters (`model` and `overrides`).

Every part of the body is optional: an omitted part keeps the Hydra defaults of conf/. What a body
may ask for is checked here, before anything is enqueued: the estimator must be in the allowlist
(nothing named by a request is ever imported), parameters must be known to it and scalar, data
columns must be ours, and source settings must be among the few each source accepts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from omegaconf import OmegaConf

from serving.api.overrides import (
    UnsafeOverrideValue,
    hydra_override,
    join_overrides,
    split_overrides,
)
from serving.api.schemas import DB_CONFIG_KEYS, DataConfig, DbConfig, PipelineConfig, TrainRequest
from valuation.config import CONFIG_DIR, load_config
from valuation.estimators import EstimatorNotAllowed, allowed_params, resolve_estimator
from valuation.model_runtime.schema import CATEGORICAL_FEATURES, FEATURES, TARGET

# Hydra's compose API keeps global state: one composition at a time.
_compose_lock = threading.Lock()


class TrainRequestError(ValueError):
    """A part of a /train body that cannot be honoured; `field` is its dotted path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TrainingParameters:
    """What the worker passes to `mlflow.projects.run` (entry point `main`)."""

    model: str  # conf/model/ group; "" keeps the default
    overrides: str  # Hydra overrides, one shell-quoted string
    experiment_name: str


def to_training_parameters(request: TrainRequest) -> TrainingParameters:
    """Check `request` and build the Project parameters; raises TrainRequestError."""
    overrides: list[str] = []
    if request.experiment_config and request.experiment_config.experiment_name is not None:
        name = request.experiment_config.experiment_name.strip()
        if not name:
            raise TrainRequestError("experiment_config.experiment_name", "must not be empty")
        overrides.append(_override("experiment_config.experiment_name", "experiment_name", name))
    if request.data_config is not None:
        _check_data_config(request.data_config)
    if request.db_config is not None:
        overrides += _source_overrides(request.db_config)
    model_group = ""
    if request.pipeline_config is not None:
        model_group, param_overrides = _model_overrides(request.pipeline_config)
        overrides += param_overrides
    joined = join_overrides(overrides)
    experiment_name = _compose_experiment_name(model_group, joined)
    return TrainingParameters(model=model_group, overrides=joined, experiment_name=experiment_name)


def _override(field: str, key: str, value: object, *, force_add: bool = False) -> str:
    try:
        return hydra_override(key, value, force_add=force_add)
    except UnsafeOverrideValue as error:
        raise TrainRequestError(field, str(error)) from None


def _check_data_config(data: DataConfig) -> None:
    # The model's columns are fixed by the schema; the spec's body restates them. Anything else
    # would train a model the API and the pyfunc cannot validate, so it is refused, not ignored.
    expected = {
        "categorical_columns": list(CATEGORICAL_FEATURES),
        "train_cols": list(FEATURES),
    }
    for field, wanted in expected.items():
        given = getattr(data, field)
        if given is None:
            continue
        if len(given) != len(set(given)) or set(given) != set(wanted):
            raise TrainRequestError(
                f"data_config.{field}",
                f"must list exactly the columns {', '.join(wanted)} (got {', '.join(given)})",
            )
    if data.target is not None and data.target != TARGET:
        raise TrainRequestError("data_config.target", f"must be '{TARGET}' (got '{data.target}')")


def _source_overrides(db: DbConfig) -> list[str]:
    allowed = DB_CONFIG_KEYS[db.db_type]
    overrides = [f"data={db.db_type}"]
    for key, value in db.db_config.items():
        field = f"db_config.db_config.{key}"
        if key not in allowed:
            raise TrainRequestError(
                field,
                f"not accepted for db_type '{db.db_type}'; allowed: {', '.join(allowed)}",
            )
        wanted = allowed[key]
        if wanted is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TrainRequestError(field, "must be a non-negative integer")
        elif not isinstance(value, str) or not value.strip():
            raise TrainRequestError(field, "must be a non-empty string")
        overrides.append(_override(field, f"data.{key}", value))
    return overrides


def _model_overrides(pipeline: PipelineConfig) -> tuple[str, list[str]]:
    try:
        spec = resolve_estimator(pipeline.model_module, pipeline.model)
    except EstimatorNotAllowed as error:
        raise TrainRequestError("pipeline_config.model", str(error)) from None
    known = allowed_params(spec.key)
    declared = _group_params(spec.model_group)
    overrides = []
    for name, value in pipeline.params.items():
        field = f"pipeline_config.params.{name}"
        if name not in known:
            raise TrainRequestError(
                field,
                f"not a parameter of {spec.module}.{spec.class_name}; "
                f"known: {', '.join(sorted(known))}",
            )
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TrainRequestError(
                field, f"must be a number, string, boolean or null (got {type(value).__name__})"
            )
        # `++` adds a parameter the group's YAML does not list (Hydra refuses plain `key=`).
        overrides.append(
            _override(field, f"model.params.{name}", value, force_add=name not in declared)
        )
    return spec.model_group, overrides


def _group_params(model_group: str) -> set[str]:
    group = OmegaConf.load(CONFIG_DIR / "model" / f"{model_group}.yaml")
    params = group.get("params") or {}
    return set(params)


def _compose_experiment_name(model_group: str, overrides: str) -> str:
    """Compose the config the worker will run; a request Hydra rejects is refused here."""
    hydra_overrides = ([f"model={model_group}"] if model_group else []) + split_overrides(overrides)
    try:
        with _compose_lock:
            cfg = load_config(hydra_overrides)
    except Exception as error:  # Hydra raises several types; all mean "this request is invalid"
        raise TrainRequestError("body", f"the training configuration does not compose: {error}") from None
    return str(cfg.experiment_name)

