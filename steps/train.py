"""train: fit the configured estimator (optional K-fold CV first) and log the pyfunc."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from steps.common import load_step_config, run_cli, split_overrides, step_parser
from valuation.estimators import get_spec
from valuation.model_runtime.schema import FEATURES, TARGET
from valuation.model_runtime.validation import ValidationRules
from valuation.names import MODEL_URI_TAG, STEP_TAG, TRAIN_STEP, TRAIN_URI_TAG
from valuation.progress import report

# This step's share of the pipeline's overall progress.
PROGRESS_START, PROGRESS_END = 0.15, 0.75


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    cv_metrics: dict[str, float]
    fit_seconds: float


def run(cfg: DictConfig, train_uri: str) -> TrainResult:
    """Fit on the ingested training table at `train_uri` inside the active MLflow run."""
    from valuation.sources import read_artifact_frame
    from valuation.training import cross_validate, fit_model

    run_id = mlflow.active_run().info.run_id
    mlflow.set_tags({STEP_TAG: TRAIN_STEP, TRAIN_URI_TAG: train_uri})
    frame = read_artifact_frame(train_uri)
    features, target = frame[list(FEATURES)], frame[TARGET].to_numpy(dtype=np.float64)
    model_cfg = cfg.model
    get_spec(model_cfg.estimator)  # fail before any work if the estimator is not allowlisted
    mlflow.log_params(
        {
            "model": model_cfg.name,
            "estimator": model_cfg.estimator,
            "features": model_cfg.features,
            "target_transform": model_cfg.target_transform,
            "cv_folds": cfg.cv.folds,
            "train_rows": len(frame),
            **{f"param.{k}": v for k, v in OmegaConf.to_container(model_cfg.params).items()},
            # A group without feature_params (baseline) has none to log.
            **{f"feature_param.{k}": v
               for k, v in (OmegaConf.to_container(model_cfg.feature_params)
                            if model_cfg.get("feature_params") else {}).items()},
        }
    )
    report("train", PROGRESS_START, f"{len(frame)} training rows, model {model_cfg.name}")

    cv_summary: dict[str, float] = {}
    if cfg.cv.folds and cfg.cv.folds >= 2:
        span = (PROGRESS_END - PROGRESS_START) / 2

        def on_fold(index: int, total: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics({f"cv_{k}": v for k, v in metrics.items()}, step=index)
            report("train", PROGRESS_START + span * index / total,
                   f"fold {index} of {total}: rmse {metrics['rmse']:.0f}, mae {metrics['mae']:.0f}")

        folds = cross_validate(model_cfg, features, target, cfg.cv.folds, cfg.seed, on_fold=on_fold)
        for key in folds[0]:
            values = np.array([fold[key] for fold in folds])
            cv_summary[f"cv_{key}_mean"] = float(values.mean())
            cv_summary[f"cv_{key}_std"] = float(values.std())
        mlflow.log_metrics(cv_summary)
        fit_progress = PROGRESS_START + span
    else:
        fit_progress = PROGRESS_START

    report("train", fit_progress, f"fitting {model_cfg.name} on all {len(frame)} rows")
    started = time.perf_counter()
    fitted = fit_model(model_cfg, features, target)
    fit_seconds = time.perf_counter() - started
    mlflow.log_metric("fit_seconds", fit_seconds)
    calibration = _calibrate(cfg, features, target)
    report("train", PROGRESS_END - 0.05, f"fit took {fit_seconds:.1f} s; logging the model")

    # Types and sectors the model may be asked about are the ones it saw: anything else is a
    # clear 400/422 naming the field, never a failure deep inside the estimator.
    rules = ValidationRules.from_config(
        cfg.validation,
        sectors=sorted(features["sector"].unique()),
        types=sorted(set(cfg.validation.types) & set(features["type"].unique())),
    )
    with tempfile.TemporaryDirectory() as workdir:
        info = _log_model(cfg, fitted, rules, Path(workdir), calibration)
    mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    report("train", PROGRESS_END, f"logged {info.model_uri}")
    return TrainResult(
        run_id=run_id, model_uri=info.model_uri, cv_metrics=cv_summary, fit_seconds=fit_seconds
    )


def _calibrate(cfg: DictConfig, features, target):
    """The interval calibration (valuation.calibration), or None when `intervals.enabled` is off."""
    if not cfg.get("intervals") or not cfg.intervals.enabled:
        return None
    from valuation.calibration import fit_calibration

    def on_fold(index: int, total: int) -> None:
        report("train", PROGRESS_END - 0.1, f"interval calibration: fold {index} of {total}")

    started = time.perf_counter()
    calibration = fit_calibration(cfg.model, features, target, cfg.intervals, cfg.seed, on_fold)
    mlflow.log_metric("calibration_seconds", time.perf_counter() - started)
    mlflow.log_param("interval_method", calibration.method)
    for method, scores in calibration.report["candidates"].items():
        mlflow.log_metrics({f"interval_cv_{method}_{k}": v for k, v in scores.items()})
    return calibration


def _log_model(cfg: DictConfig, fitted, rules: ValidationRules, workdir: Path, calibration=None):
    from valuation.packaging import log_valuation_model

    metadata = {
        "model_config": cfg.model.name,
        "estimator": cfg.model.estimator,
        "feature_names": list(fitted.encoder.feature_names),
    }
    return log_valuation_model(fitted, rules, cfg.model.estimator, workdir, metadata, calibration)


def main() -> None:
    parser = step_parser("Fit the configured model and log it as a pyfunc.")
    parser.add_argument("--train-uri", required=True, help="URI of the ingested training table")
    args = parser.parse_args()
    cfg = load_step_config(split_overrides(args.overrides))
    with mlflow.start_run(run_name=f"train-{cfg.model.name}"):
        result = run(cfg, args.train_uri)
    print(f"model_uri={result.model_uri}")


if __name__ == "__main__":
    run_cli(main)
