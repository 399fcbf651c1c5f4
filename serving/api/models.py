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
from serving.api.errors import AUTH_ERRORS, api_error, error_responses, invalid
from serving.api.schemas import BestModelRequest, BestModelResponse, ModelsResponse
from serving.keys.records import KeyRecord
from serving.logging import get_logger
from serving.roles import Capability
from serving.settings import ServingSettings
from valuation.metrics import LOWER_IS_BETTER
from valuation.names import (
    EVALUATE_STEP,
    EVALUATION_RUN_ID_TAG,
    FAILED_THRESHOLDS_TAG,
    MODEL_URI_TAG,
    REGISTERED_BY_TAG,
    STEP_TAG,
    TEST_METRIC_PREFIX,
    VALIDATED_TAG,
    evaluation_metric,
)
from valuation.registry import (
    alias_history,
    alias_version,
    evaluation_metric_tags,
    move_alias,
    register_version,
    version_for_source,
)

router = APIRouter(tags=["models"])
log = get_logger("serving.api.models")

EVALUATION_FILTER = f"tags.`{STEP_TAG}` = '{EVALUATE_STEP}' and attributes.status = 'FINISHED'"
RUNS_SCANNED = 1000  # runs ordered by the metric: the best is among the first
HISTORY_SHOWN = 20

# Registering a version and moving the alias is one decision: two at once could register twice.
_promotion_lock = threading.Lock()

_ERRORS = {**AUTH_ERRORS, 503: "The tracking server or key store is down"}


def _client(settings: ServingSettings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


@router.post(
    "/best_model",
    response_model=BestModelResponse,
    summary="Make the best evaluated run of an experiment the champion",
    description=(
        "Ranks the experiment's finished evaluation runs by `metrics.test_<metric>` "
        "(`metric_goal` min or max; default max for r2, min otherwise), registers the winning "
        "model if no version has it yet, and moves the `champion` alias to it (recorded in the "
        "alias history with the caller's key id). The model servers switch to it blue/green. "
        "A winner that failed evaluate's thresholds is refused (409, naming them), as `register` "
        "refuses it, unless the body says `\"force\": true`."
    ),
    responses=error_responses({
        **_ERRORS,
        404: "Unknown experiment, or no evaluated runs",
        409: "The best run failed evaluate's thresholds (send force: true to promote it anyway)",
        422: "Unknown metric or goal",
    }),
)
def best_model(
    body: BestModelRequest,
    request: Request,
    key: KeyRecord = Depends(require(Capability.BEST_MODEL)),
    settings: ServingSettings = Depends(deps.settings),
) -> BestModelResponse:
    started = time.perf_counter()
    inputs = body.model_dump()
    name = settings.registry.model_name
    try:
        promoted = _promote_best(body, settings, key)
    except Exception as error:  # audited with its status, then answered as before
        audit(request, "promote:best_model", getattr(error, "status_code", 500), key, started,
              model_name=name, inputs=inputs, detail=error_detail(error))
        raise
    audit(request, "promote:best_model", 200, key, started, model_name=name,
          model_version=promoted.version, inputs=inputs, outputs=promoted.model_dump())
    return promoted


def _promote_best(
    body: BestModelRequest, settings: ServingSettings, key: KeyRecord
) -> BestModelResponse:
    config = body.experiment_config
    metric = evaluation_metric(config.metric)
    goal = config.metric_goal or ("min" if LOWER_IS_BETTER[config.metric] else "max")
    name = settings.registry.model_name
    alias = settings.registry.champion_alias
    client = _client(settings)
    reason = f"best_model by {metric} ({goal})"
    try:
        best_run, value = _best_run(client, config.experiment_name, metric, goal)
        failed = _failed_thresholds(best_run)
        if failed is not None:
            if not body.force:
                raise api_error(409, f"the best run by {metric} ({best_run.info.run_id}) failed "
                                     f"evaluate's thresholds: {failed}; send \"force\": true to "
                                     "promote it anyway")
            reason += f", forced past failed thresholds: {failed}"
        model_uri = best_run.data.tags[MODEL_URI_TAG]
        with _promotion_lock:
            version = version_for_source(client, name, model_uri)
            registered = version is None
            if version is None:
                version = register_version(
                    client, name, model_uri,
                    tags=_version_tags(best_run, model_uri),
                    run_id=_source_run_id(client, model_uri),
                )
            previous = alias_version(client, name, alias)
            move_alias(client, name, alias, version, reason=reason, actor=key.key_id)
    except MlflowException as error:
        log.error("best_model_mlflow_error", error=str(error))
        raise _mlflow_failure(error) from None
    log.info("best_model_promoted", experiment=config.experiment_name, metric=metric, goal=goal,
             run_id=best_run.info.run_id, version=version, registered=registered,
             previous_version=previous, forced_past=failed)
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


def _failed_thresholds(run: Any) -> str | None:
    """What evaluate found failed for `run` ("rmse 9000 vs 8000, ..."), or None when the run
    passed. Runs evaluate gave no verdict (made before the thresholds existed) pass, as in
    `valuation promote`."""
    if run.data.tags.get(VALIDATED_TAG) != "false":
        return None
    return run.data.tags.get(FAILED_THRESHOLDS_TAG) or "thresholds not recorded"


def _version_tags(run: Any, model_uri: str) -> dict[str, str]:
    return {
        MODEL_URI_TAG: model_uri,
        EVALUATION_RUN_ID_TAG: run.info.run_id,
        REGISTERED_BY_TAG: "best_model",
        VALIDATED_TAG: run.data.tags.get(VALIDATED_TAG, "unknown"),
        **evaluation_metric_tags(run.data.metrics),
    }


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
    responses=error_responses({**_ERRORS, 422: "MLflow refused a value of the request"}),
)
def models(
    request: Request,
    key: KeyRecord = Depends(require(Capability.MODEL_STATUS)),
    settings: ServingSettings = Depends(deps.settings),
) -> ModelsResponse:
    registry = settings.registry
    client = _client(settings)
    try:
        aliases = {
            alias: alias_version(client, registry.model_name, alias)
            for alias in (registry.champion_alias, registry.challenger_alias)
        }
        history = [asdict(move) for move in alias_history(client, registry.model_name)]
        versions = {alias: _version_summary(client, registry.model_name, version)
                    for alias, version in aliases.items() if version is not None}
    except MlflowException as error:
        raise _mlflow_failure(error) from None
    return ModelsResponse(
        model_name=registry.model_name,
        serving=deps.supervisor(request).status(),
        aliases=aliases,
        alias_history=history[-HISTORY_SHOWN:],
        versions=versions,
        traffic=_traffic(request, settings),
    )


def _traffic(request: Request, settings: ServingSettings) -> dict[str, Any]:
    """The shadow/canary split this proxy applies, and which challenger version answers it."""
    challenger = deps.supervisor(request).served(alias=settings.registry.challenger_alias)
    return {**request.app.state.traffic.split.to_dict(),
            "challenger_served_version": challenger.version if challenger else None}


def _version_summary(client: MlflowClient, name: str, version: str) -> dict[str, Any]:
    """One registered version as the operator page shows it: its test metrics (the tags
    `register` and /best_model copy from the evaluation run), verdict and origin."""
    found = client.get_model_version(name, version)
    tags = found.tags or {}
    metrics = {}
    for tag, value in tags.items():
        if tag.startswith(TEST_METRIC_PREFIX):
            try:
                metrics[tag] = float(value)
            except ValueError:
                continue  # a hand-written tag that is not a number is not a metric
    return {
        "version": str(found.version),
        "created_at": found.creation_timestamp,
        "run_id": found.run_id,
        "validated": tags.get(VALIDATED_TAG),
        "registered_by": tags.get(REGISTERED_BY_TAG),
        "metrics": metrics,
    }


def _mlflow_failure(error: MlflowException) -> Exception:
    """A refusal of the request's own values by MLflow is the client's (422); anything else means
    the tracking server could not do its part (503, retry later)."""
    if error.error_code == "INVALID_PARAMETER_VALUE":
        return invalid(None, f"MLflow refused the request: {error.message}")
    return api_error(503, f"the MLflow tracking server failed: {error.message}")
