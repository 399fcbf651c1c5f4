"""Neighbour-price features: what the nearest training listings of the same type sold for.

Listings cluster by building (flats of one tower share coordinates) and by street, so the price
per m2 of the nearest listings is a strong prior that trees on raw coordinates only approximate.
The reference set is the training rows only, stored as npz arrays; the KD-trees are rebuilt at
load time (milliseconds) rather than pickled. For the training matrix each row's features come
from the other folds only (out-of-fold), so a row never sees its own price.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.spatial import cKDTree
from sklearn.model_selection import KFold

TYPES = ("casa", "departamento")
# Degrees -> km at Santiago's latitude, so distances are isotropic.
KM_PER_DEG_LAT = 111.0
KM_PER_DEG_LON = 111.0 * math.cos(math.radians(33.42))
# Neighbourhood sizes: a handful (the block / building) and a wider area (the neighbourhood).
K_NEAR = 6
K_WIDE = 30
# Listings closer than this share a building or a lot (coordinates are geocoded addresses).
SAME_SITE_KM = 0.03
# Similarity space for "the most similar listing": 1 km of distance weighs like this many units
# of log usable area (a factor e), room or bathroom difference.
SIMILAR_LOG_AREA_WEIGHT = 2.0
SIMILAR_COUNT_WEIGHT = 0.3
# Fill for a missing (zero) usable area in the similarity space: about the median log area.
SIMILAR_UNKNOWN_LOG_AREA = 5.0


def neighbour_feature_names() -> list[str]:
    return [
        f"nn{K_NEAR}_log_ppm", f"nn{K_NEAR}_log_price", f"nn{K_NEAR}_km",
        f"nn{K_WIDE}_log_ppm", f"nn{K_WIDE}_log_price", f"nn{K_WIDE}_km",
        "same_site_count", "same_site_log_ppm",
        "similar_log_price", "similar_distance",
    ]


def _site_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return np.column_stack([lat * KM_PER_DEG_LAT, lon * KM_PER_DEG_LON])


def _similarity_space(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    usable = np.asarray(columns["net_usable_area"], dtype=np.float64)
    log_area = np.log(np.where(usable > 0, usable, math.exp(SIMILAR_UNKNOWN_LOG_AREA)))
    return np.column_stack([
        _site_km(columns["latitude"], columns["longitude"]),
        log_area * SIMILAR_LOG_AREA_WEIGHT,
        np.asarray(columns["n_rooms"], dtype=np.float64) * SIMILAR_COUNT_WEIGHT,
        np.asarray(columns["n_bathroom"], dtype=np.float64) * SIMILAR_COUNT_WEIGHT,
    ])


class _TypeReference:
    """Reference listings of one type and their trees."""

    def __init__(self, site: np.ndarray, similar: np.ndarray, log_price: np.ndarray,
                 log_ppm: np.ndarray):
        self.site, self.similar = site, similar
        self.log_price, self.log_ppm = log_price, log_ppm
        self.site_tree = cKDTree(site)
        self.similar_tree = cKDTree(similar)

    def features(self, site: np.ndarray, similar: np.ndarray) -> np.ndarray:
        n_ref = len(self.log_price)
        out = np.empty((len(site), len(neighbour_feature_names())), dtype=np.float64)
        k_wide = min(K_WIDE, n_ref)
        k_near = min(K_NEAR, n_ref)
        dist, idx = self.site_tree.query(site, k=k_wide)
        dist = dist.reshape(len(site), k_wide)
        idx = idx.reshape(len(site), k_wide)
        ppm = self.log_ppm[idx]
        price = self.log_price[idx]
        with np.errstate(invalid="ignore"), _quiet_nanmedian():
            out[:, 0] = np.nanmedian(ppm[:, :k_near], axis=1)
            out[:, 1] = np.median(price[:, :k_near], axis=1)
            out[:, 2] = dist[:, :k_near].mean(axis=1)
            out[:, 3] = np.nanmedian(ppm, axis=1)
            out[:, 4] = np.median(price, axis=1)
            out[:, 5] = dist.mean(axis=1)
            same_site = dist[:, :k_near] < SAME_SITE_KM
            out[:, 6] = same_site.sum(axis=1)
            out[:, 7] = np.nanmedian(np.where(same_site, ppm[:, :k_near], np.nan), axis=1)
        sim_dist, sim_idx = self.similar_tree.query(similar, k=1)
        out[:, 8] = self.log_price[np.asarray(sim_idx).reshape(-1)]
        out[:, 9] = np.asarray(sim_dist).reshape(-1)
        return out


class _quiet_nanmedian:
    """All-NaN slices (no neighbour with a known area) are expected: their median is NaN."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.filterwarnings("ignore", message="All-NaN slice encountered")
        return self

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


class NeighbourIndex:
    """Per-type reference sets of training listings with their KD-trees."""

    def __init__(self, references: dict[str, _TypeReference]):
        self.references = references

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray], y: np.ndarray) -> NeighbourIndex:
        y = np.asarray(y, dtype=np.float64)
        if np.any(y <= 0):
            raise ValueError("neighbour features need positive prices (clean the training data)")
        site = _site_km(columns["latitude"], columns["longitude"])
        similar = _similarity_space(columns)
        usable = np.asarray(columns["net_usable_area"], dtype=np.float64)
        log_price = np.log(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ppm = np.where(usable > 0, log_price - np.log(usable), np.nan)
        references = {}
        for kind in TYPES:
            mask = columns["type"] == kind
            if mask.any():
                references[kind] = _TypeReference(
                    site[mask], similar[mask], log_price[mask], log_ppm[mask])
        return cls(references)

    def features(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        types = columns["type"]
        n_rows = len(types)
        out = np.full((n_rows, len(neighbour_feature_names())), np.nan)
        site = _site_km(columns["latitude"], columns["longitude"])
        similar = _similarity_space(columns)
        if n_rows == 1:  # the serving path: skip the masks
            reference = self.references.get(types[0])
            if reference is not None:
                out[:] = reference.features(site, similar)
            return out
        for kind, reference in self.references.items():
            mask = types == kind
            if mask.any():
                out[mask] = reference.features(site[mask], similar[mask])
        return out

    @classmethod
    def out_of_fold_features(cls, columns: Mapping[str, np.ndarray], y: np.ndarray,
                             folds: int, seed: int) -> np.ndarray:
        """Features of each training row computed from the other folds only."""
        n_rows = len(y)
        out = np.full((n_rows, len(neighbour_feature_names())), np.nan)
        splitter = KFold(n_splits=min(folds, n_rows), shuffle=True, random_state=seed)
        for fit_idx, held_idx in splitter.split(np.arange(n_rows)):
            fitted = cls.fit({k: v[fit_idx] for k, v in columns.items()}, y[fit_idx])
            out[held_idx] = fitted.features({k: v[held_idx] for k, v in columns.items()})
        return out

    # --- storage (npz arrays; trees are rebuilt on load) -------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        stored: dict[str, np.ndarray] = {}
        for kind, ref in self.references.items():
            prefix = f"neighbours.{kind}."
            stored[prefix + "site"] = ref.site
            stored[prefix + "similar"] = ref.similar
            stored[prefix + "log_price"] = ref.log_price
            stored[prefix + "log_ppm"] = ref.log_ppm
        return stored

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> NeighbourIndex:
        references = {}
        for kind in TYPES:
            prefix = f"neighbours.{kind}."
            if prefix + "site" in arrays:
                references[kind] = _TypeReference(
                    arrays[prefix + "site"], arrays[prefix + "similar"],
                    arrays[prefix + "log_price"], arrays[prefix + "log_ppm"])
        if not references:
            raise ValueError("the stored encoder has no neighbour reference arrays")
        return cls(references)
