"""Compose the Hydra configuration in-process (no working-directory change) and resolve paths."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from valuation.artifact_store import is_object_store, require_reachable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "conf"
DEFAULT_TRACKING_URI = f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"  # `make train`'s store
ARTIFACTS_DESTINATION_ENV = "MLFLOW_ARTIFACTS_DESTINATION"  # read by training and `make stack`


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


def tracking_uri(configured: str | None = None) -> str:
    """The MLflow tracking (and registry) URI, worked out in this one place for training, the
    proxy, the worker, the CLI and the dev stack: `configured` (a config's `tracking_uri`) when
    set, else MLFLOW_TRACKING_URI, else the project's SQLite store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def is_server_uri(uri: str) -> bool:
    """Whether `uri` names a tracking server (http/https) rather than a store opened directly."""
    return uri.startswith(("http://", "https://"))


def artifact_root(store_uri: str) -> Path | None:
    """Where the experiments this project creates keep their artifacts when the store is a
    database: `mlartifacts/` beside a SQLite file, else the project's `mlartifacts/` (MLflow's
    own default would be ./mlruns of whatever directory the process runs in). None for a tracking
    server, which decides for itself. The dev stack's tracking server uses the same directory, so
    runs logged directly and through the server land in one place."""
    if is_server_uri(store_uri):
        return None
    if store_uri.startswith("sqlite:///"):
        return Path(store_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"
    return PROJECT_ROOT / "mlartifacts"


def artifact_location(store_uri: str, configured: str | None = None) -> str | None:
    """The URI where experiments this project creates keep their artifacts: `configured` (the dev
    stack's `stack.artifacts_destination`), else MLFLOW_ARTIFACTS_DESTINATION, else
    `artifact_root(store_uri)`. A URI (`s3://bucket/prefix`, `file:///...`) is taken as is, a
    path relative to the project root. None for a tracking server, which decides for itself.
    `make stack` gives its tracking server the same location as the default root of the
    experiments it creates, so `make train` (opening the database directly, with the same
    environment) writes where the server does: plain files, or the same bucket."""
    if is_server_uri(store_uri):
        return None
    chosen = configured or os.environ.get(ARTIFACTS_DESTINATION_ENV)
    if chosen and "://" in chosen:
        return chosen
    root = resolve_path(chosen).resolve() if chosen else artifact_root(store_uri)
    return root.as_uri()


class StoreNotWritable(ValueError):
    """The tracking store holds an experiment this process cannot write artifacts to."""


def configure_mlflow(cfg: DictConfig) -> str:
    """Point MLflow at the tracking store and the experiment of `cfg`; return the tracking URI."""
    import mlflow

    uri = tracking_uri(cfg.get("tracking_uri"))
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    launched_run = os.environ.get("MLFLOW_RUN_ID")
    if launched_run:
        # `mlflow run` created our run already, in the experiment named by its --experiment-name;
        # our runs (and nested ones) must join that experiment, so it wins over the config.
        experiment_id = client.get_run(launched_run).info.experiment_id
    else:
        ensure_experiment(cfg.experiment_name, uri)
        experiment_id = client.get_experiment_by_name(cfg.experiment_name).experiment_id
    experiment = client.get_experiment(experiment_id)
    require_writable_artifacts(experiment, uri)
    require_configured_destination(experiment, uri)
    if is_object_store(experiment.artifact_location):
        require_reachable(experiment.artifact_location, cfg.artifact_store)
    mlflow.set_experiment(experiment_id=experiment_id)
    return uri


def require_writable_artifacts(experiment, uri: str) -> None:
    """Refuse, before anything runs, an experiment whose artifacts live behind a tracking server
    (`mlflow-artifacts:`, what `mlflow server --serve-artifacts` gives the experiments it creates
    without a file root) when this process opens the database directly: MLflow cannot write
    there without the server, and would fail only after training, with a traceback."""
    location = str(experiment.artifact_location)
    if is_server_uri(uri) or not location.startswith("mlflow-artifacts:"):
        return
    raise StoreNotWritable(
        f"experiment {experiment.name!r} (id {experiment.experiment_id}) of {uri} keeps its "
        f"artifacts on a tracking server ({location}), which a direct database client cannot "
        "write: start `make stack` and train through it (MLFLOW_TRACKING_URI=http://127.0.0.1:"
        "5000 make train, or POST /train), or train into another experiment "
        "(mlflow run . --env-manager local --experiment-name NEW_NAME)")


def require_configured_destination(experiment, uri: str) -> None:
    """Refuse an experiment whose artifacts live outside an explicitly set
    MLFLOW_ARTIFACTS_DESTINATION when this process opens the database directly: one created
    before the destination was set, or MLflow's Default experiment of a store `mlflow run` created
    (./mlruns). Its artifacts would silently land somewhere other than where they were asked to."""
    configured = os.environ.get(ARTIFACTS_DESTINATION_ENV)
    wanted = artifact_location(uri) if configured else None
    location = str(experiment.artifact_location)
    if wanted is None or location == wanted or location.startswith(wanted.rstrip("/") + "/"):
        return
    raise StoreNotWritable(
        f"experiment {experiment.name!r} (id {experiment.experiment_id}) of {uri} keeps its "
        f"artifacts in {location}, not in {ARTIFACTS_DESTINATION_ENV}={configured}: create an "
        f"experiment there and train into it (mlflow experiments create -n NEW_NAME -l {wanted}; "
        "mlflow run . --env-manager local --experiment-name NEW_NAME), or unset "
        f"{ARTIFACTS_DESTINATION_ENV}")


def ensure_experiment(name: str, uri: str) -> None:
    """Create the experiment if needed, with its artifacts in `artifact_location(uri)`."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(name) is not None:
        return
    try:
        client.create_experiment(name, artifact_location=artifact_location(uri))
    except mlflow.exceptions.MlflowException:
        # Another process created it in the meantime: that is fine.
        if client.get_experiment_by_name(name) is None:
            raise
