"""One scoring job: everything that can stop it is checked before any output is written (the
input and its columns, the model, the output's folder), then the chosen engine runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valuation.model_runtime.intervals import check_level
from valuation.scoring.inputs import BatchReader, ScoringInputError, parse_input
from valuation.scoring.model import resolve_model
from valuation.scoring.output import rejected_path
from valuation.scoring.summary import ScoringSummary

ENGINES = ("local", "spark")
ENV_MANAGERS = ("local", "virtualenv", "uv")
INTERVAL = "interval"  # the extra a model lists in its `prediction_extras` metadata when it has one


class ScoringUsageError(ValueError):
    """An engine or env manager this command does not know, an interval level out of range, or an
    interval asked of a model that has none."""


@dataclass(frozen=True)
class ScoringJob:
    input: str  # a path, table:NAME or query:SELECT ...
    output: Path
    model_uri: str
    tracking_uri: str
    batch_rows: int
    rejected_suffix: str
    engine: str = "local"
    spark_master: str = "local[*]"
    env_manager: str = "local"
    data_cfg: Any = None  # the database source's config (conf/data/postgres.yaml)
    progress: bool = True
    interval: float | None = None  # --interval: the level of a price interval per row (0.5 to 0.99)


def run(job: ScoringJob) -> ScoringSummary:
    """Score `job.input` into `job.output`. Raises ScoringInputError or ModelNotFoundError, before
    writing anything, when the job cannot run."""
    if job.engine not in ENGINES:
        raise ScoringUsageError(f"engine {job.engine!r}: expected one of {', '.join(ENGINES)}")
    if job.env_manager not in ENV_MANAGERS:
        raise ScoringUsageError(f"env manager {job.env_manager!r}: expected one of {', '.join(ENV_MANAGERS)}")
    interval = _checked_interval(job.interval)
    if not job.output.parent.is_dir():
        raise ScoringInputError(f"{job.output}: folder {job.output.parent} does not exist")
    source = parse_input(job.input)
    model = resolve_model(job.model_uri, job.tracking_uri)
    if interval is not None and INTERVAL not in model.extras:
        raise ScoringUsageError(
            f"--interval: {job.model_uri} (version {model.version}) has no interval calibration "
            f"(it can add: {', '.join(model.extras) or 'nothing'}); score without --interval or "
            "with a version trained with intervals.enabled")
    rejected = rejected_path(job.output, job.rejected_suffix)
    if job.engine == "spark":
        from valuation.scoring.spark import score_spark

        return score_spark(source, model, job.output, rejected, master=job.spark_master,
                           env_manager=job.env_manager, batch_rows=job.batch_rows,
                           data_cfg=job.data_cfg, interval=interval)
    from valuation.scoring.local import score_local

    model.pyfunc  # noqa: B018  (loaded now: a model that cannot load stops the job here)
    reader = BatchReader(source, job.batch_rows, job.data_cfg)
    return score_local(reader, model, job.output, rejected, progress=job.progress, interval=interval)


def _checked_interval(level: float | None) -> float | None:
    """The interval level, checked by the model runtime's own rule (as /predict checks it)."""
    if level is None:
        return None
    try:
        return check_level(level)
    except ValueError as exc:
        raise ScoringUsageError(f"--interval {level}: {exc}") from None
