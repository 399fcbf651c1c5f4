"""`valuation traffic`: the shadow and canary split of every proxy replica, set at run time.

The setting is one Redis key (`traffic.redis_key`) that each proxy re-reads every
`traffic.refresh_s`; without it the config's `traffic:` fractions apply."""

from __future__ import annotations

import json

import typer

from serving.cli.audit import actor, audit
from serving.cli.output import EXIT_USAGE, fail
from serving.settings import get_settings

traffic_app = typer.Typer(
    help="Shadow and canary traffic for the challenger, on every proxy replica.",
    no_args_is_help=True)

_FRACTION = "A share of /predict requests, from 0 to 1 (0 = off)."


@traffic_app.command("set")
def set_split(
    shadow: float | None = typer.Option(
        None, "--shadow", help=f"{_FRACTION} Also priced by the challenger in the background."),
    canary: float | None = typer.Option(
        None, "--canary", help=f"{_FRACTION} Answered by the challenger (requests without an "
                               "explicit version or alias)."),
) -> None:
    """Set the shadow and/or canary fraction (one left out keeps its current value)."""
    from serving.traffic.split import InvalidSplit, write_split

    if shadow is None and canary is None:
        fail("give --shadow and/or --canary (fractions from 0 to 1)", EXIT_USAGE)
    settings, redis, traffic = _connect()
    current = _current(redis, traffic, replacing=True)
    try:
        split = write_split(redis, traffic,
                            shadow=current.shadow if shadow is None else shadow,
                            canary=current.canary if canary is None else canary, actor=actor())
    except InvalidSplit as error:
        fail(str(error), EXIT_USAGE)
    except _redis_errors() as error:
        fail(_unreachable(settings, error))
    audit("traffic:cli", inputs={"shadow": shadow, "canary": canary}, outputs=split.to_dict())
    typer.echo(f"traffic: shadow {split.shadow:g}, canary {split.canary:g} (every proxy applies "
               f"it within {traffic.refresh_s:g} s)")


@traffic_app.command("show")
def show() -> None:
    """The split in force (JSON): the run-time setting, or the config's."""
    _, redis, traffic = _connect()
    typer.echo(json.dumps(_current(redis, traffic).to_dict(), indent=2))


@traffic_app.command("reset")
def reset() -> None:
    """Drop the run-time setting: the config's `traffic:` fractions apply again."""
    from serving.traffic.split import clear_split

    settings, redis, traffic = _connect()
    try:
        split = clear_split(redis, traffic)
    except _redis_errors() as error:
        fail(_unreachable(settings, error))
    audit("traffic:cli", inputs={"reset": True}, outputs=split.to_dict())
    typer.echo(f"traffic: back to the config's shadow {split.shadow:g}, canary {split.canary:g}")


def _connect():
    from serving.jobs.queue import redis_connection
    from serving.traffic.settings import traffic_settings

    settings = get_settings()
    return settings, redis_connection(settings), traffic_settings(settings)


def _current(redis, traffic, replacing: bool = False):
    """The split in force. A key that holds no setting is an error, unless it is being replaced
    (`set` starts from the config's fractions then)."""
    from serving.traffic.split import InvalidSplit, config_split, read_split

    try:
        return read_split(redis, traffic)
    except InvalidSplit as error:
        if replacing:
            return config_split(traffic)
        fail(str(error))
    except _redis_errors() as error:
        fail(_unreachable(get_settings(), error))


def _redis_errors() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError


def _unreachable(settings, error: Exception) -> str:
    return (f"Redis at {settings.redis.host}:{settings.redis.port} is unavailable (the traffic "
            f"setting lives there): {error}")
