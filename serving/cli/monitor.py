"""`valuation monitor run`: one monitoring run now, in this process (the worker runs the
scheduled ones). Prints the run's summary as JSON; exit 1 when there was nothing to monitor."""

from __future__ import annotations

import json

import typer

from serving.cli.output import fail
from serving.settings import get_settings

monitor_app = typer.Typer(help="Drift and live-error monitoring of the served version.",
                          no_args_is_help=True)


@monitor_app.command("run")
def run() -> None:
    """Compare the served version's recent traffic and live error with its reference now."""
    from mlflow.exceptions import MlflowException
    from redis.exceptions import RedisError

    from serving.jobs.queue import redis_connection
    from serving.monitoring.job import MonitoringSkipped, monitor, open_store, summary
    from serving.monitoring.store_reader import StoreUnavailable

    settings = get_settings()
    try:
        report = monitor(settings, redis=redis_connection(settings), store=open_store(settings),
                         trigger="cli")
    except (MonitoringSkipped, StoreUnavailable) as problem:
        fail(str(problem))
    except RedisError as error:
        fail(f"Redis at {settings.redis.host}:{settings.redis.port} is unavailable (the figures "
             f"for /metrics and the retraining cool-down live there): {error}")
    except MlflowException as error:
        fail(f"the MLflow tracking store failed: {error.message}")
    typer.echo(json.dumps(summary(report), indent=2, default=str))
