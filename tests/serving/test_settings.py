"""The proxy's settings: conf/serving.yaml checked and typed once when the app is built, and the
registry block defined once for the pipeline and the serving side."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from pydantic import ValidationError

from serving.app import create_app
from serving.settings import ServingSettings
from tests.support.serving import serving_settings
from valuation.config import CONFIG_DIR, load_config


def test_settings_are_typed_with_the_tracking_uri_resolved(
    tmp_path, empty_registry, monkeypatch
) -> None:
    typed = ServingSettings.from_config(
        serving_settings(tmp_path, empty_registry, proxy={"max_rows": "25"}))
    assert typed.proxy.max_rows == 25
    assert typed.tracking_uri == empty_registry
    assert typed.registry.model_name == "property_friends_best_model"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    unset = ServingSettings.from_config(serving_settings(tmp_path, None))
    assert unset.tracking_uri.startswith("sqlite:///") and unset.tracking_uri.endswith("mlflow.db")


def test_a_mistyped_value_stops_the_app_from_being_built(tmp_path, empty_registry) -> None:
    config = serving_settings(tmp_path, empty_registry, proxy={"max_rows": "many"})
    with pytest.raises(ValidationError, match=r"proxy\.max_rows"):
        create_app(settings=config)


def test_the_registry_is_defined_once_and_composed_into_both_configs() -> None:
    shared = OmegaConf.load(CONFIG_DIR / "registry.yaml").registry
    for name in ("config", "serving"):
        own = OmegaConf.load(CONFIG_DIR / f"{name}.yaml").get("registry") or {}
        assert not set(own) & set(shared), f"{name}.yaml repeats {sorted(set(own) & set(shared))}"
        composed = load_config(config_name=name).registry
        assert {key: composed[key] for key in shared} == dict(shared), name
