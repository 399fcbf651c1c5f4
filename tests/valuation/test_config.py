"""Where training, the proxy, the worker, the CLI and the dev stack find the MLflow store: one
function (`tracking_uri`) and one artifact directory (`artifact_root`)."""

from __future__ import annotations

from pathlib import Path

from valuation.config import PROJECT_ROOT, artifact_root, tracking_uri


def test_a_configured_uri_wins_then_the_environment_then_the_project_store(monkeypatch):
    assert tracking_uri() == f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"  # MLFLOW_* are unset
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_uri() == "http://tracking.example:5000"
    assert tracking_uri(None) == "http://tracking.example:5000"
    assert tracking_uri("sqlite:////srv/other.db") == "sqlite:////srv/other.db"


def test_artifacts_go_beside_a_sqlite_file_else_into_the_project(tmp_path: Path):
    assert artifact_root(f"sqlite:///{tmp_path / 'mlflow.db'}") == tmp_path / "mlartifacts"
    assert artifact_root("postgresql://mlflow@db/mlflow") == PROJECT_ROOT / "mlartifacts"
    assert artifact_root("http://127.0.0.1:5000") is None  # a server decides for itself
