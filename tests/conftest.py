"""Fixtures shared by every test folder. Folder-specific fixtures live in that folder's conftest."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tests.support.s3 import s3_bucket, s3_server  # noqa: F401  (fixtures shared by every folder)
from tests.support.serving import TINY_PIPELINE, TrainedModel, run_pipeline_in_child
from valuation.config import load_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _reset_mlflow_globals() -> None:
    """MLflow keeps process-wide state (tracking/registry URI, active experiment, run stack);
    a test that sets it must not decide which store the next test talks to."""
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils
    import mlflow.tracking.fluent as fluent

    while mlflow.active_run() is not None:
        mlflow.end_run()
    tracking_utils._tracking_uri = None
    registry_utils._registry_uri = None
    fluent._active_experiment_id = None


# MLflow state a test must neither inherit nor leave behind.
MLFLOW_STATE_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID",
                    "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ARTIFACTS_DESTINATION")


@pytest.fixture(autouse=True)
def isolated_mlflow_state(monkeypatch: pytest.MonkeyPatch):
    for name in MLFLOW_STATE_ENV:
        monkeypatch.delenv(name, raising=False)
    _reset_mlflow_globals()
    yield
    _reset_mlflow_globals()
    # mlflow.set_tracking_uri/set_registry_uri also export their URI to os.environ, which
    # monkeypatch does not undo for a variable that was unset: a later child process (a pipeline
    # run) would register into that store.
    for name in MLFLOW_STATE_ENV:
        os.environ.pop(name, None)


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store for one test, exported as MLFLOW_TRACKING_URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture
def make_cfg() -> Callable[..., object]:
    """Compose the pipeline config with Hydra overrides, e.g. make_cfg("data=sample")."""
    return lambda *overrides: load_config(list(overrides))


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[str, pd.DataFrame | str], Path]:
    """Write a frame (or raw text) to tmp_path/name and return the path."""

    def write(name: str, content: pd.DataFrame | str) -> Path:
        path = tmp_path / name
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=False)
        else:
            path.write_text(content)
        return path

    return write


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """A tiny model trained and registered (champion) by the project's own pipeline: one for the
    whole session, shared by the serving and the scoring tests."""
    root = tmp_path_factory.mktemp("trained-model")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    result = run_pipeline_in_child(uri, root, TINY_PIPELINE)
    assert result["version"], f"the tiny model was not registered: {result}"
    return TrainedModel(uri, root, result["version"], "api-tests")


@pytest.fixture(scope="session")
def spark_session():
    """One local Spark session for every test that needs one (starting Spark costs seconds)."""
    from valuation.model_runtime.validation import ValidationRules
    from valuation.scoring.spark import spark_session as start

    rules = ValidationRules.from_config(load_config().validation, sectors=[])
    session = start("local[2]", rules)
    yield session
    session.stop()
