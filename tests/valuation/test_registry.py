"""Aliases and their recorded history, against a real (SQLite-backed) MLflow registry."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from valuation.registry import alias_history, alias_version, move_alias, register_version, version_for_source


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [1.0] * len(model_input)


@pytest.fixture
def two_versions(tracking_uri: str) -> tuple[MlflowClient, str]:
    client = MlflowClient(tracking_uri=tracking_uri)
    uris = []
    for _ in range(2):
        with mlflow.start_run():
            uris.append(mlflow.pyfunc.log_model(name="model", python_model=_Constant()).model_uri)
    for uri in uris:
        register_version(client, "valuation_test", uri, tags={"valuation.model_uri": uri})
    return client, uris[1]


def test_moves_are_applied_and_recorded_in_order(two_versions) -> None:
    client, _ = two_versions
    assert alias_version(client, "valuation_test", "champion") is None
    first = move_alias(client, "valuation_test", "champion", "1", reason="first", actor="tester")
    second = move_alias(client, "valuation_test", "champion", "2", reason="better rmse")
    assert alias_version(client, "valuation_test", "champion") == "2"
    assert (first.from_version, first.to_version) == (None, "1")
    assert (second.from_version, second.to_version) == ("1", "2")
    history = alias_history(client, "valuation_test")
    assert [(m.alias, m.from_version, m.to_version, m.reason) for m in history] == [
        ("champion", None, "1", "first"),
        ("champion", "1", "2", "better rmse"),
    ]
    assert history[0].actor == "tester"


def test_moving_to_an_unknown_version_fails_and_records_nothing(two_versions) -> None:
    client, _ = two_versions
    with pytest.raises(mlflow.exceptions.MlflowException):
        move_alias(client, "valuation_test", "champion", "99", reason="typo")
    assert alias_history(client, "valuation_test") == []


def test_version_for_source_finds_the_registered_uri(two_versions) -> None:
    client, second_uri = two_versions
    assert version_for_source(client, "valuation_test", second_uri) == "2"
    assert version_for_source(client, "valuation_test", "models:/m-nothing") is None
