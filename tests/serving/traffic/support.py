"""Labelled live rows fabricated in a real prediction store, for the promotion gate's tests: each
request row priced by the champion and by the challenger (as a shadow or a canary), with an
observed price."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine, insert

from serving.prediction_store.rows import feature_values
from serving.prediction_store.tables import Observation, Prediction
from valuation.model_runtime.schema import EXAMPLE_ROW

MODEL_NAME = "property_friends_best_model"


def add_labelled_rows(engine: Engine, *, champion: str, challenger: str, n: int,
                      champion_error: float, challenger_error: float, how: str = "shadow",
                      prefix: str = "req", at: datetime | None = None, seed: int = 0) -> None:
    """`n` request rows, each with an observed price and both versions' prices, off by about
    `champion_error` and `challenger_error` (shares of the observed price, signs at random).
    how="shadow": the champion answered and the challenger shadowed; "canary": the challenger
    answered and the champion priced in the background (stored as shadow)."""
    random = np.random.default_rng(seed)
    at = at or datetime.now(UTC) - timedelta(hours=1)
    aliases = {"shadow": ("champion", "shadow"), "canary": ("shadow", "canary")}[how]
    predictions, observations = [], []
    for i in range(n):
        observed = 5000.0 + 37.0 * i
        row = feature_values({**EXAMPLE_ROW, "net_usable_area": 100.0 + i % 97,
                              "net_area": 120.0 + i})
        request = {"request_id": f"{prefix}-{i}", "row_index": 0, "created_at": at,
                   "key_id": "k1", "model_name": MODEL_NAME, **row}
        for version, alias, error in ((champion, aliases[0], champion_error),
                                      (challenger, aliases[1], challenger_error)):
            sign = 1.0 if random.random() < 0.5 else -1.0
            price = observed * (1 + sign * error * random.uniform(0.8, 1.2))
            predictions.append({**request, "model_version": version, "served_alias": alias,
                                "price": price})
        observations.append({"request_id": f"{prefix}-{i}", "row_index": 0, **row,
                             "observed_price": observed, "observed_at": at + timedelta(minutes=i),
                             "kind": "sale", "received_at": datetime.now(UTC), "key_id": "k1"})
    with engine.begin() as connection:
        connection.execute(insert(Prediction.__table__), predictions)
        connection.execute(insert(Observation.__table__), observations)
