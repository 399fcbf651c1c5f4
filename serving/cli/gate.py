"""`valuation promote --challenger`: the challenger becomes the champion only when the promotion
gate passes on live data (serving/monitoring/gate.py). Either way the comparison is printed and
audited; a refusal exits 1 with the reason and the figures."""

from __future__ import annotations

import typer
from omegaconf import OmegaConf

from serving.cli.audit import actor, audit
from serving.cli.output import fail
from serving.settings import get_settings, mlflow_tracking_uri
from valuation import names


def promote_through_gate(name: str, note: str | None) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from serving.cli.store import open_store
    from serving.monitoring.gate import GateMoved, evaluate_gate, promote_challenger
    from serving.redaction import redact_uri

    settings = get_settings()
    if name != settings.registry.model_name:
        settings = OmegaConf.merge(settings, {"registry": {"model_name": name}})
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    engine, store = open_store(migrate=False)
    try:
        result = evaluate_gate(settings, client, engine)
    except SQLAlchemyError as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:300]
        fail(f"the prediction store {redact_uri(store.database_url)} cannot be read: {cause}")
    except MlflowException as error:
        fail(f"the MLflow registry at {mlflow_tracking_uri()} failed: {error.message}")
    finally:
        engine.dispose()
    _print_comparison(result)
    inputs = {"challenger": True, "reason": note}
    if not result.passed:
        audit("promote:gate", status="refused", model_name=name,
              model_version=result.challenger_version, inputs=inputs,
              outputs=result.to_dict(), detail=result.reason)
        fail(f"promotion gate refused: {result.reason}")
    tags = client.get_model_version(name, str(result.challenger_version)).tags
    if tags.get(names.VALIDATED_TAG) == "false":
        fail(f"version {result.challenger_version} failed its evaluation thresholds; promote it "
             "by number with --force if it must be served anyway")
    try:
        move = promote_challenger(settings, client, result, actor(), note)
    except GateMoved as moved:
        fail(str(moved))
    except MlflowException as error:
        audit("promote:gate", status="error", model_name=name,
              model_version=result.challenger_version, inputs=inputs, detail=error.message)
        fail(f"could not move the champion to version {result.challenger_version}: "
             f"{error.message}")
    audit("promote:gate", model_name=name, model_version=move.to_version, inputs=inputs,
          outputs={"from_version": move.from_version, "to_version": move.to_version,
                   "comparison": move.comparison})
    typer.echo(f"{name}: champion {move.from_version or '(none)'} -> {move.to_version} "
               f"(promotion gate passed)")


def _print_comparison(result) -> None:
    def figure(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    improvement = "-" if result.improvement is None else f"{result.improvement:+.1%}"
    from valuation.monitoring.live_error import HIGHER_IS_BETTER

    direction = "higher" if result.metric in HIGHER_IS_BETTER else "lower"
    typer.echo(f"promotion gate on {result.metric} ({direction} is better)")
    typer.echo(f"  rows:        {result.rows} labelled rows priced by both "
               f"(at least {result.min_rows})")
    typer.echo(f"  champion:    version {result.champion_version or '-'}: "
               f"{figure(result.champion_figure)}")
    typer.echo(f"  challenger:  version {result.challenger_version or '-'}: "
               f"{figure(result.challenger_figure)}")
    typer.echo(f"  improvement: {improvement} (margin {result.margin:.1%})")
    typer.echo(f"  passed:      {'yes' if result.passed else 'no'}")
