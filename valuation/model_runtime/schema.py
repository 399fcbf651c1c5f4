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
TARGET = "price"

# The specification's example property: the logged model's input example, the API's /docs example.
EXAMPLE_ROW: dict[str, str | float] = {
    "type": "casa",
    "sector": "lo barnechea",
    "net_usable_area": 300.0,
    "net_area": 500.0,
    "n_rooms": 6.0,
    "n_bathroom": 5.0,
    "latitude": -33.3561,
    "longitude": -70.5072,
}
