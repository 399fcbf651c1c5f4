"""The proxy's settings: conf/serving.yaml checked and typed once when the app is built, and the
registry block defined once for the pipeline and the serving side."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize(("env", "per_role"), [
    ('{"admin": null, "predict": "100/second"}', {"admin": None, "predict": "100/second"}),
    ("", {}),  # compose passes the variable empty when .env leaves it unset
    (None, {}),
])
def test_per_role_rate_limits_come_from_the_environment(
    tmp_path, empty_registry, monkeypatch, env, per_role
) -> None:
    if env is None:
        monkeypatch.delenv("RATE_LIMIT_PER_ROLE", raising=False)
    else:
        monkeypatch.setenv("RATE_LIMIT_PER_ROLE", env)
    typed = ServingSettings.from_config(serving_settings(tmp_path, empty_registry))
    assert typed.rate_limit.per_role == per_role


def test_a_per_role_mapping_written_in_the_yaml_is_taken(tmp_path, empty_registry) -> None:
    config = serving_settings(tmp_path, empty_registry, rate_limit={"per_role": {"train": "2/minute"}})
    assert ServingSettings.from_config(config).rate_limit.per_role == {"train": "2/minute"}


@pytest.mark.parametrize(("env", "named"), [
    ("admin=none", "must be a JSON object"),
    ('["admin"]', "must be a JSON object"),
    ('{"admins": null}', "unknown role 'admins'"),
    ('{"admin": "100 per second"}', "role 'admin': invalid rate limit"),
    ('{"admin": 100}', "role 'admin': invalid rate limit"),
])
def test_a_bad_per_role_value_stops_the_start_naming_the_variable(
    tmp_path, empty_registry, monkeypatch, env, named
) -> None:
    monkeypatch.setenv("RATE_LIMIT_PER_ROLE", env)
    config = serving_settings(tmp_path, empty_registry)
    message = rf"rate_limit\.per_role\n.*RATE_LIMIT_PER_ROLE.*{re.escape(named)}"
    with pytest.raises(ValidationError, match=message):
        create_app(settings=config)
