"""A deterministic synthetic stand-in for the client's data: same columns and dtypes, plausible
distributions, and a price a model can learn. Tests and the quick start (``data=sample``) use it.

Only coarse aggregates are hard-coded below (sector shares, per-sector casa share, coordinate
centre and 2nd-98th percentile box, median areas, median UF per m2); no row of the client's data
is stored here. Price per m2 is per *usable* area.

Optionally injects the real data's known defects (``defect_share``) so that cleaning is testable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from valuation.model_runtime.schema import FEATURES, TARGET

COLUMNS: tuple[str, ...] = (*FEATURES, TARGET)
TYPES: tuple[str, ...] = ("casa", "departamento")


@dataclass(frozen=True)
class SectorProfile:
    """Coarse aggregates of one sector (per type: casa, departamento)."""

    share: float  # of all listings
    casa_share: float  # of this sector's listings
    lat_range: tuple[float, float]  # 2nd-98th percentile, the box coordinates are drawn in
    lon_range: tuple[float, float]
    lat_centre: float
    lon_centre: float
    usable_median: tuple[float, float]  # m2, (casa, departamento)
    usable_log_sd: tuple[float, float]
    land_ratio_median: float  # casa: total area / usable area
    uf_per_m2: tuple[float, float]  # median price per usable m2, (casa, departamento)


SECTORS: dict[str, SectorProfile] = {
    "las condes": SectorProfile(
        share=0.35, casa_share=0.32,
        lat_range=(-33.4294, -33.371), lon_range=(-70.5999, -70.4985),
        lat_centre=-33.4106, lon_centre=-70.5567,
        usable_median=(220.0, 126.0), usable_log_sd=(0.55, 0.52),
        land_ratio_median=2.36, uf_per_m2=(83.0, 86.0),
    ),
    "vitacura": SectorProfile(
        share=0.18, casa_share=0.39,
        lat_range=(-33.4068, -33.3659), lon_range=(-70.5995, -70.5284),
        lat_centre=-33.3867, lon_centre=-70.5739,
        usable_median=(230.0, 140.0), usable_log_sd=(0.55, 0.45),
        land_ratio_median=2.17, uf_per_m2=(96.0, 92.0),
    ),
    "lo barnechea": SectorProfile(
        share=0.18, casa_share=0.74,
        lat_range=(-33.3691, -33.3195), lon_range=(-70.5649, -70.4739),
        lat_centre=-33.3454, lon_centre=-70.5202,
        usable_median=(308.0, 140.0), usable_log_sd=(0.42, 0.52),
        land_ratio_median=2.81, uf_per_m2=(79.0, 90.0),
    ),
    "nunoa": SectorProfile(
        share=0.12, casa_share=0.23,
        lat_range=(-33.4704, -33.4371), lon_range=(-70.6296, -70.5726),
        lat_centre=-33.454, lon_centre=-70.5986,
        usable_median=(160.0, 73.0), usable_log_sd=(0.39, 0.32),
        land_ratio_median=1.76, uf_per_m2=(70.0, 73.0),
    ),
    "providencia": SectorProfile(
        share=0.11, casa_share=0.15,
        lat_range=(-33.4464, -33.4192), lon_range=(-70.631, -70.5876),
        lat_centre=-33.4326, lon_centre=-70.6069,
        usable_median=(220.0, 90.0), usable_log_sd=(0.43, 0.43),
        land_ratio_median=1.58, uf_per_m2=(76.0, 82.0),
    ),
    "la reina": SectorProfile(
        share=0.06, casa_share=0.87,
        lat_range=(-33.4615, -33.4313), lon_range=(-70.5756, -70.519),
        lat_centre=-33.4444, lon_centre=-70.5465,
        usable_median=(180.0, 103.0), usable_log_sd=(0.44, 0.46),
        land_ratio_median=2.37, uf_per_m2=(75.0, 78.0),
    ),
}

# Price model (log scale). Homes are dearer toward the east and north (the foothills), bigger
# homes cost less per m2, casas with more land cost more, extra bathrooms add a little.
GRADIENT_PER_DEGREE = {"longitude": 4.0, "latitude": 3.0}
SIZE_ELASTICITY = -0.25
LAND_ELASTICITY = 0.15
BATHROOM_PREMIUM = 0.04
PRICE_NOISE_SD = 0.12
MIN_USABLE_AREA = 20.0
MIN_PRICE = 1200  # clean rows stay clear of the cleaning threshold (1,000 UF)

# Rooms and bathrooms grow with log(usable area): intercept, slope per type (casa, departamento).
ROOMS_FIT = ((-1.8, 1.16), (-2.4, 1.13))
BATHROOMS_FIT = ((-4.6, 1.5), (-3.15, 1.21))

DEFECT_KINDS: tuple[str, ...] = (
    "zero_price",
    "tiny_price",
    "zero_area",
    "usable_exceeds_total",
    "too_many_rooms",
    "too_many_bathrooms",
    "duplicate",
)


def generate_frame(n_rows: int, seed: int, defect_share: float = 0.0) -> pd.DataFrame:
    """`n_rows` synthetic listings, identical for the same (n_rows, seed, defect_share).

    Columns in the schema's order; type/sector str, numerics float64, price int64.
    `defect_share` in [0, 1): that share of rows gets one known defect each (see DEFECT_KINDS,
    split evenly in that order; :func:`defect_counts` says how many of each).
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if not 0.0 <= defect_share < 1.0:
        raise ValueError(f"defect_share must be in [0, 1), got {defect_share}")
    rng = np.random.default_rng(seed)
    names = list(SECTORS)
    profiles = [SECTORS[name] for name in names]
    shares = np.array([p.share for p in profiles])
    sector_idx = rng.choice(len(names), size=n_rows, p=shares / shares.sum())
    casa_share = np.array([p.casa_share for p in profiles])[sector_idx]
    type_idx = np.where(rng.random(n_rows) < casa_share, 0, 1)  # 0 casa, 1 departamento
    is_casa = type_idx == 0

    def per_sector(attr: str, item: int | None = None) -> np.ndarray:
        values = [getattr(p, attr) if item is None else getattr(p, attr)[item] for p in profiles]
        return np.asarray(values, dtype=float)[sector_idx]

    def per_sector_type(attr: str) -> np.ndarray:
        table = np.asarray([getattr(p, attr) for p in profiles], dtype=float)
        return table[sector_idx, type_idx]

    lat_lo, lat_hi = per_sector("lat_range", 0), per_sector("lat_range", 1)
    lon_lo, lon_hi = per_sector("lon_range", 0), per_sector("lon_range", 1)
    lat_c, lon_c = per_sector("lat_centre"), per_sector("lon_centre")
    latitude = np.clip(lat_c + rng.normal(0, 1, n_rows) * (lat_hi - lat_lo) / 4, lat_lo, lat_hi)
    longitude = np.clip(lon_c + rng.normal(0, 1, n_rows) * (lon_hi - lon_lo) / 4, lon_lo, lon_hi)
    latitude, longitude = np.round(latitude, 5), np.round(longitude, 5)

    median_usable = per_sector_type("usable_median")
    log_usable = np.log(median_usable) + rng.normal(0, 1, n_rows) * per_sector_type("usable_log_sd")
    usable = np.maximum(np.round(np.exp(log_usable)), MIN_USABLE_AREA)

    land_median = per_sector("land_ratio_median")
    casa_ratio = np.exp(np.log(land_median) + rng.normal(0, 0.45, n_rows))
    flat_ratio = 1.0 + np.maximum(rng.normal(0.10, 0.12, n_rows), 0.0)
    ratio = np.maximum(np.where(is_casa, casa_ratio, flat_ratio), 1.0)
    total = np.maximum(np.round(usable * ratio), usable)

    rooms = _count_from_area(rng, usable, type_idx, ROOMS_FIT, sd=0.8, lo=1, hi=10)
    expected_baths = _linear_fit(usable, type_idx, BATHROOMS_FIT)
    bathrooms = np.clip(np.round(expected_baths + rng.normal(0, 0.7, n_rows)), 1, 8)

    log_price = (
        np.log(per_sector_type("uf_per_m2"))
        + np.log(usable)
        + SIZE_ELASTICITY * (np.log(usable) - np.log(median_usable))
        + np.where(is_casa, LAND_ELASTICITY * (np.log(ratio) - np.log(land_median)), 0.0)
        + GRADIENT_PER_DEGREE["longitude"] * (longitude - lon_c)
        + GRADIENT_PER_DEGREE["latitude"] * (latitude - lat_c)
        + BATHROOM_PREMIUM * (bathrooms - np.clip(expected_baths, 1, 8))
        + rng.normal(0, PRICE_NOISE_SD, n_rows)
    )
    price = np.maximum(np.round(np.exp(log_price) / 10) * 10, MIN_PRICE).astype(np.int64)

    frame = pd.DataFrame(
        {
            "type": pd.array(np.asarray(TYPES)[type_idx], dtype="str"),
            "sector": pd.array(np.asarray(names)[sector_idx], dtype="str"),
            "net_usable_area": usable.astype(np.float64),
            "net_area": total.astype(np.float64),
            "n_rooms": rooms.astype(np.float64),
            "n_bathroom": bathrooms.astype(np.float64),
            "latitude": latitude.astype(np.float64),
            "longitude": longitude.astype(np.float64),
            "price": price,
        },
        columns=list(COLUMNS),
    )
    if defect_share > 0 and n_rows > 0:
        frame = _inject_defects(frame, defect_counts(n_rows, defect_share), rng)
    return frame


def defect_counts(n_rows: int, defect_share: float) -> dict[str, int]:
    """How many rows of each defect kind `generate_frame(n_rows, seed, defect_share)` injects."""
    total = round(n_rows * defect_share)
    base, extra = divmod(total, len(DEFECT_KINDS))
    return {kind: base + (1 if i < extra else 0) for i, kind in enumerate(DEFECT_KINDS)}


def _linear_fit(usable: np.ndarray, type_idx: np.ndarray, fit) -> np.ndarray:
    intercept = np.asarray([f[0] for f in fit])[type_idx]
    slope = np.asarray([f[1] for f in fit])[type_idx]
    return intercept + slope * np.log(usable)


def _count_from_area(rng, usable, type_idx, fit, sd: float, lo: int, hi: int) -> np.ndarray:
    expected = _linear_fit(usable, type_idx, fit)
    return np.clip(np.round(expected + rng.normal(0, sd, len(usable))), lo, hi)


def _inject_defects(frame: pd.DataFrame, counts: dict[str, int], rng) -> pd.DataFrame:
    """Give distinct rows one defect each; duplicates copy rows that carry no defect."""
    frame = frame.copy()
    dtypes = frame.dtypes.to_dict()
    n_defects = sum(counts.values())
    order = rng.permutation(len(frame))
    targets, clean_rows = order[:n_defects], order[n_defects:]
    if counts["duplicate"] > len(clean_rows):
        raise ValueError("defect_share too high: not enough clean rows to duplicate")
    col = {name: frame.columns.get_loc(name) for name in frame.columns}
    start = 0
    for kind in DEFECT_KINDS:
        rows = targets[start : start + counts[kind]]
        start += counts[kind]
        if kind == "zero_price":
            frame.iloc[rows, col["price"]] = 0
        elif kind == "tiny_price":
            frame.iloc[rows, col["price"]] = rng.integers(1, 1000, len(rows))
        elif kind == "zero_area":
            frame.iloc[rows, col["net_usable_area"]] = 0.0
            frame.iloc[rows, col["net_area"]] = 0.0
        elif kind == "usable_exceeds_total":
            usable = frame.iloc[rows, col["net_usable_area"]].to_numpy()
            frame.iloc[rows, col["net_area"]] = np.maximum(np.round(usable * 0.6), 1.0)
        elif kind == "too_many_rooms":
            frame.iloc[rows, col["n_rooms"]] = 55.0
        elif kind == "too_many_bathrooms":
            frame.iloc[rows, col["n_bathroom"]] = 55.0
        elif kind == "duplicate":
            sources = clean_rows[: len(rows)]
            for name, position in col.items():
                frame.iloc[rows, position] = frame[name].to_numpy()[sources]
    return frame.astype(dtypes)
