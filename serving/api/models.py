"""POST /best_model (promote the best evaluated run to champion) and GET /models (what is served)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from serving.api import deps
from serving.api.audit import audit, error_detail
from serving.api.auth import require
from serving.api.errors import api_error
from serving.api.schemas import (
    BestModelRequest,
    BestModelResponse,
    ErrorResponse,
    ModelsResponse,
)
from serving.keys.records import KeyRecord
from serving.logging import get_logger
from serving.roles import Capability
from valuation.registry import (
    alias_history,
    alias_version,
    move_alias,
    register_version,
    version_for_source,
)

router = APIRouter(tags=["models"])
log = get_logger("serving.api.models")

EVALUATION_FILTER = "tags.`valuation.step` = 'evaluate' and attributes.status = 'FINISHED'"
MODEL_URI_TAG = "valuation.model_uri"
RUNS_SCANNED = 1000  # runs ordered by the metric: the best is among the first
HISTORY_SHOWN = 20

# Registering a version and moving the alias is one decision: two at once could register twice.
_promotion_lock = threading.Lock()

_AUTH_ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing or unknown API key"},
    403: {"model": ErrorResponse, "description": "The key's role may not do this"},
    429: {"model": ErrorResponse, "description": "Rate limit of this key exceeded (see Retry-After)"},
    503: {"model": ErrorResponse, "description": "The tracking server or key store is down"},
}


def _client(request: Request) -> MlflowClient:
    uri = deps.tracking_uri(request)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@router.post(
    "/best_model",
    response_model=BestModelResponse,
    summary="Make the best evaluated run of an experiment the champion",
    description=(
        "Ranks the experiment's finished evaluation runs by `metrics.test_<metric>` "
        "(`metric_goal` min or max; default max for r2, min otherwise), registers the winning "
        "model if no version has it yet, and moves the `champion` alias to it (recorded in the "
        "alias history with the caller's key id). The model servers switch to it blue/green."
    ),
    responses={
        **_AUTH_ERRORS,
        404: {"model": ErrorResponse, "description": "Unknown experiment, or no evaluated runs"},
        422: {"model": ErrorResponse, "description": "Unknown metric or goal"},
    },
)
def best_model(
    body: BestModelRequest,
    request: Request,
    key: KeyRecord = Depends(require(Capability.BEST_MODEL)),
) -> BestModelResponse:
    started = time.perf_counter()
    inputs = body.model_dump()
    name = deps.settings(request).registry.model_name
    try:
        promoted = _promote_best(body, request, key)
    except Exception as error:  # audited with its status, then answered as before
        audit(request, "promote:best_model", getattr(error, "status_code", 500), key, started,
              model_name=name, inputs=inputs, detail=error_detail(error))
        raise
    audit(request, "promote:best_model", 200, key, started, model_name=name,
          model_version=promoted.version, inputs=inputs, outputs=promoted.model_dump())
    return promoted


def _promote_best(body: BestModelRequest, request: Request, key: KeyRecord) -> BestModelResponse:
    config = body.experiment_config
    metric = f"test_{config.metric}"
    goal = config.metric_goal or ("max" if config.metric == "r2" else "min")
    settings = deps.settings(request)
    name = settings.registry.model_name
    alias = settings.registry.champion_alias
    client = _client(request)
    try:
        best_run, value = _best_run(client, config.experiment_name, metric, goal)
        model_uri = best_run.data.tags[MODEL_URI_TAG]
        with _promotion_lock:
            version = version_for_source(client, name, model_uri)
            registered = version is None
            if version is None:
                version = register_version(
                    client, name, model_uri,
                    tags=_version_tags(best_run, model_uri, metric, value),
                    run_id=_source_run_id(client, model_uri),
                )
            previous = alias_version(client, name, alias)
            move_alias(client, name, alias, version, reason=f"best_model by {metric} ({goal})",
                       actor=key.key_id)
    except MlflowException as error:
        log.error("best_model_mlflow_error", error=str(error))
        raise _mlflow_failure(error) from None
    log.info("best_model_promoted", experiment=config.experiment_name, metric=metric, goal=goal,
             run_id=best_run.info.run_id, version=version, registered=registered,
             previous_version=previous)
    return BestModelResponse(
        model_name=name, version=version, run_id=best_run.info.run_id, metric=metric,
        value=value, alias=alias, registered=registered, previous_version=previous,
    )


def _best_run(client: MlflowClient, experiment_name: str, metric: str, goal: str) -> tuple[Any, float]:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise api_error(404, f"unknown experiment '{experiment_name}'")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=EVALUATION_FILTER,
        order_by=[f"metrics.`{metric}` {'ASC' if goal == 'min' else 'DESC'}"],
        max_results=RUNS_SCANNED,
    )
    candidates = [
        (run, run.data.metrics[metric])
        for run in runs
        if metric in run.data.metrics
        and math.isfinite(run.data.metrics[metric])
        and run.data.tags.get(MODEL_URI_TAG)
    ]
    if not candidates:
        raise api_error(
            404,
            f"experiment '{experiment_name}' has no finished evaluation runs with metric {metric}",
        )
    pick = min if goal == "min" else max
    return pick(candidates, key=lambda candidate: candidate[1])


def _version_tags(run: Any, model_uri: str, metric: str, value: float) -> dict[str, str]:
    tags = {
        MODEL_URI_TAG: model_uri,
        "valuation.evaluation_run_id": run.info.run_id,
        "valuation.registered_by": "best_model",
        "valuation.validated": run.data.tags.get("valuation.validated", "unknown"),
    }
    tags.update({k: f"{v:.6g}" for k, v in run.data.metrics.items() if k.startswith("test_")})
    return tags


def _source_run_id(client: MlflowClient, model_uri: str) -> str | None:
    """The run that logged the model (a logged-model URI models:/m-... or runs:/<id>/...)."""
    if model_uri.startswith("runs:/"):
        return model_uri.split("/")[1]
    if model_uri.startswith("models:/m-"):
        try:
            return client.get_logged_model(model_uri.removeprefix("models:/")).source_run_id
        except MlflowException:
            return None
    return None


@router.get(
    "/models",
    response_model=ModelsResponse,
    summary="What is served: the supervisor's state, aliases and their recent moves",
    responses=_AUTH_ERRORS,
)
def models(
    request: Request,
    key: KeyRecord = Depends(require(Capability.MODEL_STATUS)),
) -> ModelsResponse:
    settings = deps.settings(request)
    registry = settings.registry
    client = _client(request)
    try:
        aliases = {
            alias: alias_version(client, registry.model_name, alias)
            for alias in (registry.champion_alias, registry.challenger_alias)
        }
        history = [asdict(move) for move in alias_history(client, registry.model_name)]
    except MlflowException as error:
        raise _mlflow_failure(error) from None
    return ModelsResponse(
        model_name=registry.model_name,
        serving=deps.supervisor(request).status(),
        aliases=aliases,
        alias_history=history[-HISTORY_SHOWN:],
    )


def _mlflow_failure(error: MlflowException) -> Exception:
    """A refusal of the request's own values by MLflow is the client's (422); anything else means
    the tracking server could not do its part (503, retry later)."""
    if error.error_code == "INVALID_PARAMETER_VALUE":
        return api_error(422, f"MLflow refused the request: {error.message}")
    return api_error(503, f"the MLflow tracking server failed: {error.message}")
