"""Similar listings: a k-nearest-neighbour price from the training listings most like the query.

"Most like" means the same type, then close in a scaled space of location, usable and total area
(log), rooms and bathrooms. Listings repeat (the same flat relisted, flats of one tower), so the
price of the one or two most similar training listings is a strong, independent opinion; averaged
with the gradient-boosting price (in log space) it cuts the error of either alone (see
bench/results/quality.md).

The reference set is the training rows only, kept as npz arrays; KD-trees are rebuilt at load time
(milliseconds) rather than pickled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.spatial import cKDTree

TYPES = ("casa", "departamento")
# Degrees -> km at Santiago's latitude, so distances are isotropic.
KM_PER_DEG_LAT = 111.0
KM_PER_DEG_LON = 111.0 * math.cos(math.radians(33.42))
# One unit of distance in the similarity space is: 200 m, 8% of usable area, 10% of total area,
# 2 rooms or 4 bathrooms (chosen by cross-validation on the training data).
DEFAULT_SCALES: dict[str, float] = {
    "km": 0.2,
    "log_usable_area": 0.08,
    "log_total_area": 0.10,
    "rooms": 2.0,
    "bathrooms": 4.0,
}
# Inverse-distance weights 1 / (d + softening): an identical listing does not take all the weight.
DEFAULT_SOFTENING = 0.1
# Areas reported as 0 (unknown) are placed at a typical size so they match typical listings.
UNKNOWN_USABLE_AREA = 150.0
UNKNOWN_TOTAL_AREA = 200.0


def similarity_space(columns: Mapping[str, np.ndarray], scales: np.ndarray) -> np.ndarray:
    """Rows as points of the scaled space (km north, km east, log areas, counts)."""
    usable = np.asarray(columns["net_usable_area"], dtype=np.float64)
    total = np.asarray(columns["net_area"], dtype=np.float64)
    points = np.empty((len(usable), 6), dtype=np.float64)
    points[:, 0] = np.asarray(columns["latitude"], dtype=np.float64) * (KM_PER_DEG_LAT / scales[0])
    points[:, 1] = np.asarray(columns["longitude"], dtype=np.float64) * (KM_PER_DEG_LON / scales[0])
    points[:, 2] = np.log(np.where(usable > 0, usable, UNKNOWN_USABLE_AREA)) / scales[1]
    points[:, 3] = np.log(np.where(total > 0, total, UNKNOWN_TOTAL_AREA)) / scales[2]
    points[:, 4] = np.asarray(columns["n_rooms"], dtype=np.float64) / scales[3]
    points[:, 5] = np.asarray(columns["n_bathroom"], dtype=np.float64) / scales[4]
    return points


class _Reference:
    """The training listings of one type: points, log prices and their KD-tree."""

    def __init__(self, points: np.ndarray, log_price: np.ndarray):
        self.points = points
        self.log_price = log_price
        self.tree = cKDTree(points)

    def log_price_of(self, points: np.ndarray, k: int, softening: float) -> np.ndarray:
        k = min(k, len(self.log_price))
        distance, index = self.tree.query(points, k=k)
        distance = distance.reshape(len(points), k)
        index = index.reshape(len(points), k)
        weight = 1.0 / (distance + softening)
        return (weight * self.log_price[index]).sum(axis=1) / weight.sum(axis=1)


class SimilarListings:
    """k-NN log price among training listings of the same type."""

    def __init__(self, k: int, scales: np.ndarray, softening: float,
                 references: dict[str, _Reference]):
        if k < 1:
            raise ValueError(f"similar listings need k >= 1, got {k}")
        self.k = k
        self.scales = np.asarray(scales, dtype=np.float64)
        self.softening = float(softening)
        self.references = references

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray], y: np.ndarray, k: int) -> SimilarListings:
        y = np.asarray(y, dtype=np.float64)
        if np.any(y <= 0):
            raise ValueError("similar-listing prices must be positive (clean the training data)")
        scales = np.array(list(DEFAULT_SCALES.values()))
        points = similarity_space(columns, scales)
        log_price = np.log(y)
        references = {
            kind: _Reference(points[mask], log_price[mask])
            for kind in TYPES
            if (mask := columns["type"] == kind).any()
        }
        return cls(k, scales, DEFAULT_SOFTENING, references)

    def log_price(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Weighted mean log price of the k most similar training listings of the row's type."""
        types = columns["type"]
        points = similarity_space(columns, self.scales)
        if len(types) == 1:  # the serving path: no masks
            return self._reference(types[0]).log_price_of(points, self.k, self.softening)
        out = np.empty(len(types), dtype=np.float64)
        for kind in set(types.tolist()):
            mask = types == kind
            out[mask] = self._reference(kind).log_price_of(points[mask], self.k, self.softening)
        return out

    def _reference(self, kind: str) -> _Reference:
        try:
            return self.references[kind]
        except KeyError:
            raise ValueError(
                f"field 'type': no training listing of type {kind!r}; known: {sorted(self.references)}"
            ) from None

    # --- storage (npz arrays; trees are rebuilt on load) -------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        stored = {"similar.scales": self.scales,
                  "similar.k_softening": np.array([self.k, self.softening], dtype=np.float64)}
        for kind, ref in self.references.items():
            stored[f"similar.{kind}.points"] = ref.points
            stored[f"similar.{kind}.log_price"] = ref.log_price
        return stored

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> SimilarListings:
        if "similar.scales" not in arrays:
            raise ValueError("the stored encoder has no similar-listing arrays")
        references = {
            kind: _Reference(arrays[f"similar.{kind}.points"], arrays[f"similar.{kind}.log_price"])
            for kind in TYPES
            if f"similar.{kind}.points" in arrays
        }
        k, softening = arrays["similar.k_softening"]
        return cls(int(k), arrays["similar.scales"], float(softening), references)
