"""Feature engineering: the 8 listing fields -> the float matrix the estimator reads.

Two encodings:

* ``raw`` reproduces the original notebook: `type` and `sector` replaced by their smoothed mean
  price (fitted in-sample, as the notebook's category_encoders TargetEncoder was), numerics as is.
* ``engineered`` is the production encoding: zero areas become "unknown" (NaN, which gradient
  boosting routes on its own), area ratios, coordinates rotated so that trees can cut along
  diagonals, and distances to the city's price landmarks. None of its columns derives from the
  target. It also carries, when configured, the similar-listings index (valuation.model_runtime.neighbours):
  the k-NN price that valuation.training blends with the estimator's price.

``transform`` works on plain numpy columns (the output of ``ValidationRules.validate_frame``) with
no pandas, so one row costs tens of microseconds. Everything fitted is saved as JSON + npz: no
pickle, and loading never executes stored code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .neighbours import KM_PER_DEG_LAT, KM_PER_DEG_LON, SimilarListings
from .schema import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES

KINDS = ("raw", "engineered")
ENCODER_FILE = "encoder.json"
ARRAYS_FILE = "arrays.npz"

# Origin of the local km grid (roughly Las Condes); only differences matter to trees.
GRID_ORIGIN = (-33.42, -70.58)
# Trees split on one axis at a time: rotated copies of the coordinates let them follow the
# diagonal price gradients of Santiago's east side (toward the Andes, along the Mapocho).
ROTATION_DEGREES = (15.0, 30.0, 45.0, 60.0, 75.0)
# Price anchors of the east side: business districts and high-end hubs (lat, lon).
LANDMARKS: dict[str, tuple[float, float]] = {
    "el_golf": (-33.4150, -70.6010),
    "costanera_center": (-33.4173, -70.6065),
    "plaza_italia": (-33.4372, -70.6345),
    "parque_arauco": (-33.4016, -70.5786),
    "la_dehesa": (-33.3530, -70.5180),
}
_ROTATION_COS = np.cos(np.radians(ROTATION_DEGREES))
_ROTATION_SIN = np.sin(np.radians(ROTATION_DEGREES))
_LANDMARK_NORTH_KM = np.array([(la - GRID_ORIGIN[0]) * KM_PER_DEG_LAT for la, _ in LANDMARKS.values()])
_LANDMARK_EAST_KM = np.array([(lo - GRID_ORIGIN[1]) * KM_PER_DEG_LON for _, lo in LANDMARKS.values()])
ENGINEERED_FEATURE_NAMES: tuple[str, ...] = (
    "is_casa", "sector_code", "usable_area", "total_area", "usable_to_total",
    "usable_per_room", "bathrooms_per_room", "n_rooms", "n_bathroom", "latitude", "longitude",
    *(f"coord_rot{int(d)}" for d in ROTATION_DEGREES),
    *(f"km_to_{name}" for name in LANDMARKS),
)
N_ENGINEERED_FEATURES = len(ENGINEERED_FEATURE_NAMES)
# category_encoders.TargetEncoder defaults the notebook used: sigmoid blend of the category mean
# with the prior, centred at 20 rows with slope 1.
TARGET_ENCODING_MIN_SAMPLES = 20.0
TARGET_ENCODING_SMOOTHING = 1.0


@dataclass(frozen=True)
class EngineeredSettings:
    """Knobs of the engineered encoding (model YAML `feature_params`)."""

    # Weight of the similar-listings k-NN price in the final (log-space) blend; 0 disables it.
    similar_weight: float = 0.0
    similar_k: int = 2
    # What an unknown (zero) area becomes: NaN for estimators that route missing values
    # themselves (LightGBM, HistGradientBoosting, random forest); a number such as -1 for those
    # that reject NaN (GradientBoostingRegressor): below every real value, so still separable.
    unknown_value: float | None = None

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any] | None) -> EngineeredSettings:
        params = dict(params or {})
        known = {"similar_weight", "similar_k", "unknown_value"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown feature_params {unknown}; known: {sorted(known)}")
        settings = cls(
            similar_weight=float(params.get("similar_weight", cls.similar_weight)),
            similar_k=int(params.get("similar_k", cls.similar_k)),
            unknown_value=(None if params.get("unknown_value") is None
                           else float(params["unknown_value"])),
        )
        if not 0.0 <= settings.similar_weight < 1.0:
            raise ValueError(
                f"feature_params.similar_weight must be in [0, 1), got {settings.similar_weight}")
        if settings.similar_k < 1:
            raise ValueError(f"feature_params.similar_k must be >= 1, got {settings.similar_k}")
        return settings

    def to_dict(self) -> dict[str, Any]:
        return {"similar_weight": self.similar_weight, "similar_k": self.similar_k,
                "unknown_value": self.unknown_value}


def frame_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The 8 feature columns of a DataFrame as the numpy arrays `transform` takes."""
    missing = [name for name in FEATURES if name not in frame.columns]
    if missing:
        raise ValueError(f"frame is missing feature columns {missing}")
    columns: dict[str, np.ndarray] = {}
    for name in CATEGORICAL_FEATURES:
        columns[name] = np.array(
            [str(v).strip().lower() for v in frame[name].tolist()], dtype=object
        )
    for name in NUMERIC_FEATURES:
        columns[name] = frame[name].to_numpy(dtype=np.float64)
    return columns


def _codes(values: np.ndarray, vocabulary: Sequence[str], field: str) -> np.ndarray:
    """Integer codes of categorical values; an unseen value is an error, never a silent default."""
    lookup = {v: i for i, v in enumerate(vocabulary)}
    try:
        return np.fromiter((lookup[v] for v in values), dtype=np.int64, count=len(values))
    except KeyError as error:
        raise ValueError(
            f"field '{field}': unknown value {error.args[0]!r}; known: {', '.join(vocabulary)}"
        ) from None


def _smoothed_means(codes: np.ndarray, y: np.ndarray, n_levels: int) -> np.ndarray:
    """category_encoders-style smoothed mean target per level (the prior for empty levels)."""
    prior = float(y.mean())
    counts = np.bincount(codes, minlength=n_levels).astype(np.float64)
    sums = np.bincount(codes, weights=y, minlength=n_levels)
    means = np.divide(sums, counts, out=np.full(n_levels, prior), where=counts > 0)
    weight = 1.0 / (1.0 + np.exp(-(counts - TARGET_ENCODING_MIN_SAMPLES) / TARGET_ENCODING_SMOOTHING))
    return prior * (1.0 - weight) + means * weight


class FeatureEncoder:
    """Fit on cleaned training rows, then turn validated columns into the estimator's matrix."""

    def __init__(self, kind: str = "engineered", feature_params: Mapping[str, Any] | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown feature kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.settings = EngineeredSettings.from_mapping(feature_params)
        self.types: tuple[str, ...] = ()
        self.sectors: tuple[str, ...] = ()
        self.type_means = np.empty(0)  # raw: smoothed mean price per type code
        self.sector_means = np.empty(0)
        self.similar: SimilarListings | None = None
        self._fitted = False

    # --- fitting ---------------------------------------------------------------------------

    def fit_transform(self, frame: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        """Fit on `frame` (cleaned training rows) and return its matrix. No column of the engineered
        matrix derives from the target, so the training matrix is what `transform` gives."""
        y = np.asarray(y, dtype=np.float64)
        if len(y) != len(frame):
            raise ValueError(f"{len(frame)} rows but {len(y)} prices")
        if len(y) == 0:
            raise ValueError("cannot fit a feature encoder on zero rows")
        columns = frame_columns(frame)
        self.types = tuple(sorted(set(columns["type"])))
        self.sectors = tuple(sorted(set(columns["sector"])))
        if self.kind == "raw":
            self.type_means = _smoothed_means(
                _codes(columns["type"], self.types, "type"), y, len(self.types))
            self.sector_means = _smoothed_means(
                _codes(columns["sector"], self.sectors, "sector"), y, len(self.sectors))
        elif self.settings.similar_weight > 0:
            self.similar = SimilarListings.fit(columns, y, self.settings.similar_k)
        self._fitted = True
        # raw: in-sample, as the notebook did; that encoding is kept only as a reference point.
        return self.transform(columns)

    @property
    def similar_weight(self) -> float:
        """Weight of `similar_log_price` in the final price (0: not used)."""
        return self.settings.similar_weight if self.similar is not None else 0.0

    def similar_log_price(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Log k-NN price of the most similar training listings (needs similar_weight > 0)."""
        if self.similar is None:
            raise ValueError("this encoder has no similar-listings index (similar_weight is 0)")
        return self.similar.log_price(columns)

    # --- transforming ----------------------------------------------------------------------

    def transform(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """float64 matrix (rows x feature_names) from validated columns."""
        if not self._fitted:
            raise ValueError("the feature encoder is not fitted")
        if self.kind == "raw":
            return self._raw(columns)
        return self._engineered(columns)

    def _raw(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        n_rows = len(columns["latitude"])
        matrix = np.empty((n_rows, 2 + len(NUMERIC_FEATURES)), dtype=np.float64)
        matrix[:, 0] = self.type_means[_codes(columns["type"], self.types, "type")]
        matrix[:, 1] = self.sector_means[_codes(columns["sector"], self.sectors, "sector")]
        for j, name in enumerate(NUMERIC_FEATURES, start=2):
            matrix[:, j] = columns[name]
        return matrix

    def _engineered(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        lat = np.asarray(columns["latitude"], dtype=np.float64)
        lon = np.asarray(columns["longitude"], dtype=np.float64)
        usable = np.asarray(columns["net_usable_area"], dtype=np.float64)
        total = np.asarray(columns["net_area"], dtype=np.float64)
        rooms = np.asarray(columns["n_rooms"], dtype=np.float64)
        baths = np.asarray(columns["n_bathroom"], dtype=np.float64)
        out = np.empty((len(lat), N_ENGINEERED_FEATURES), dtype=np.float64)
        out[:, 0] = columns["type"] == "casa"
        out[:, 1] = _codes(columns["sector"], self.sectors, "sector")
        # 0 m2 is "not reported", not a tiny home: NaN lets the trees send it its own way.
        usable = out[:, 2] = np.where(usable > 0, usable, np.nan)
        total = out[:, 3] = np.where(total > 0, total, np.nan)
        out[:, 4] = usable / total
        out[:, 5] = usable / np.maximum(rooms, 1.0)
        out[:, 6] = baths / np.maximum(rooms, 1.0)
        out[:, 7] = rooms
        out[:, 8] = baths
        out[:, 9] = lat
        out[:, 10] = lon
        # Rotations and landmark distances as one array operation each (cheap for one row too).
        north_km = (lat - GRID_ORIGIN[0]) * KM_PER_DEG_LAT
        east_km = (lon - GRID_ORIGIN[1]) * KM_PER_DEG_LON
        rotated = slice(11, 11 + len(ROTATION_DEGREES))
        out[:, rotated] = east_km[:, None] * _ROTATION_COS + north_km[:, None] * _ROTATION_SIN
        out[:, rotated.stop:] = np.hypot(north_km[:, None] - _LANDMARK_NORTH_KM,
                                         east_km[:, None] - _LANDMARK_EAST_KM)
        if self.settings.unknown_value is not None:
            np.nan_to_num(out, copy=False, nan=self.settings.unknown_value)
        return out

    @property
    def feature_names(self) -> tuple[str, ...]:
        if self.kind == "raw":
            return ("type_target_mean", "sector_target_mean", *NUMERIC_FEATURES)
        return ENGINEERED_FEATURE_NAMES

    # --- storage ---------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """JSON for the settings and vocabularies, npz for fitted arrays. No pickle."""
        if not self._fitted:
            raise ValueError("cannot save an unfitted feature encoder")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "feature_params": self.settings.to_dict(),
            "types": list(self.types),
            "sectors": list(self.sectors),
            "feature_names": list(self.feature_names),
        }
        arrays: dict[str, np.ndarray] = {
            "type_means": self.type_means, "sector_means": self.sector_means,
        }
        if self.similar is not None:
            arrays.update(self.similar.arrays())
        (directory / ENCODER_FILE).write_text(json.dumps(meta, indent=2))
        np.savez(directory / ARRAYS_FILE, **arrays)

    @classmethod
    def load(cls, directory: str | Path) -> FeatureEncoder:
        directory = Path(directory)
        meta = json.loads((directory / ENCODER_FILE).read_text())
        encoder = cls(meta["kind"], meta["feature_params"])
        encoder.types = tuple(meta["types"])
        encoder.sectors = tuple(meta["sectors"])
        with np.load(directory / ARRAYS_FILE, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        encoder.type_means = arrays["type_means"]
        encoder.sector_means = arrays["sector_means"]
        if encoder.kind == "engineered" and encoder.settings.similar_weight > 0:
            encoder.similar = SimilarListings.from_arrays(arrays)
        encoder._fitted = True
        if list(encoder.feature_names) != meta["feature_names"]:
            raise ValueError(
                f"{directory / ENCODER_FILE}: stored feature names differ from this code's; "
                "the model was saved by an incompatible version"
            )
        return encoder
