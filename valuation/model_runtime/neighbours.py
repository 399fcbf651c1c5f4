"""Similar listings: a k-nearest-neighbour price from the training listings most like the query.

"Most like" means the same type, then close in a scaled space of location, usable and total area
(log), rooms and bathrooms. Listings repeat (the same flat relisted, flats of one tower), so the
price of the one or two most similar training listings is a strong, independent opinion; averaged
with the gradient-boosting price (in log space) it cuts the error of either alone (see
bench/results/quality.md).

The reference set is the training rows only, kept as npz arrays; KD-trees are rebuilt at load time
(milliseconds) rather than pickled. The listings themselves (eight features and price) are stored
beside their points, so a prediction can show the comparables it rests on.
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


# Columns of the stored listings (one float matrix per type): what a comparable shows the client.
LISTING_COLUMNS: tuple[str, ...] = (
    "sector", "net_usable_area", "net_area", "n_rooms", "n_bathroom", "latitude", "longitude", "price",
)


class _Reference:
    """The training listings of one type: points, log prices and their KD-tree; `listings` (their
    eight features and price, sector as a code into `SimilarListings.sectors`) when the model
    stored them (models trained before comparables did not)."""

    def __init__(self, points: np.ndarray, log_price: np.ndarray, listings: np.ndarray | None = None):
        self.points = points
        self.log_price = log_price
        self.listings = listings
        self.tree = cKDTree(points)

    def nearest(self, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distance, index), each rows x min(k, listings), nearest first."""
        k = min(k, len(self.log_price))
        distance, index = self.tree.query(points, k=k)
        return distance.reshape(len(points), k), index.reshape(len(points), k)

    def log_price_of(self, points: np.ndarray, k: int, softening: float) -> np.ndarray:
        distance, index = self.nearest(points, k)
        weight = 1.0 / (distance + softening)
        return (weight * self.log_price[index]).sum(axis=1) / weight.sum(axis=1)


class SimilarListings:
    """k-NN log price among training listings of the same type."""

    def __init__(self, k: int, scales: np.ndarray, softening: float,
                 references: dict[str, _Reference], sectors: tuple[str, ...] = ()):
        if k < 1:
            raise ValueError(f"similar listings need k >= 1, got {k}")
        self.k = k
        self.scales = np.asarray(scales, dtype=np.float64)
        self.softening = float(softening)
        self.references = references
        self.sectors = sectors  # vocabulary of the stored listings' sector codes

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray], y: np.ndarray, k: int) -> SimilarListings:
        y = np.asarray(y, dtype=np.float64)
        if np.any(y <= 0):
            raise ValueError("similar-listing prices must be positive (clean the training data)")
        scales = np.array(list(DEFAULT_SCALES.values()))
        points = similarity_space(columns, scales)
        log_price = np.log(y)
        sectors = tuple(sorted(set(columns["sector"].tolist())))
        listings = _listing_matrix(columns, y, sectors)
        references = {
            kind: _Reference(points[mask], log_price[mask], listings[mask])
            for kind in TYPES
            if (mask := columns["type"] == kind).any()
        }
        return cls(k, scales, DEFAULT_SOFTENING, references, sectors)

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

    def nearest_distance(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Distance (similarity units) from each row to its most similar training listing: how
        familiar the row is, which the interval's error model reads."""
        types = columns["type"]
        points = similarity_space(columns, self.scales)
        out = np.empty(len(types), dtype=np.float64)
        for kind in set(types.tolist()):
            mask = types == kind
            out[mask] = self._reference(kind).nearest(points[mask], 1)[0][:, 0]
        return out

    @property
    def has_listings(self) -> bool:
        """Whether the model stored the listings themselves (what comparables show)."""
        return bool(self.references) and all(r.listings is not None for r in self.references.values())

    def comparables(self, columns: Mapping[str, np.ndarray], k: int) -> list[list[dict[str, object]]]:
        """Per row, the k most similar training listings of its type (the first `self.k` are the
        ones the price blend used): eight features, price (UF) and distance in similarity units."""
        if not self.has_listings:
            raise ValueError("this model did not store its training listings (trained before "
                             "comparables existed)")
        types = columns["type"]
        points = similarity_space(columns, self.scales)
        found: list[list[dict[str, object]]] = []
        for row, kind in enumerate(types.tolist()):
            reference = self._reference(kind)
            distance, index = reference.nearest(points[row:row + 1], k)
            found.append([self._listing(kind, reference.listings[i], d)
                          for i, d in zip(index[0].tolist(), distance[0].tolist(), strict=True)])
        return found

    def _listing(self, kind: str, values: np.ndarray, distance: float) -> dict[str, object]:
        listing: dict[str, object] = {"type": kind}
        for name, value in zip(LISTING_COLUMNS, values.tolist(), strict=True):
            listing[name] = self.sectors[int(value)] if name == "sector" else value
        listing["distance"] = round(float(distance), 6)
        return listing

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
            if ref.listings is not None:
                stored[f"similar.{kind}.listings"] = ref.listings
        if self.sectors:
            stored["similar.sectors"] = np.array(self.sectors, dtype=str)  # unicode: no pickle
        return stored

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> SimilarListings:
        if "similar.scales" not in arrays:
            raise ValueError("the stored encoder has no similar-listing arrays")
        references = {
            kind: _Reference(arrays[f"similar.{kind}.points"], arrays[f"similar.{kind}.log_price"],
                             arrays.get(f"similar.{kind}.listings"))
            for kind in TYPES
            if f"similar.{kind}.points" in arrays
        }
        k, softening = arrays["similar.k_softening"]
        sectors = tuple(arrays["similar.sectors"].tolist()) if "similar.sectors" in arrays else ()
        return cls(int(k), arrays["similar.scales"], float(softening), references, sectors)


def _listing_matrix(columns: Mapping[str, np.ndarray], price: np.ndarray,
                    sectors: tuple[str, ...]) -> np.ndarray:
    """The listings as floats in LISTING_COLUMNS order (sector as its code in `sectors`)."""
    code = {name: i for i, name in enumerate(sectors)}
    matrix = np.empty((len(price), len(LISTING_COLUMNS)), dtype=np.float64)
    matrix[:, 0] = [code[name] for name in columns["sector"].tolist()]
    for j, name in enumerate(LISTING_COLUMNS[1:-1], start=1):
        matrix[:, j] = np.asarray(columns[name], dtype=np.float64)
    matrix[:, -1] = price
    return matrix
