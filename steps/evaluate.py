"""evaluate: score the logged pyfunc on the test table, break errors down, plot, and judge it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from steps.common import load_step_config, run_cli, split_overrides, step_parser  # noqa: E402
from valuation import interval_report  # noqa: E402
from valuation.metrics import LOWER_IS_BETTER, regression_metrics  # noqa: E402
from valuation.model_runtime.schema import FEATURES, TARGET  # noqa: E402
from valuation.names import (  # noqa: E402
    EVALUATE_STEP,
    FAILED_THRESHOLDS_TAG,
    MODEL_URI_TAG,
    PROFILE_ARTIFACT,
    STEP_TAG,
    TEST_URI_TAG,
    VALIDATED_TAG,
    evaluation_metric,
)
from valuation.progress import report  # noqa: E402

PROGRESS_START, PROGRESS_END = 0.75, 0.9


@dataclass(frozen=True)
class EvaluationResult:
    run_id: str
    metrics: dict[str, float]
    validated: bool
    failed_thresholds: list[str]


def run(cfg: DictConfig, model_uri: str, test_uri: str) -> EvaluationResult:
    """Score `model_uri` on every row of the test table at `test_uri` inside the active run."""
    from valuation.sources import read_artifact_frame

    run_id = mlflow.active_run().info.run_id
    mlflow.set_tags({STEP_TAG: EVALUATE_STEP, MODEL_URI_TAG: model_uri, TEST_URI_TAG: test_uri})
    frame = read_artifact_frame(test_uri)
    report("evaluate", PROGRESS_START, f"scoring {model_uri} on {len(frame)} test rows")
    model = mlflow.pyfunc.load_model(model_uri)
    truth = frame[TARGET].to_numpy(dtype=np.float64)
    predicted = np.asarray(model.predict(frame[list(FEATURES)]), dtype=np.float64)

    metrics = regression_metrics(truth, predicted)
    mlflow.log_metrics({evaluation_metric(k): v for k, v in metrics.items()})
    mlflow.log_metric(evaluation_metric("rows"), len(frame))
    breakdown = _breakdown(frame, truth, predicted)
    mlflow.log_table(breakdown, artifact_file="evaluation/breakdown.json")
    with tempfile.TemporaryDirectory() as tmp:
        _log_plots(Path(tmp), frame, truth, predicted, breakdown, model)
    _log_reference_profile(cfg, model, frame, truth, predicted)
    if cfg.get("intervals") and interval_report.has_intervals(model):
        _log_intervals(cfg, model, frame, truth)

    failed = _failed_thresholds(metrics, cfg.evaluate.thresholds)
    validated = not failed
    mlflow.set_tag(VALIDATED_TAG, str(validated).lower())
    if failed:
        mlflow.set_tag(FAILED_THRESHOLDS_TAG, ", ".join(failed))
    verdict = "validated" if validated else f"NOT validated ({', '.join(failed)})"
    report("evaluate", PROGRESS_END,
           f"rmse {metrics['rmse']:.0f}, mae {metrics['mae']:.0f}, r2 {metrics['r2']:.3f}: {verdict}")
    return EvaluationResult(run_id=run_id, metrics=metrics, validated=validated, failed_thresholds=failed)


def _log_reference_profile(cfg: DictConfig, model, frame: pd.DataFrame, truth: np.ndarray,
                           predicted: np.ndarray) -> None:
    """The version's reference for drift monitoring: aggregates of the test rows (uncleaned, like
    the traffic a client sends), of the predictions on them, and the test figures."""
    from valuation.monitoring.profile import build_profile, permutation_importance

    settings = cfg.drift.profile
    features = frame[list(FEATURES)].reset_index(drop=True)
    importance = permutation_importance(model.predict, features, truth, FEATURES,
                                        seed=int(settings.importance_seed))
    profile = build_profile(
        features, predicted, truth,
        categorical=list(cfg.columns.categorical), numeric=list(cfg.columns.numeric),
        bins=int(settings.bins), sketch_points=int(settings.sketch_points),
        feature_importance=importance,
    )
    mlflow.log_dict(profile.to_dict(), PROFILE_ARTIFACT)


def _log_intervals(cfg: DictConfig, model, frame: pd.DataFrame, truth: np.ndarray) -> None:
    """Coverage and width of the model's intervals on the test rows (and of the constant-width
    baseline), per group, as metrics, a table and two plots."""
    levels = sorted({*cfg.intervals.evaluate_levels, *interval_report.PLOT_LEVELS})
    bounds = {level: interval_report.model_bounds(model, frame, level) for level in levels}
    reported = [bounds[level] for level in cfg.intervals.evaluate_levels]
    table = interval_report.coverage_table(frame, truth, reported)
    mlflow.log_table(table, artifact_file="evaluation/interval_coverage.json")
    for level in cfg.intervals.evaluate_levels:
        metrics = interval_report.summary(table, level)
        baseline = interval_report.baseline_bounds(model, bounds[level].price, level)
        if baseline is not None:
            metrics.update(interval_report.summary(
                interval_report.coverage_table(frame, truth, [baseline]), level, "interval_baseline"))
        mlflow.log_metrics({evaluation_metric(k): v for k, v in metrics.items()})
    select = cfg.intervals.select_level
    with tempfile.TemporaryDirectory() as tmp:
        interval_report.plot(Path(tmp), truth, [bounds[level] for level in levels],
                             bounds.get(select, reported[-1]))
        mlflow.log_artifacts(tmp, artifact_path="evaluation")


def _failed_thresholds(metrics: dict[str, float], thresholds) -> list[str]:
    failed = []
    for name, limit in thresholds.items():
        value = metrics[name]
        ok = value <= limit if LOWER_IS_BETTER[name] else value >= limit
        if not ok:
            failed.append(f"{name} {value:.4g} vs {limit:g}")
    return failed


def _breakdown(frame: pd.DataFrame, truth: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    rows = []
    for column in ("sector", "type"):
        for value, index in frame.groupby(column).indices.items():
            scores = regression_metrics(truth[index], predicted[index])
            rows.append({"group": column, "value": value, "rows": len(index),
                         **{k: round(v, 4) for k, v in scores.items()}})
    return pd.DataFrame(rows)


def _log_plots(directory: Path, frame, truth, predicted, breakdown, model) -> None:
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(truth, predicted, s=4, alpha=0.4)
    top = float(np.percentile(np.concatenate([truth, predicted]), 99.5))
    ax.plot([0, top], [0, top], color="black", linewidth=1)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="actual price (UF)", ylabel="predicted price (UF)",
           title="Predicted vs actual")
    _save(fig, directory / "predicted_vs_actual.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(predicted, predicted - truth, s=4, alpha=0.4)
    ax.axhline(0, color="black", linewidth=1)
    ax.set(xlabel="predicted price (UF)", ylabel="residual (UF)", title="Residuals")
    _save(fig, directory / "residuals.png")

    sectors = breakdown[breakdown["group"] == "sector"].sort_values("mae")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.barh(sectors["value"], sectors["mae"])
    ax.set(xlabel="MAE (UF)", title="Error by sector")
    _save(fig, directory / "error_by_sector.png")

    importance = _feature_importance(model)
    if importance is not None:
        names, values = importance
        order = np.argsort(values)
        fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(names))))
        ax.barh(np.asarray(names)[order], np.asarray(values)[order])
        ax.set(title="Feature importance")
        _save(fig, directory / "feature_importance.png")
    mlflow.log_artifacts(str(directory), artifact_path="evaluation")


def _feature_importance(model) -> tuple[list[str], np.ndarray] | None:
    fitted = model.unwrap_python_model().fitted
    estimator = fitted.estimator
    if hasattr(estimator, "feature_importance"):  # LightGBM Booster: gain is the honest measure
        values = estimator.feature_importance(importance_type="gain")
    elif hasattr(estimator, "feature_importances_"):
        values = estimator.feature_importances_
    else:
        return None
    return list(fitted.encoder.feature_names), np.asarray(values, dtype=float)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = step_parser("Score a logged model on the test table.")
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--test-uri", required=True)
    args = parser.parse_args()
    cfg = load_step_config(split_overrides(args.overrides))
    with mlflow.start_run(run_name="evaluate"):
        result = run(cfg, args.model_uri, args.test_uri)
    print(f"evaluation_run_id={result.run_id} validated={str(result.validated).lower()}")


if __name__ == "__main__":
    run_cli(main)
