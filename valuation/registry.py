"""Model registry helpers: versions, aliases, and a readable history of every alias move.

MLflow 3 deprecates registry stages; aliases replace them. The mapping we use:
Staging ~ alias `challenger`, Production ~ alias `champion` (the version the API serves).
Every move is recorded as a registered-model tag `alias_history.<seq>` holding JSON, so
`valuation status` and the API can read back when an alias moved, from which version, and why
(and, for a move the promotion gate allowed, the comparison it made: rows, both figures, margin).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from valuation.names import ALIAS_HISTORY_TAG_PREFIX, MODEL_URI_TAG, TEST_METRIC_PREFIX


@dataclass(frozen=True)
class AliasMove:
    alias: str
    from_version: str | None
    to_version: str
    reason: str
    at: str  # ISO 8601, UTC
    actor: str
    # The promotion gate's comparison on live data, for a move it allowed (older moves: None).
    comparison: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the model or the alias does not exist."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def move_alias(
    client: MlflowClient, name: str, alias: str, version: str, reason: str, actor: str = "pipeline",
    comparison: dict[str, Any] | None = None,
) -> AliasMove:
    """Point `alias` at `version` and record the move (also when it already pointed there), with
    the promotion gate's `comparison` when the gate allowed it."""
    client.get_model_version(name, str(version))  # fails clearly for an unknown version
    previous = alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, str(version))
    move = AliasMove(
        alias=alias,
        from_version=previous,
        to_version=str(version),
        reason=reason,
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        actor=actor,
        comparison=comparison,
    )
    sequence = len(_history_tags(client, name)) + 1
    client.set_registered_model_tag(name, f"{ALIAS_HISTORY_TAG_PREFIX}{sequence:06d}", move.to_json())
    return move


def alias_history(client: MlflowClient, name: str) -> list[AliasMove]:
    """Every recorded alias move, oldest first."""
    moves = []
    for _, value in sorted(_history_tags(client, name).items()):
        moves.append(AliasMove(**json.loads(value)))
    return moves


def _history_tags(client: MlflowClient, name: str) -> dict[str, str]:
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return {}
    return {k: v for k, v in model.tags.items() if k.startswith(ALIAS_HISTORY_TAG_PREFIX)}


def register_version(
    client: MlflowClient, name: str, model_uri: str, tags: dict[str, str], run_id: str | None = None
) -> str:
    """Register `model_uri` as a new version of `name` (creating the model if needed)."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Residential property valuation for Santiago, Chile (price in UF)."
        )
    # A logged model (MLflow 3, `models:/m-...`) must be named by id too: a tracking server
    # refuses the version otherwise, although a direct SQLite store does not check.
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    version = client.create_model_version(
        name, source=model_uri, run_id=run_id, tags={k: str(v) for k, v in tags.items()}, model_id=model_id
    )
    return str(version.version)


def version_for_source(client: MlflowClient, name: str, model_uri: str) -> str | None:
    """An existing version registered from `model_uri`, if any."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for version in versions:
        if version.source == model_uri or version.tags.get(MODEL_URI_TAG) == model_uri:
            return str(version.version)
    return None


def evaluation_metric_tags(metrics: Mapping[str, float]) -> dict[str, str]:
    """An evaluation run's test metrics as version tags, so the registry shows them."""
    return {k: f"{v:.6g}" for k, v in metrics.items() if k.startswith(TEST_METRIC_PREFIX)}
