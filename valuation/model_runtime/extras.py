"""What a prediction may carry beside the price, asked through MLflow's `params`: an interval,
an explanation, comparable listings.

`mlflow models serve` takes `{"inputs": [...], "params": {"interval": 0.8, "explain": true,
"comparables": 3}}`; the model's signature declares these params with defaults that ask for
nothing (interval 0.0, explain false, comparables 0), so a plain call keeps the plain path and
answers a list of prices. When anything is asked, each row's answer is an object:
`{"price": UF, "interval": {...}, "explanation": {...}, "comparables": [...]}` (only what was asked).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .explain import explain, explain_reason
from .fitted import FittedModel
from .intervals import IntervalCalibration, check_level

# The params schema's example, which MLflow turns into the defaults: nothing asked.
PARAMS_DEFAULTS: dict[str, Any] = {"interval": 0.0, "explain": False, "comparables": 0}
MAX_COMPARABLES = 10
# The model metadata key listing what this model can add (the proxy reads it before asking).
METADATA_KEY = "prediction_extras"


@dataclass(frozen=True)
class ExtrasAsked:
    interval: float | None = None
    explain: bool = False
    comparables: int = 0

    @property
    def any(self) -> bool:
        return self.interval is not None or self.explain or self.comparables > 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> ExtrasAsked:
        """What `params` ask for; ValueError naming the param when a value is out of range."""
        if not params:
            return cls()
        interval = params.get("interval")
        level = None if interval in (None, 0, 0.0) else check_level(interval)
        comparables = int(params.get("comparables") or 0)
        if not 0 <= comparables <= MAX_COMPARABLES:
            raise ValueError(f"param 'comparables' must be between 0 and {MAX_COMPARABLES}, "
                             f"got {comparables}")
        return cls(interval=level, explain=bool(params.get("explain") or False),
                   comparables=comparables)


def available_extras(fitted: FittedModel, calibration: IntervalCalibration | None) -> list[str]:
    """Which extras this model can give (written to its metadata at logging time)."""
    found = []
    if calibration is not None:
        found.append("interval")
    if explain_reason(fitted) is None:
        found.append("explain")
    if fitted.encoder.similar is not None and fitted.encoder.similar.has_listings:
        found.append("comparables")
    return found


def missing_extras(asked: ExtrasAsked, available: list[str]) -> list[str]:
    wanted = [name for name, on in (("interval", asked.interval is not None),
                                    ("explain", asked.explain),
                                    ("comparables", asked.comparables > 0)) if on]
    return [name for name in wanted if name not in available]


def predict_with_extras(fitted: FittedModel, calibration: IntervalCalibration | None,
                        columns: Mapping[str, np.ndarray], asked: ExtrasAsked) -> list[dict[str, Any]]:
    """One object per row with the price and what `asked` asks for."""
    missing = missing_extras(asked, available_extras(fitted, calibration))
    if missing:
        raise ValueError(f"this model cannot give {', '.join(missing)}")
    parts = fitted.price_parts(columns)
    answers: list[dict[str, Any]] = [{"price": p} for p in parts.price.tolist()]
    if asked.interval is not None:
        lower, upper = calibration.bounds(fitted, columns, parts, asked.interval)
        for answer, lo, hi in zip(answers, lower.tolist(), upper.tolist(), strict=True):
            answer["interval"] = {"lower": lo, "upper": hi, "level": asked.interval}
    if asked.explain:
        for answer, explanation in zip(answers, explain(fitted, columns, parts), strict=True):
            answer["explanation"] = explanation
    if asked.comparables:
        found = fitted.encoder.similar.comparables(columns, asked.comparables)
        for answer, listings in zip(answers, found, strict=True):
            answer["comparables"] = listings
    return answers
