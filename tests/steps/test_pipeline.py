"""The main entry point end to end on the synthetic sample, against a real SQLite MLflow store."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from steps.main import run_pipeline
from valuation.config import PROJECT_ROOT
from valuation.data_checks import DataError
from valuation.model_runtime.schema import EXAMPLE_ROW
from valuation.monitoring.profile import ReferenceProfile
from valuation.names import PROFILE_ARTIFACT
from valuation.registry import alias_history, alias_version
from valuation.synthetic import generate_frame

MODEL = "property_friends_best_model"


def _children(client: MlflowClient, parent_run_id: str) -> dict[str, mlflow.entities.Run]:
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    return {run.data.tags["valuation.step"]: run for run in runs}


@pytest.mark.slow
def test_pipeline_registers_a_champion_with_lineage(tracking_uri: str, fast_overrides) -> None:
    result = run_pipeline(fast_overrides)
    client = MlflowClient(tracking_uri=tracking_uri)

    assert result.validated and result.version == "1" and result.champion_moved
    assert result.metrics["r2"] > 0.6  # learns the synthetic price surface, far above the mean
    steps = _children(client, result.parent_run_id)
    assert set(steps) == {"ingest", "train", "evaluate", "register"}
    assert steps["train"].data.metrics["cv_rmse_mean"] > 0  # K-fold ran, per-fold metrics logged
    assert len(client.get_metric_history(steps["train"].info.run_id, "cv_rmse")) == 2
    evaluation_files = {a.path for a in client.list_artifacts(steps["evaluate"].info.run_id, "evaluation")}
    for plot in ("predicted_vs_actual.png", "residuals.png", "error_by_sector.png", "feature_importance.png"):
        assert f"evaluation/{plot}" in evaluation_files

    # The reference profile for drift monitoring: aggregates of the test rows, and the test
    # figures the live error is compared with (the same numbers evaluate logged).
    profile = ReferenceProfile.from_dict(mlflow.artifacts.load_dict(
        f"runs:/{steps['evaluate'].info.run_id}/{PROFILE_ARTIFACT}"))
    evaluated = steps["evaluate"].data.metrics
    assert profile.rows == evaluated["test_rows"] == 300
    assert profile.test_figures.medape == pytest.approx(evaluated["test_medape"])
    assert profile.test_figures.ppe10 == pytest.approx(evaluated["test_within_10pct"])
    assert profile.test_figures.rmse == pytest.approx(evaluated["test_rmse"])
    assert set(profile.numeric) | set(profile.categorical) == set(EXAMPLE_ROW)
    assert set(profile.feature_importance) == set(EXAMPLE_ROW)
    assert profile.most_important(1) == [max(profile.feature_importance,
                                             key=profile.feature_importance.get)]

    version = client.get_model_version(MODEL, "1")
    assert version.tags["valuation.model_uri"] == result.model_uri
    assert float(version.tags["test_rmse"]) == pytest.approx(result.metrics["rmse"], rel=1e-4)
    assert version.tags["data.test_digest"] and version.tags["valuation.git_commit"]
    assert alias_version(client, MODEL, "champion") == "1"
    assert alias_version(client, MODEL, "challenger") == "1"
    moves = [(m.alias, m.from_version, m.to_version) for m in alias_history(client, MODEL)]
    assert moves == [("challenger", None, "1"), ("champion", None, "1")]

    # The registered champion prices the specification's example row, and names bad rows.
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    price = champion.predict(pd.DataFrame([EXAMPLE_ROW]))
    assert len(price) == 1 and price[0] > 0
    with pytest.raises(MlflowException, match=r"row 1, field 'sector'"):
        champion.predict(pd.DataFrame([EXAMPLE_ROW, {**EXAMPLE_ROW, "sector": "atlantis"}]))


SHIPPED_MODELS = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "model").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("model", SHIPPED_MODELS)
def test_every_shipped_model_config_runs_the_whole_pipeline(tracking_uri: str, model: str) -> None:
    # Each conf/model group as shipped (its own features, params and feature_params, or none),
    # on a small sample: `mlflow run . -P model=baseline` once failed at logging its params.
    result = run_pipeline([f"model={model}", "data=sample", "data.n_train=400", "data.n_test=150",
                           "cv.folds=0", "registry.register_unvalidated=true"])
    assert result.version is not None
    assert result.metrics["rmse"] > 0 and result.metrics["r2"] > 0
    train_run = _children(MlflowClient(tracking_uri=tracking_uri), result.parent_run_id)["train"]
    assert train_run.data.params["model"] == model


@pytest.mark.slow
def test_a_worse_model_is_registered_as_challenger_but_the_champion_stays(
    tracking_uri: str, fast_overrides
) -> None:
    first = run_pipeline(fast_overrides)
    weak = run_pipeline([*fast_overrides, "cv.folds=0", "model.params.n_estimators=2",
                         "model.params.max_depth=1", "registry.register_unvalidated=true"])
    client = MlflowClient(tracking_uri=tracking_uri)
    assert weak.metrics["rmse"] > first.metrics["rmse"]
    assert weak.version == "2" and not weak.champion_moved
    assert alias_version(client, MODEL, "champion") == "1"
    assert alias_version(client, MODEL, "challenger") == "2"
    outcome = client.get_run(weak.parent_run_id).data.tags["valuation.register_outcome"]
    assert "champion v1 kept" in outcome


@pytest.mark.slow
def test_a_retraining_with_feedback_rows_registers_a_challenger_and_never_moves_the_champion(
    tracking_uri: str, fast_overrides, tmp_path
) -> None:
    first = run_pipeline([*fast_overrides, "cv.folds=0", "model.params.n_estimators=5",
                          "registry.register_unvalidated=true"])
    feedback = generate_frame(150, seed=99)
    feedback = pd.concat([feedback, feedback.iloc[:10]])  # duplicates are cleaned like any row
    feedback.to_parquet(tmp_path / "feedback.parquet", index=False)
    better = run_pipeline([*fast_overrides, "cv.folds=0", "registry.move_champion=false",
                           f"feedback.train_path={tmp_path / 'feedback.parquet'}"])
    client = MlflowClient(tracking_uri=tracking_uri)
    assert better.metrics["rmse"] < first.metrics["rmse"]  # better, and still not promoted
    assert better.version == "2" and not better.champion_moved
    assert alias_version(client, MODEL, "champion") == "1"
    assert alias_version(client, MODEL, "challenger") == "2"
    ingested = _children(client, better.parent_run_id)["ingest"].data.metrics
    assert ingested["rows_read_feedback"] == 160
    assert ingested["rows_train"] == 900 + 160 - ingested["rows_removed_total"]
    assert ingested["rows_removed_total"] >= 10  # the ten repeated feedback rows at least
    outcome = client.get_run(better.parent_run_id).data.tags["valuation.register_outcome"]
    assert "registry.move_champion=false" in outcome


@pytest.mark.slow
def test_a_model_failing_its_thresholds_is_not_registered(tracking_uri: str, fast_overrides) -> None:
    result = run_pipeline([*fast_overrides, "cv.folds=0", "evaluate.thresholds.r2=0.99999"])
    client = MlflowClient(tracking_uri=tracking_uri)
    assert not result.validated and result.version is None
    assert client.search_model_versions(f"name = '{MODEL}'") == []
    outcome = client.get_run(result.parent_run_id).data.tags["valuation.register_outcome"]
    assert "failed its thresholds" in outcome and "r2" in outcome


def test_missing_data_file_stops_the_pipeline_before_anything_is_registered(
    tracking_uri: str, tmp_path
) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="nope.csv"):
        run_pipeline(["data=csv", f"data.train_path={missing}", f"data.test_path={missing}"])
    client = MlflowClient(tracking_uri=tracking_uri)
    assert client.search_model_versions(f"name = '{MODEL}'") == []
    failed = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string="tags.`valuation.step` = 'main'"
    )
    assert failed and failed[0].info.status == "FAILED"
