"""Fixtures for the modelling tests: small synthetic training frames (never the client's data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from valuation.model_runtime.schema import FEATURES, TARGET
from valuation.synthetic import generate_frame


@pytest.fixture(scope="module")
def listings() -> pd.DataFrame:
    """600 clean synthetic listings, with a few zero areas as the real data has."""
    frame = generate_frame(600, seed=3)
    frame.loc[[5, 17], "net_usable_area"] = 0.0
    frame.loc[[9, 17], "net_area"] = 0.0
    return frame


@pytest.fixture(scope="module")
def features(listings: pd.DataFrame) -> pd.DataFrame:
    return listings[list(FEATURES)]


@pytest.fixture(scope="module")
def prices(listings: pd.DataFrame) -> np.ndarray:
    return listings[TARGET].to_numpy(dtype=np.float64)
