"""Fixtures shared by every test folder. Folder-specific fixtures live in that folder's conftest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tests.support.s3 import s3_bucket, s3_server  # noqa: F401  (fixtures shared by every folder)
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


@pytest.fixture(autouse=True)
def isolated_mlflow_state(monkeypatch: pytest.MonkeyPatch):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID",
                 "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ARTIFACTS_DESTINATION"):
        monkeypatch.delenv(name, raising=False)
    _reset_mlflow_globals()
    yield
    _reset_mlflow_globals()


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
