"""The model's artifact directory: the fitted model and its row rules as JSON, npz and native
estimator files, written at training time and read by the pyfunc at load time (no pickle)."""

from __future__ import annotations

import json
from pathlib import Path

from .features import FeatureEncoder
from .fitted import FittedModel
from .intervals import IntervalCalibration
from .storage import load_estimator, save_estimator
from .validation import ValidationRules

RULES_FILE = "validation_rules.json"
MODEL_FILE = "model.json"
INTERVALS_DIR = "intervals"  # absent in models trained before intervals existed


def save_bundle(fitted: FittedModel, rules: ValidationRules, estimator_key: str, directory: Path,
                calibration: IntervalCalibration | None = None) -> Path:
    """Write everything the pyfunc needs into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    if calibration is not None:
        calibration.save(directory / INTERVALS_DIR)
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


def load_calibration(directory: Path) -> IntervalCalibration | None:
    """The bundle's interval calibration, or None for a model trained without one."""
    found = directory / INTERVALS_DIR
    return IntervalCalibration.load(found) if found.is_dir() else None
