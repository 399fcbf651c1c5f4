"""The project's own model for the benchmarks: trained by the real pipeline into a throwaway store."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.common import DataPaths, progress


@contextlib.contextmanager
def tracking_store(workdir: Path) -> Iterator[str]:
    """A fresh SQLite MLflow store in `workdir`, exported as MLFLOW_TRACKING_URI while in use."""
    import mlflow

    uri = f"sqlite:///{Path(workdir) / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def pipeline_overrides(paths: DataPaths, model: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """Hydra overrides for one pipeline run on `paths`: no CV (speed is measured, not quality), and
    the version is registered even if it misses the thresholds (a champion must exist to serve)."""
    overrides = [f"data.train_path={paths.train}", f"data.test_path={paths.test}", "cv.folds=0",
                 "registry.register_unvalidated=true", *extra]
    return ([f"model={model}"] if model else []) + overrides


def train_project_model(paths: DataPaths, model: str | None = None, extra: Sequence[str] = ()) -> Any:
    """Run ingest -> train -> evaluate -> register in the current tracking store; the PipelineResult."""
    from steps.main import run_pipeline

    progress(f"training the project's {model or 'default'} model on {paths.describe()} data")
    result = run_pipeline(pipeline_overrides(paths, model, extra))
    progress(f"trained {result.model_uri} (registered version {result.version}, "
             f"RMSE {result.metrics.get('rmse', float('nan')):,.0f})")
    return result
