"""main: ingest -> train -> evaluate -> register as nested runs under one parent run.

Steps hand each other URIs (tables as run artifacts, the model as a logged-model URI), so each
also runs alone as its own entry point. Run in-process rather than as four `mlflow run`
subprocesses: one interpreter start instead of five, and one place to catch a failure.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import mlflow
from omegaconf import OmegaConf

from steps import evaluate, ingest, register, train
from steps.common import run_cli, split_overrides
from valuation.config import configure_mlflow, load_config, tracking_uri
from valuation.names import (
    CHAMPION_MOVED_TAG,
    MAIN_STEP,
    MODEL_TAG,
    MODEL_URI_TAG,
    REGISTER_OUTCOME_TAG,
    REGISTERED_VERSION_TAG,
    STEP_TAG,
    VALIDATED_TAG,
    evaluation_metric,
)
from valuation.progress import report


@dataclass(frozen=True)
class PipelineResult:
    parent_run_id: str
    model_uri: str
    metrics: dict[str, float]
    validated: bool
    version: str | None
    champion_moved: bool
    registered_model: str


def run_pipeline(overrides: list[str]) -> PipelineResult:
    """Compose the config from `overrides` and run the four steps. Returns what was produced."""
    cfg = load_config(overrides)
    configure_mlflow(cfg)
    with mlflow.start_run(run_name=f"pipeline-{cfg.model.name}") as parent:
        mlflow.set_tags({STEP_TAG: MAIN_STEP, MODEL_TAG: cfg.model.name})
        mlflow.log_param("hydra_overrides", " ".join(overrides)[:6000])
        mlflow.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
        report("main", 0.0, f"pipeline for model {cfg.model.name}, data source {cfg.data.source}")

        with mlflow.start_run(run_name="ingest", nested=True):
            tables = ingest.run(cfg)
        with mlflow.start_run(run_name=f"train-{cfg.model.name}", nested=True):
            trained = train.run(cfg, tables.train_uri)
        with mlflow.start_run(run_name="evaluate", nested=True):
            evaluation = evaluate.run(cfg, trained.model_uri, tables.test_uri)
        with mlflow.start_run(run_name="register", nested=True):
            registered = register.run(cfg, trained.model_uri, evaluation.run_id,
                                      force=bool(cfg.registry.register_unvalidated))

        mlflow.log_metrics({evaluation_metric(k): v for k, v in evaluation.metrics.items()})
        mlflow.set_tags({
            MODEL_URI_TAG: trained.model_uri,
            VALIDATED_TAG: str(evaluation.validated).lower(),
            REGISTERED_VERSION_TAG: registered.version or "",
            CHAMPION_MOVED_TAG: str(registered.champion_moved).lower(),
            REGISTER_OUTCOME_TAG: registered.reason,
        })
        report("main", 1.0, registered.reason)
    return PipelineResult(
        parent_run_id=parent.info.run_id,
        model_uri=trained.model_uri,
        metrics=evaluation.metrics,
        validated=evaluation.validated,
        version=registered.version,
        champion_moved=registered.champion_moved,
        registered_model=cfg.registry.model_name,
    )


def _summary(result: PipelineResult) -> str:
    metrics = result.metrics
    lines = [
        "",
        "== property valuation pipeline ==",
        f"run:        {result.parent_run_id}",
        f"model:      {result.model_uri}",
        f"test:       RMSE {metrics['rmse']:,.0f} UF | MAE {metrics['mae']:,.0f} UF | "
        f"MAPE {metrics['mape']:.3f} | R2 {metrics['r2']:.3f} | within 10% {metrics['within_10pct']:.1%}",
        f"validated:  {'yes' if result.validated else 'no'}",
    ]
    if result.version:
        champion = "and is now the champion" if result.champion_moved else "(champion unchanged)"
        lines.append(f"registered: {result.registered_model} version {result.version} {champion}")
    else:
        lines.append("registered: nothing (see the register run's valuation.register_outcome tag)")
    lines.append(f"look:       mlflow ui --backend-store-uri {tracking_uri()}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run ingest, train, evaluate and register.")
    parser.add_argument("--model", default="", help="a conf/model/ option, e.g. gbr (default: lgbm)")
    parser.add_argument("--overrides", default="", help="Hydra overrides, e.g. \"cv.folds=0\"")
    args = parser.parse_args()
    overrides = ([f"model={args.model}"] if args.model else []) + split_overrides(args.overrides)
    result = run_pipeline(overrides)
    print(_summary(result))


if __name__ == "__main__":
    run_cli(main)
