"""register: version validated models, set `challenger`, and move `champion` when it wins.

Stages are deprecated in MLflow 3; aliases replace them (Staging ~ challenger, Production ~
champion). The champion moves only when the new version beats it on the primary metric on the
same test data: the current champion is re-scored on this run's test table, so the comparison
never mixes data sets.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from steps.common import load_step_config, run_cli, split_overrides, step_parser
from valuation.config import PROJECT_ROOT
from valuation.metrics import LOWER_IS_BETTER, regression_metrics
from valuation.model_runtime.schema import FEATURES, TARGET
from valuation.names import (
    CHAMPION_MOVED_TAG,
    EVALUATION_RUN_ID_TAG,
    FAILED_THRESHOLDS_TAG,
    GIT_COMMIT_TAG,
    MODEL_CONFIG_TAG,
    MODEL_URI_TAG,
    REGISTER_OUTCOME_TAG,
    REGISTER_STEP,
    REGISTERED_VERSION_TAG,
    STEP_TAG,
    TEST_URI_TAG,
    VALIDATED_TAG,
    evaluation_metric,
)
from valuation.progress import report
from valuation.registry import (
    alias_version,
    evaluation_metric_tags,
    move_alias,
    register_version,
)

PROGRESS_START, PROGRESS_END = 0.9, 1.0


@dataclass(frozen=True)
class RegisterResult:
    version: str | None
    champion_moved: bool
    reason: str


def run(cfg: DictConfig, model_uri: str, evaluation_run_id: str, force: bool = False) -> RegisterResult:
    client = MlflowClient()
    registry = cfg.registry
    mlflow.set_tag(STEP_TAG, REGISTER_STEP)
    evaluation = client.get_run(evaluation_run_id)
    validated = evaluation.data.tags.get(VALIDATED_TAG) == "true"
    if not validated and not (force or registry.register_unvalidated):
        reason = ("not registered: the model failed its thresholds "
                  f"({evaluation.data.tags.get(FAILED_THRESHOLDS_TAG, 'unknown')}); "
                  "pass force=true (or registry.register_unvalidated=true) to register it anyway")
        mlflow.set_tag(REGISTER_OUTCOME_TAG, reason)
        report("register", PROGRESS_END, reason)
        return RegisterResult(version=None, champion_moved=False, reason=reason)

    test_uri = evaluation.data.tags[TEST_URI_TAG]
    primary = cfg.evaluate.primary_metric
    new_score = evaluation.data.metrics[evaluation_metric(primary)]
    tags = {
        MODEL_URI_TAG: model_uri,
        EVALUATION_RUN_ID_TAG: evaluation_run_id,
        VALIDATED_TAG: str(validated).lower(),
        GIT_COMMIT_TAG: _git_commit(),
        MODEL_CONFIG_TAG: json.dumps(OmegaConf.to_container(cfg.model), sort_keys=True),
        **_data_digests(client, test_uri),
        **evaluation_metric_tags(evaluation.data.metrics),
    }
    version = register_version(client, registry.model_name, model_uri, tags,
                               run_id=_run_id_of(model_uri, client))
    report("register", PROGRESS_START + 0.03, f"registered {registry.model_name} version {version}")
    move_alias(client, registry.model_name, registry.challenger_alias, version,
               reason=f"new validated version, test_{primary} {new_score:.6g}")

    champion = alias_version(client, registry.model_name, registry.champion_alias)
    moved, reason = False, ""
    if not registry.move_champion:
        reason = (f"registered as {registry.challenger_alias} only (registry.move_champion=false): "
                  f"champion v{champion or '(none)'} stays until the gate on live data promotes")
    elif champion is None:
        moved, reason = True, f"first champion (test_{primary} {new_score:.6g})"
    else:
        champion_score, problem = _score_champion(registry, champion, test_uri, primary)
        if problem:
            moved, reason = True, f"champion v{champion} could not be scored on this test data: {problem}"
        elif _better(primary, new_score, champion_score):
            moved, reason = True, (f"test_{primary} {new_score:.6g} beats champion v{champion}'s "
                                   f"{champion_score:.6g} on the same test data")
        else:
            reason = (f"champion v{champion} kept: its test_{primary} {champion_score:.6g} is not worse "
                      f"than {new_score:.6g}")
    if moved:
        move_alias(client, registry.model_name, registry.champion_alias, version, reason=reason)
    mlflow.set_tags({REGISTERED_VERSION_TAG: version, CHAMPION_MOVED_TAG: str(moved).lower(),
                     REGISTER_OUTCOME_TAG: reason})
    report("register", PROGRESS_END, f"version {version}: {reason}")
    return RegisterResult(version=version, champion_moved=moved, reason=reason)


def _better(metric: str, new: float, old: float) -> bool:
    return new < old if LOWER_IS_BETTER[metric] else new > old


def _score_champion(registry, champion: str, test_uri: str, primary: str) -> tuple[float, str | None]:
    from valuation.sources import read_artifact_frame

    try:
        model = mlflow.pyfunc.load_model(f"models:/{registry.model_name}/{champion}")
        frame = read_artifact_frame(test_uri)
        predicted = np.asarray(model.predict(frame[list(FEATURES)]), dtype=np.float64)
    except Exception as error:  # noqa: BLE001 - any failure means the champion cannot be compared
        return float("nan"), f"{type(error).__name__}: {str(error)[:300]}"
    return regression_metrics(frame[TARGET].to_numpy(dtype=np.float64), predicted)[primary], None


def _run_id_of(model_uri: str, client: MlflowClient) -> str | None:
    if model_uri.startswith("runs:/"):
        return model_uri.split("/")[1]
    if model_uri.startswith("models:/m-"):
        return client.get_logged_model(model_uri.removeprefix("models:/")).source_run_id
    return None


def _data_digests(client: MlflowClient, test_uri: str) -> dict[str, str]:
    """The ingest run's dataset digests (the test URI points into that run)."""
    if not test_uri.startswith("runs:/"):
        return {}
    tags = client.get_run(test_uri.split("/")[1]).data.tags
    return {k: v for k, v in tags.items() if k.startswith("data.") and k.endswith("digest")}


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def main() -> None:
    parser = step_parser("Register a validated model version and move aliases.")
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--evaluation-run-id", required=True)
    parser.add_argument("--force", default="false", help="true: register even if thresholds failed")
    args = parser.parse_args()
    cfg = load_step_config(split_overrides(args.overrides))
    with mlflow.start_run(run_name="register"):
        result = run(cfg, args.model_uri, args.evaluation_run_id, force=args.force.lower() == "true")
    print(f"version={result.version} champion_moved={str(result.champion_moved).lower()} ({result.reason})")


if __name__ == "__main__":
    run_cli(main)
