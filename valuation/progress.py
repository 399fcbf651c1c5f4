"""Progress of long steps: printed to the console, tagged on the active MLflow run, and written
as JSON to ``VALUATION_PROGRESS_FILE`` when set (the RQ worker reads it into the job's meta)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

PROGRESS_FILE_ENV = "VALUATION_PROGRESS_FILE"


def report(step: str, fraction: float, message: str = "") -> None:
    """Say where a long step is. `fraction` is the pipeline's overall completion in [0, 1]."""
    fraction = max(0.0, min(1.0, float(fraction)))
    line = f"[{step} {fraction:4.0%}] {message}".rstrip()
    print(line, file=sys.stderr, flush=True)
    _tag_active_run(step, fraction, message)
    target = os.environ.get(PROGRESS_FILE_ENV)
    if target:
        payload = {"step": step, "fraction": fraction, "message": message, "at": time.time()}
        tmp = Path(target).with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(target)  # atomic: a reader never sees half a file


def _tag_active_run(step: str, fraction: float, message: str) -> None:
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return
    mlflow.set_tags(
        {"progress.step": step, "progress.fraction": f"{fraction:.3f}", "progress.message": message[:250]}
    )
