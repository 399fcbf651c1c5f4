"""The drift demo's streams (bench/drift_demo.py): built at run time from the rows of a test table,
held in memory only, never written anywhere.

The market shift (`Scenario`), chosen from the table itself so it holds for any data:
- two sectors, the third and fourth most common of the table (ties by name), become
  `shifted_share` (60%) of the traffic instead of their share in the table (a shifted area mix:
  the service suddenly sees far more of those neighbourhoods);
- homes there sell `price_factor` (1.2: +20%) above the table's price: the observed prices sent as
  feedback for rows of those sectors are the table's price times 1.2; every other row's observed
  price is the table's price.

A stable stream (and the control) samples the table's rows uniformly, with replacement, and sends
their own prices as feedback. Sampling with replacement lets a stream be longer than the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from valuation.model_runtime.schema import FEATURES, TARGET

OBSERVED = "observed_price"  # the price sent as feedback
SHIFTED = "shifted"  # True on rows whose observed price was moved by the scenario
SOURCE = "source_row"  # the row's position in the table it was drawn from


@dataclass(frozen=True)
class Scenario:
    sectors: tuple[str, str]
    base_share: float  # the two sectors' share of the table's rows
    shifted_share: float = 0.6
    price_factor: float = 1.2

    def describe(self) -> str:
        return (f"sectors {self.sectors[0]!r} and {self.sectors[1]!r} go from "
                f"{self.base_share:.0%} to {self.shifted_share:.0%} of the traffic, and homes there "
                f"sell {self.price_factor - 1:+.0%} above the model's training-time market")


def choose_scenario(table: pd.DataFrame, shifted_share: float = 0.6,
                    price_factor: float = 1.2) -> Scenario:
    """The scenario for `table`: its third and fourth most common sectors."""
    counts = table["sector"].astype(str).value_counts()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) < 4:
        raise ValueError(f"the table has {len(ranked)} sectors; the scenario needs at least 4")
    sectors = (ranked[2][0], ranked[3][0])
    base = float(counts[list(sectors)].sum() / counts.sum())
    if not base < shifted_share < 1:
        raise ValueError(f"shifted_share {shifted_share} must lie between the sectors' share "
                         f"{base:.3f} and 1")
    return Scenario(sectors, base, shifted_share, price_factor)


def stable_stream(table: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows drawn uniformly from `table`, observed at their own price."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(table), size=rows)
    return _stream(table, index, np.ones(rows), np.zeros(rows, dtype=bool))


def shifted_stream(table: pd.DataFrame, rows: int, scenario: Scenario, seed: int) -> pd.DataFrame:
    """`rows` rows drawn so the scenario's sectors are `shifted_share` of them (each row of a part
    equally likely), those observed at `price_factor` times their price."""
    rng = np.random.default_rng(seed)
    inside = table["sector"].astype(str).isin(scenario.sectors).to_numpy()
    weights = np.where(inside, scenario.shifted_share / inside.sum(),
                       (1 - scenario.shifted_share) / (~inside).sum())
    index = rng.choice(len(table), size=rows, replace=True, p=weights / weights.sum())
    moved = inside[index]
    return _stream(table, index, np.where(moved, scenario.price_factor, 1.0), moved)


def _stream(table: pd.DataFrame, index: np.ndarray, factor: np.ndarray,
            moved: np.ndarray) -> pd.DataFrame:
    picked = table.iloc[index]
    stream = picked[list(FEATURES)].reset_index(drop=True).copy()
    stream[SOURCE] = index
    stream[OBSERVED] = picked[TARGET].to_numpy(dtype=float) * factor
    stream[SHIFTED] = moved
    return stream


def sector_share(stream: pd.DataFrame, sectors: tuple[str, ...]) -> float:
    return float(stream["sector"].astype(str).isin(sectors).mean())
