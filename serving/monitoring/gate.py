"""The promotion gate on live data, and the promotion it allows.

The gate compares the challenger with the champion on the same labelled rows: request rows the
challenger priced as a shadow or a canary, that have an observed price (feedback), each paired
with the champion's price of the same request row (the price it answered, or its background
price of a canary request). It reads them from the prediction store (`labelled_rows`), judges
them by `promotion_gate:` (valuation/monitoring/gate.py: the metric, at least `min_rows` rows,
better by at least `margin`), and `promote_challenger` moves `champion` only on a pass, recording
the comparison in the alias history. `valuation promote --challenger` and the monitoring job's
automatic policy (`promotion_gate.auto_promote`) both come here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from sqlalchemy import Engine

from serving.logging import get_logger
from serving.prediction_store.queries import labelled_rows
from valuation.monitoring.gate import GateResult, GateRule, judge, refused
from valuation.registry import AliasMove, alias_version, move_alias

log = get_logger(__name__)

CHALLENGER_ALIASES = ("shadow", "canary")  # how the challenger's prices of live traffic are stored
REQUEST_ROW = ["request_id", "row_index"]


class GateMoved(RuntimeError):
    """An alias moved between the gate's judgement and the promotion: judge again."""


def gate_rule(settings: DictConfig) -> GateRule:
    return GateRule.from_mapping(OmegaConf.to_container(settings.promotion_gate, resolve=True))


def paired_rows(engine: Engine, champion: str, challenger: str, since: datetime | None
                ) -> pd.DataFrame:
    """One row per labelled request row priced by both versions: the features, the observed
    price (the latest observation of the row) and both prices. Rows priced since `since`."""
    labelled = labelled_rows(engine, since=since)
    columns = ["request_id", "row_index", "sector", "observed_price", "observed_at",
               "champion_price", "challenger_price"]
    if labelled.empty:
        return pd.DataFrame(columns=columns)
    challenger_rows = labelled[(labelled.model_version == str(challenger))
                               & labelled.served_alias.isin(CHALLENGER_ALIASES)]
    champion_rows = labelled[labelled.model_version == str(champion)]
    keys = ["observation_id", *REQUEST_ROW]
    paired = challenger_rows.merge(
        champion_rows[[*keys, "price"]].drop_duplicates(keys),
        on=keys, suffixes=("_challenger", "_champion"))
    paired = (paired.sort_values(["observed_at", "observation_id"])
              .drop_duplicates(REQUEST_ROW, keep="last")  # a sale after an appraisal wins
              .rename(columns={"price_challenger": "challenger_price",
                               "price_champion": "champion_price"}))
    return paired[columns].reset_index(drop=True)


def evaluate_gate(settings: DictConfig, client: Any, engine: Engine,
                  now: datetime | None = None) -> GateResult:
    """The gate for the registry's current champion and challenger."""
    rule = gate_rule(settings)
    registry = settings.registry
    champion = alias_version(client, registry.model_name, registry.champion_alias)
    challenger = alias_version(client, registry.model_name, registry.challenger_alias)
    if challenger is None:
        return refused(rule, champion, None, f"model {registry.model_name!r} has no "
                       f"{registry.challenger_alias!r} alias: nothing to promote")
    if champion is None:
        return refused(rule, None, challenger, f"model {registry.model_name!r} has no "
                       f"{registry.champion_alias!r} to compare with: promote a version by "
                       "number first (valuation promote N)")
    if champion == challenger:
        return refused(rule, champion, challenger,
                       f"the challenger (version {challenger}) is already the champion")
    days = float(settings.promotion_gate.window_days)
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    return judge(paired_rows(engine, champion, challenger, since), rule, champion, challenger)


def promote_challenger(settings: DictConfig, client: Any, result: GateResult,
                       actor: str, note: str | None = None) -> AliasMove:
    """Move `champion` to the challenger the gate passed, recording the comparison. Raises
    GateMoved when either alias moved since the judgement."""
    if not result.passed:
        raise ValueError(f"the promotion gate did not pass: {result.reason}")
    registry = settings.registry
    now_champion = alias_version(client, registry.model_name, registry.champion_alias)
    now_challenger = alias_version(client, registry.model_name, registry.challenger_alias)
    if (now_champion, now_challenger) != (result.champion_version, result.challenger_version):
        raise GateMoved(f"the aliases moved since the gate judged (champion {now_champion}, "
                        f"challenger {now_challenger}); run the gate again")
    return move_alias(client, registry.model_name, registry.champion_alias,
                      str(result.challenger_version),
                      reason=f"{note + '; ' if note else ''}promotion gate: {result.reason}",
                      actor=actor, comparison=result.comparison())


AUTO_ACTOR = "monitoring"


def auto_promotion(settings: DictConfig, client: Any, engine: Engine,
                   now: datetime | None = None) -> dict[str, Any] | None:
    """The monitoring job's automatic policy: when `promotion_gate.auto_promote` is on, judge the
    gate and promote on a pass (audited). None when the policy is off. A store that cannot be
    read is reported in the outcome (and logged), not raised: the monitoring run goes on."""
    from sqlalchemy.exc import SQLAlchemyError

    if not bool(settings.promotion_gate.get("auto_promote", False)):
        return None
    try:
        result = evaluate_gate(settings, client, engine, now)
    except SQLAlchemyError as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:300]
        log.error("promotion_gate_unreadable_store", error=cause)
        return {"promoted": False, "gate": None, "detail": f"the prediction store cannot be "
                                                           f"read: {cause}"}
    outcome: dict[str, Any] = {"promoted": False, "gate": result.to_dict(),
                               "detail": result.reason}
    if not result.passed:
        log.info("promotion_gate_refused", reason=result.reason)
        return outcome
    try:
        move = promote_challenger(settings, client, result, AUTO_ACTOR)
    except GateMoved as moved:
        outcome["detail"] = str(moved)
        return outcome
    outcome.update(promoted=True, from_version=move.from_version, to_version=move.to_version)
    _audit_promotion(settings, result, move)
    log.warning("challenger_promoted", from_version=move.from_version,
                to_version=move.to_version, reason=result.reason)
    return outcome


def _audit_promotion(settings: DictConfig, result: GateResult, move: AliasMove) -> None:
    from serving.audit import AuditLog

    trail = AuditLog.from_settings(settings, rotate=False)
    try:
        trail.record("promote:gate", status="ok", actor=AUTO_ACTOR,
                     model_name=settings.registry.model_name, model_version=move.to_version,
                     inputs={"auto_promote": True},
                     outputs={"from_version": move.from_version, "to_version": move.to_version,
                              "comparison": move.comparison},
                     detail=result.reason)
    finally:
        trail.close()
