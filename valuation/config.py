"""Compose the Hydra configuration in-process (no working-directory change) and resolve paths."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "conf"
DEFAULT_TRACKING_DB = PROJECT_ROOT / "mlflow.db"


def load_config(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose `conf/<config_name>.yaml` with Hydra overrides such as ``model=gbr``.

    The Compose API keeps the caller's working directory, so relative data paths in the
    config are resolved against the project root by :func:`resolve_path` and never against a
    Hydra output folder.
    """
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """A config path: absolute as given, else relative to the project root."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else PROJECT_ROOT / candidate


def tracking_uri(cfg: DictConfig | None = None) -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store in the project root."""
    configured = os.environ.get("MLFLOW_TRACKING_URI") or (cfg.get("tracking_uri") if cfg else None)
    return configured or f"sqlite:///{DEFAULT_TRACKING_DB}"


def configure_mlflow(cfg: DictConfig) -> str:
    """Point MLflow at the tracking store and the experiment of `cfg`; return the tracking URI."""
    import mlflow

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    launched_run = os.environ.get("MLFLOW_RUN_ID")
    if launched_run:
        # `mlflow run` created our run already, in the experiment named by its --experiment-name;
        # our runs (and nested ones) must join that experiment, so it wins over the config.
        experiment_id = mlflow.MlflowClient(tracking_uri=uri).get_run(launched_run).info.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        return uri
    ensure_experiment(cfg.experiment_name, uri)
    mlflow.set_experiment(cfg.experiment_name)
    return uri


def ensure_experiment(name: str, uri: str) -> None:
    """Create the experiment if needed. With a SQLite store, artifacts go to `mlartifacts/` beside
    the database (MLflow's default would be ./mlruns of whatever directory the process runs in)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(name) is not None:
        return
    artifact_location = None
    if uri.startswith("sqlite:///"):
        db_path = Path(uri.removeprefix("sqlite:///"))
        artifact_location = (db_path.parent / "mlartifacts").resolve().as_uri()
    try:
        client.create_experiment(name, artifact_location=artifact_location)
    except mlflow.exceptions.MlflowException:
        # Another process created it in the meantime: that is fine.
        if client.get_experiment_by_name(name) is None:
            raise
