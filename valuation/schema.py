"""Names of the columns the model reads and predicts. Everything else imports them from here."""

from __future__ import annotations

CATEGORICAL_FEATURES: tuple[str, ...] = ("type", "sector")
NUMERIC_FEATURES: tuple[str, ...] = (
    "net_usable_area",
    "net_area",
    "n_rooms",
    "n_bathroom",
    "latitude",
    "longitude",
)
FEATURES: tuple[str, ...] = CATEGORICAL_FEATURES + NUMERIC_FEATURES
AREA_FEATURES: tuple[str, ...] = ("net_usable_area", "net_area")
COUNT_FEATURES: tuple[str, ...] = ("n_rooms", "n_bathroom")
TARGET = "price"
