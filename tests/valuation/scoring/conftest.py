"""Fixtures of the scoring tests: a portfolio of synthetic listings with a few bad rows, and the
session's one trained model (tests/conftest.py) resolved for scoring."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from valuation.scoring.model import ScoringModel, resolve_model
from valuation.synthetic import generate_frame

CHAMPION = "models:/property_friends_best_model@champion"
# 1-based input rows made bad in `portfolio`, and the field each breaks.
BAD_ROWS = {4: "n_rooms", 8: "type", 12: "latitude", 13: "sector"}


def make_portfolio(n_rows: int, seed: int = 5) -> pd.DataFrame:
    """Synthetic listings with an id column, the known price and BAD_ROWS broken."""
    frame = generate_frame(n_rows, seed=seed)
    frame.insert(0, "listing_id", [f"L{i:06d}" for i in range(n_rows)])
    frame["latitude"] = frame["latitude"].astype(object)
    frame.loc[3, "n_rooms"] = 999
    frame.loc[7, "type"] = "castle"
    frame.loc[11, "latitude"] = "abc"
    frame.loc[12, "sector"] = None
    return frame


def pyfunc_intervals(scoring_model, rows: pd.DataFrame, level: float) -> pd.DataFrame:
    """Price and interval of each row by MLflow's own predict with `params={"interval": level}`,
    in slices the model accepts: what the model server answers to the same params."""
    answers = [answer for i in range(0, len(rows), 1000)
               for answer in scoring_model.pyfunc.predict(rows.iloc[i:i + 1000],
                                                          params={"interval": level})]
    return pd.DataFrame({"price": [a["price"] for a in answers],
                         "price_lower": [a["interval"]["lower"] for a in answers],
                         "price_upper": [a["interval"]["upper"] for a in answers],
                         "interval_level": [a["interval"]["level"] for a in answers]})


@pytest.fixture(scope="module")
def portfolio() -> pd.DataFrame:
    return make_portfolio(3000)


@pytest.fixture
def portfolio_csv(portfolio: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "portfolio.csv"
    portfolio.to_csv(path, index=False)
    return path


@pytest.fixture
def scoring_model(trained_model) -> ScoringModel:
    return resolve_model(CHAMPION, trained_model.tracking_uri)
