"""`valuation score INPUT OUTPUT`: price every row of a file, a folder of parquet files or a
database table into a parquet file (valuation/scoring does the work; conf/config.yaml `scoring:`
holds the defaults)."""

from __future__ import annotations

from pathlib import Path

import typer

from serving.cli.output import EXIT_USAGE, fail
from serving.redaction import redact_uri


def score(
    input: str = typer.Argument(
        ..., help="A .csv or .parquet file, a folder of parquet files, table:NAME or query:SELECT ... "
                  "(the database of conf/data/postgres.yaml; its URL in the env var named there)."),
    output: Path = typer.Argument(..., help="The parquet file to write; rejected rows go beside it."),
    model: str | None = typer.Option(
        None, "--model", help="models:/NAME@ALIAS or models:/NAME/VERSION [default: scoring.model_uri]"),
    engine: str | None = typer.Option(None, "--engine", help="local or spark [default: scoring.engine]"),
    master: str | None = typer.Option(
        None, "--master", help="Spark master [default: scoring.spark_master, local[*]]"),
    env_manager: str | None = typer.Option(
        None, "--env-manager",
        help="How Spark builds the model's environment: local, virtualenv or uv "
             "[default: scoring.env_manager]"),
    batch_rows: int | None = typer.Option(None, "--batch-rows", min=1,
                                          help="Rows per batch [default: scoring.batch_rows]"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    interval: float | None = typer.Option(
        None, "--interval", metavar="LEVEL",
        help="Add each price's interval at this coverage level (0.5 to 0.99): columns price_lower, "
             "price_upper and interval_level."),
) -> None:
    """Price every row of INPUT into OUTPUT (parquet): the input's columns plus price (with
    --interval, price_lower, price_upper and interval_level), model_name, model_version and status;
    rejected rows (row, field, message) go to a side file."""
    from valuation.config import load_config, tracking_uri
    from valuation.scoring.inputs import ScoringInputError
    from valuation.scoring.job import ScoringJob, ScoringUsageError, run
    from valuation.scoring.model import ModelNotFoundError

    cfg = load_config(["data=postgres"])
    defaults = cfg.scoring
    store = tracking_uri(cfg.tracking_uri)
    job = ScoringJob(
        input=input, output=output, model_uri=model or defaults.model_uri, tracking_uri=store,
        batch_rows=batch_rows or int(defaults.batch_rows), rejected_suffix=defaults.rejected_suffix,
        engine=engine or defaults.engine, spark_master=master or defaults.spark_master,
        env_manager=env_manager or defaults.env_manager, data_cfg=cfg.data, progress=progress,
        interval=interval,
    )
    try:
        summary = run(job)
    except ModelNotFoundError as exc:
        fail(f"{exc} (tracking store {redact_uri(store)})")
    except ScoringInputError as exc:
        fail(str(exc))
    except ScoringUsageError as exc:
        fail(str(exc), EXIT_USAGE)
    typer.echo(str(summary))
