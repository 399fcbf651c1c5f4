"""Why this price: an exact additive decomposition of the log price onto the eight inputs.

The price is exp(log_price), with log_price = (1 - w) * g + w * s: g is the estimator's log price
(LightGBM on a log target), s the similar listings' log price and w the blend weight. So

    log_price = base + sum(feature contributions) + similar_listings

* base + feature contributions = g: LightGBM's own TreeSHAP (`pred_contrib`); base is its expected
  output over the training data. Each engineered column's share is folded back onto the inputs it
  is computed from (FOLD below: a column made from two inputs gives each half).
* similar_listings = log_price - g = w * (s - g): how far blending in the most similar training
  listings moved the price.

Read in UF: the price is exp(base) times exp(c) for every part c, so exp(c) is the factor a part
multiplies the price by (exp(0.10) = +10.5 %, exp(-0.05) = -4.9 %).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .features import ENGINEERED_FEATURE_NAMES, LANDMARKS, ROTATION_DEGREES
from .fitted import FittedModel, PriceParts
from .schema import FEATURES

SPACE = "log_price"
SIMILAR_PART = "similar_listings"
PARTS: tuple[str, ...] = (*FEATURES, SIMILAR_PART)

# Engineered column -> the inputs it is computed from, with the share of its contribution each gets.
_COORDINATES = {"latitude": 0.5, "longitude": 0.5}
FOLD: dict[str, dict[str, float]] = {
    "is_casa": {"type": 1.0},
    "sector_code": {"sector": 1.0},
    "usable_area": {"net_usable_area": 1.0},
    "total_area": {"net_area": 1.0},
    "usable_to_total": {"net_usable_area": 0.5, "net_area": 0.5},
    "usable_per_room": {"net_usable_area": 0.5, "n_rooms": 0.5},
    "bathrooms_per_room": {"n_bathroom": 0.5, "n_rooms": 0.5},
    "n_rooms": {"n_rooms": 1.0},
    "n_bathroom": {"n_bathroom": 1.0},
    "latitude": {"latitude": 1.0},
    "longitude": {"longitude": 1.0},
    **{f"coord_rot{int(d)}": _COORDINATES for d in ROTATION_DEGREES},
    **{f"km_to_{name}": _COORDINATES for name in LANDMARKS},
}
_FOLD_MATRIX = np.array([[FOLD[name].get(feature, 0.0) for feature in FEATURES]
                         for name in ENGINEERED_FEATURE_NAMES])


class NotExplainable(ValueError):
    """This model cannot decompose its price (not LightGBM on a log target)."""


def explain_reason(fitted: FittedModel) -> str | None:
    """Why this model cannot explain its prices, or None when it can."""
    if not hasattr(_booster(fitted), "feature_importance"):
        return "explanations need a LightGBM estimator (TreeSHAP); this model's is not"
    if fitted.target_transform != "log" or fitted.encoder.kind != "engineered":
        return "explanations need the engineered features and a log target"
    return None


def _booster(fitted: FittedModel):
    """The lightgbm.Booster (a freshly fitted LGBMRegressor holds it as booster_)."""
    return getattr(fitted.estimator, "booster_", fitted.estimator)


def explain(fitted: FittedModel, columns: Mapping[str, np.ndarray], parts: PriceParts) -> list[dict]:
    """One explanation per row: {"space", "base", "contributions": {input: c, ...,
    "similar_listings": c}} with base + sum(contributions) == log(price)."""
    reason = explain_reason(fitted)
    if reason is not None:
        raise NotExplainable(reason)
    shap = np.asarray(_booster(fitted).predict(parts.matrix, pred_contrib=True,
                                               num_threads=1 if len(parts.matrix) <= 512 else 0))
    base = shap[:, -1]
    by_input = shap[:, :-1] @ _FOLD_MATRIX
    # Whatever separates the final log price from TreeSHAP's sum is the similar listings' move
    # (w * (s - g)); defined so the parts add up exactly.
    similar = parts.log_price - shap.sum(axis=1)
    explanations = []
    for row in range(len(base)):
        contributions = dict(zip(FEATURES, by_input[row].tolist(), strict=True))
        contributions[SIMILAR_PART] = float(similar[row])
        explanations.append({"space": SPACE, "base": float(base[row]), "contributions": contributions})
    return explanations
