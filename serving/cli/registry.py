"""`valuation promote` and `valuation status`: the registered model's versions and aliases, in the
MLflow tracking store of MLFLOW_TRACKING_URI."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from serving.cli.audit import actor, audit
from serving.cli.gate import promote_through_gate
from serving.cli.output import EXIT_USAGE, fail, print_table
from serving.settings import get_settings, mlflow_tracking_uri
from valuation import names


def promote(
    version: str | None = typer.Argument(
        None, help="The registered model version to point the alias at (none with --challenger)."),
    alias: str = typer.Option("champion", "--alias", help="champion (served) or challenger."),
    reason: str | None = typer.Option(
        None, "--reason", help="Why; recorded in the alias history (default: manual promotion)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Promote even a version that failed its evaluation thresholds."
    ),
    model: str | None = typer.Option(None, "--model", help="Registered model name."),
    challenger: bool = typer.Option(
        False, "--challenger",
        help="Make the challenger the champion, only if the promotion gate passes: on the same "
             "labelled live rows (shadow/canary with feedback) it must beat the champion by "
             "promotion_gate.margin. Exit 1 with the figures when it does not."),
) -> None:
    """Point an alias at a model version; the served model follows the champion alias."""
    from mlflow.exceptions import MlflowException

    from valuation.registry import move_alias

    registry = get_settings().registry
    name = model or registry.model_name
    allowed_aliases = (registry.champion_alias, registry.challenger_alias)
    if alias not in allowed_aliases:
        fail(f"unknown alias {alias!r}: expected one of {', '.join(allowed_aliases)}", EXIT_USAGE)
    if challenger:
        if version is not None or alias != registry.champion_alias or force:
            fail("--challenger moves the champion to the challenger's version through the "
                 "promotion gate: give no VERSION, --alias or --force with it", EXIT_USAGE)
        promote_through_gate(name, reason)
        return
    reason = reason or "manual promotion"
    if version is None:
        fail("give the VERSION to promote, or --challenger", EXIT_USAGE)
    if not version.strip().isdigit() or int(version) < 1:
        fail(f"version must be a positive integer, got {version!r}", EXIT_USAGE)
    version = str(int(version))
    client = _mlflow_client()
    try:
        details = client.get_model_version(name, version)
    except MlflowException:
        fail(f"model {name!r} has no version {version} in {mlflow_tracking_uri()}")
    if details.tags.get(names.VALIDATED_TAG) == "false" and not force:
        fail(
            f"version {version} failed its evaluation thresholds; pass --force to promote it anyway"
        )
    try:
        move = move_alias(client, name, alias, version, reason=reason, actor=actor())
    except MlflowException as exc:
        audit("promote:cli", status="error", model_name=name, model_version=version,
              inputs={"alias": alias, "reason": reason, "force": force}, detail=exc.message)
        fail(f"could not move {alias!r} to version {version}: {exc.message}")
    audit("promote:cli", model_name=name, model_version=move.to_version,
          inputs={"alias": alias, "reason": reason, "force": force},
          outputs={"from_version": move.from_version, "to_version": move.to_version})
    typer.echo(f"{name}: {alias} {move.from_version or '(none)'} -> {move.to_version} ({reason})")


def status(
    model: str | None = typer.Option(None, "--model", help="Registered model name."),
) -> None:
    """Registered versions with their aliases, and the history of alias moves."""
    from mlflow.exceptions import MlflowException

    from valuation.registry import alias_history

    name = model or get_settings().registry.model_name
    client = _mlflow_client()
    try:
        registered = client.get_registered_model(name)
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        fail(f"no registered model named {name!r} in {mlflow_tracking_uri()}")
    aliases_of: dict[str, list[str]] = {}
    for alias, number in (registered.aliases or {}).items():
        aliases_of.setdefault(str(number), []).append(alias)

    typer.echo(f"model {name} ({mlflow_tracking_uri()})")
    rows = [
        (
            str(v.version),
            ",".join(sorted(aliases_of.get(str(v.version), []))) or "-",
            _iso_seconds(v.creation_timestamp),
            v.tags.get(names.VALIDATED_TAG, "-"),
            v.tags.get(names.evaluation_metric("rmse"), "-"),
            v.tags.get(names.evaluation_metric("mae"), "-"),
            v.run_id or "-",
        )
        for v in sorted(versions, key=lambda v: int(v.version))
    ]
    print_table(
        ("VERSION", "ALIASES", "CREATED_AT", "VALIDATED", "TEST_RMSE", "TEST_MAE", "RUN_ID"),
        rows,
        empty="no versions",
    )
    typer.echo("")
    typer.echo("alias history")
    history = [
        (m.at, m.alias, m.from_version or "-", m.to_version, m.actor, m.reason,
         _gate_text(m.comparison))
        for m in alias_history(client, name)
    ]
    print_table(("AT", "ALIAS", "FROM", "TO", "ACTOR", "REASON", "GATE"), history,
                empty="no alias moves")


def _gate_text(comparison: dict | None) -> str:
    """The promotion gate's comparison of a move it allowed, in one cell."""
    if not comparison:
        return "-"
    return (f"{comparison['metric']} {comparison['challenger_figure']:.4g} vs "
            f"{comparison['champion_figure']:.4g} on {comparison['rows']} rows, "
            f"margin {comparison['margin']:.1%}")


def _mlflow_client():
    import mlflow

    return mlflow.MlflowClient(tracking_uri=mlflow_tracking_uri())


def _iso_seconds(timestamp_ms: int | None) -> str:
    if not timestamp_ms:
        return "-"
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="seconds")
