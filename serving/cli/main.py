"""The `valuation` command: its groups and commands, and where its logs go."""

from __future__ import annotations

import sys

import structlog
import typer

from serving.cli.feedback import feedback_app
from serving.cli.keys import keys_app
from serving.cli.monitor import monitor_app
from serving.cli.registry import promote, status
from serving.cli.score import score
from serving.cli.store import store_app
from serving.cli.traffic import traffic_app
from serving.logging import configure_logging

app = typer.Typer(
    help="Operate the valuation service: API keys, model promotion, batch scoring, feedback, "
         "the prediction store and shadow/canary traffic.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(monitor_app, name="monitor")
app.add_typer(feedback_app, name="feedback")
app.add_typer(store_app, name="store")
app.add_typer(traffic_app, name="traffic")
app.command()(promote)
app.command()(status)
app.command()(score)


class _CurrentStderr:
    """Whatever sys.stderr is when a log line is written (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@app.callback()
def _configure() -> None:
    # Only warnings and errors, on stderr: stdout carries the command's output (the new key).
    configure_logging(level="WARNING")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()))
