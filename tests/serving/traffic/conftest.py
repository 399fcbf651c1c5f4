"""Fixtures of the traffic and promotion-gate tests: the prediction store on both of its
databases (tests/support/store.py), and a registry of four registered versions (no model files:
the gate reads only aliases and the store)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from tests.support.store import (  # noqa: F401  (fixtures: pytest finds them by name here)
    engine,
    pg_schema,
    store_url,
)
from valuation.config import load_config
from valuation.registry import register_version


@dataclass(frozen=True)
class GateRegistry:
    client: MlflowClient
    tracking_uri: str
    name: str

    def aliases(self, champion: str | None, challenger: str | None) -> None:
        for alias, version in (("champion", champion), ("challenger", challenger)):
            if version is None:
                continue
            self.client.set_registered_model_alias(self.name, alias, version)

    def settings(self, **gate: object) -> DictConfig:
        """conf/serving.yaml for this model, with `promotion_gate` overrides."""
        return OmegaConf.merge(load_config(config_name="serving"), {
            "registry": {"model_name": self.name},
            "mlflow": {"tracking_uri": self.tracking_uri},
            "promotion_gate": gate,
        })


@pytest.fixture(scope="module")
def gate_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store per module (creating one costs seconds); a model of its own per test."""
    return f"sqlite:///{tmp_path_factory.mktemp('gate-registry') / 'mlflow.db'}"


@pytest.fixture
def gate_registry(gate_tracking_uri: str, tmp_path: Path) -> GateRegistry:
    uri = gate_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = f"model_{uuid.uuid4().hex[:8]}"
    source = tmp_path / "model"
    source.mkdir()
    for _ in range(4):
        register_version(client, name, str(source), tags={"valuation.validated": "true"})
    return GateRegistry(client, uri, name)
