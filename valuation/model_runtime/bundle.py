"""The model's artifact directory: the fitted model and its row rules as JSON, npz and native
estimator files, written at training time and read by the pyfunc at load time (no pickle)."""

from __future__ import annotations

import json
from pathlib import Path

from .features import FeatureEncoder
from .fitted import FittedModel
from .storage import load_estimator, save_estimator
from .validation import ValidationRules

RULES_FILE = "validation_rules.json"
MODEL_FILE = "model.json"


def save_bundle(fitted: FittedModel, rules: ValidationRules, estimator_key: str, directory: Path) -> Path:
    """Write everything the pyfunc needs into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    fitted.encoder.save(directory / "encoder")
    save_estimator(fitted.estimator, directory / "estimator", estimator_key)
    (directory / MODEL_FILE).write_text(
        json.dumps({"target_transform": fitted.target_transform, "estimator": estimator_key})
    )
    (directory / RULES_FILE).write_text(json.dumps(rules.to_dict(), indent=2))
    return directory


def load_bundle(directory: Path) -> tuple[FittedModel, ValidationRules]:
    meta = json.loads((directory / MODEL_FILE).read_text())
    fitted = FittedModel(
        encoder=FeatureEncoder.load(directory / "encoder"),
        estimator=load_estimator(directory / "estimator"),
        target_transform=meta["target_transform"],
    )
    rules = ValidationRules.from_dict(json.loads((directory / RULES_FILE).read_text()))
    return fitted, rules
