"""Named cleaning rules for TRAINING data (test data is never cleaned), configured by
``cfg.cleaning``. Rules run in the fixed order of :data:`RULES`; each reports how many rows it
removed, so a rule that fires only after another has already dropped a row is not double-counted:

1. ``price_below_min``    price < min_price (the 0 and sub-1,000 UF prices are typos)
2. ``price_above_max``    price > max_price
3. ``too_many_rooms``     n_rooms > max_rooms (e.g. "55 rooms")
4. ``too_many_bathrooms`` n_bathroom > max_bathrooms
5. ``zero_area``          net_usable_area <= 0 or net_area <= 0 (only when drop_zero_areas)
6. ``duplicate``          an exact copy of an earlier row (only when drop_duplicates)

A null limit disables its rule (it then reports 0). Findings are counted but never removed:
``usable_exceeds_total`` (usable area > total area; plausible data-entry swaps the model copes
with, and clients send such rows too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

RuleMask = Callable[[pd.DataFrame, Mapping[str, Any]], "pd.Series | None"]


def _price_below_min(frame: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.Series | None:
    limit = cfg.get("min_price")
    return None if limit is None else frame["price"] < float(limit)


def _price_above_max(frame: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.Series | None:
    limit = cfg.get("max_price")
    return None if limit is None else frame["price"] > float(limit)


def _too_many_rooms(frame: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.Series | None:
    limit = cfg.get("max_rooms")
    return None if limit is None else frame["n_rooms"] > float(limit)


def _too_many_bathrooms(frame: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.Series | None:
    limit = cfg.get("max_bathrooms")
    return None if limit is None else frame["n_bathroom"] > float(limit)


def _zero_area(frame: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.Series | None:
    if not cfg.get("drop_zero_areas", False):
        return None
    return (frame["net_usable_area"] <= 0) | (frame["net_area"] <= 0)


def _duplicate(frame: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.Series | None:
    return frame.duplicated(keep="first") if cfg.get("drop_duplicates", False) else None


# The order is part of the contract: counts depend on it.
RULES: tuple[tuple[str, RuleMask], ...] = (
    ("price_below_min", _price_below_min),
    ("price_above_max", _price_above_max),
    ("too_many_rooms", _too_many_rooms),
    ("too_many_bathrooms", _too_many_bathrooms),
    ("zero_area", _zero_area),
    ("duplicate", _duplicate),
)
RULE_NAMES: tuple[str, ...] = tuple(name for name, _ in RULES)

FINDINGS: tuple[tuple[str, Callable[[pd.DataFrame], pd.Series]], ...] = (
    ("usable_exceeds_total", lambda f: f["net_usable_area"] > f["net_area"]),
)


@dataclass(frozen=True)
class CleaningReport:
    frame: pd.DataFrame  # the kept rows, index reset
    removed: dict[str, int]  # every rule in RULES order, 0 when it is disabled or found nothing
    findings: dict[str, int] = field(default_factory=dict)  # counted on the kept rows

    @property
    def rows_removed(self) -> int:
        return sum(self.removed.values())


def clean(frame: pd.DataFrame, cleaning_cfg: Mapping[str, Any]) -> CleaningReport:
    """Apply the rules of :data:`RULES` in order to a schema-checked training frame."""
    cfg = dict(cleaning_cfg or {})
    unknown = set(cfg) - {
        "min_price", "max_price", "max_rooms", "max_bathrooms", "drop_zero_areas", "drop_duplicates"
    }
    if unknown:
        raise ValueError(f"unknown cleaning option(s): {', '.join(sorted(unknown))}")
    removed: dict[str, int] = {}
    for name, rule in RULES:
        mask = rule(frame, cfg)
        if mask is None:
            removed[name] = 0
            continue
        mask = mask.fillna(False).astype(bool)
        removed[name] = int(mask.sum())
        frame = frame.loc[~mask]
    frame = frame.reset_index(drop=True)
    findings = {name: int(test(frame).sum()) for name, test in FINDINGS}
    return CleaningReport(frame=frame, removed=removed, findings=findings)
