"""Fixtures for the model-server supervisor and stack tests: a registry with two real versions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import DictConfig

from valuation.config import PROJECT_ROOT, load_config

MODEL_NAME = "property_friends_best_model"

# Two tiny, different versions trained by the project's own pipeline on synthetic data. The
# thresholds are opened up because a 30-tree model on 400 rows is not meant to be good; the
# aliases are moved by the tests themselves.
PIPELINE_OVERRIDES = [
    "data=sample", "data.n_train=400", "data.n_test=120", "cv.folds=0", "model=lgbm",
    "model.params.n_estimators=30",
    "evaluate.thresholds.rmse=1e12", "evaluate.thresholds.mae=1e12", "evaluate.thresholds.r2=-1e12",
]


@dataclass(frozen=True)
class TrainedRegistry:
    tracking_uri: str
    root: Path
    versions: tuple[str, ...]  # two servable versions, oldest first


def _train_versions(tracking_uri: str, workdir: Path, seeds: Sequence[int]) -> list[str]:
    """Run `steps.main.run_pipeline` once per seed in a child interpreter (keeps MLflow's global
    state out of the test process) and return the registered versions."""
    script = textwrap.dedent(
        """
        import json, sys
        from steps.main import run_pipeline
        versions = []
        for seed in json.loads(sys.argv[2]):
            result = run_pipeline(json.loads(sys.argv[1]) + [f"seed={seed}"])
            versions.append(result.version)
        print("VERSIONS=" + json.dumps(versions))
        """
    )
    import json

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("MLFLOW_RUN_ID", None)
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(PIPELINE_OVERRIDES), json.dumps(list(seeds))],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=900,
    )
    marker = [line for line in done.stdout.splitlines() if line.startswith("VERSIONS=")]
    if done.returncode != 0 or not marker:
        raise RuntimeError(f"pipeline failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-5000:]}")
    versions = json.loads(marker[0].removeprefix("VERSIONS="))
    if any(v is None for v in versions):
        raise RuntimeError(f"pipeline registered nothing: {versions}\n{done.stdout[-3000:]}")
    return [str(v) for v in versions]


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> TrainedRegistry:
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    versions = _train_versions(uri, root, seeds=[1, 2])
    return TrainedRegistry(tracking_uri=uri, root=root, versions=tuple(versions))


def set_champion(tracking_uri: str, version: str, alias: str = "champion") -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(
        MODEL_NAME, alias, str(version)
    )


def supervisor_settings(run_dir: Path, base_port: int, **model_server: object) -> DictConfig:
    """conf/serving.yaml with test-sized timings (fast watch, short backoff)."""
    values = {
        "base_port": base_port, "watch_interval_s": 1, "poll_interval_s": 0.2, "drain_s": 1,
        "startup_timeout_s": 120, "retry_backoff_s": 1, "retry_backoff_max_s": 5,
        "registry_timeout_s": 20, "stop_grace_s": 5, "run_dir": str(run_dir),
        **model_server,
    }
    return load_config([f"model_server.{k}={v}" for k, v in values.items()],
                       config_name="serving")


@pytest.fixture
def supervisor_factory(tmp_path: Path) -> Iterator:
    """Build supervisors that are always stopped at the end of the test."""
    from serving.model_server import ModelServerSupervisor

    made: list[ModelServerSupervisor] = []

    def make(tracking_uri: str, base_port: int, **model_server: object) -> ModelServerSupervisor:
        settings = supervisor_settings(tmp_path / "model-servers", base_port, **model_server)
        supervisor = ModelServerSupervisor(settings, tracking_uri)
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        supervisor.stop()
