"""Helpers of the pricing tests: synthetic rows, reference prices, metrics of a running proxy."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from valuation.model_runtime.schema import FEATURES
from valuation.synthetic import generate_frame


def synthetic_rows(n: int, seed: int = 11) -> list[dict[str, Any]]:
    return generate_frame(n, seed)[list(FEATURES)].to_dict("records")


def unbatched_prices(base_url: str, rows: list[dict[str, Any]]) -> list[float]:
    """Each row priced alone by the model server itself: the reference a batch must match."""
    with httpx.Client(timeout=30, trust_env=False) as http:
        return [http.post(f"{base_url}/invocations", json={"inputs": [row]}).json()["predictions"][0]
                for row in rows]


def metric(base_url: str, name: str) -> float:
    text = httpx.get(f"{base_url}/metrics", trust_env=False).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"metric {name} not exported")


def metrics_value(client, name: str, **labels: str) -> float:
    """A sample of the app's /metrics (a test client), 0 when it is not exported."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
