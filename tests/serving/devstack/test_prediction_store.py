"""The prediction store through the real stack (`python -m serving.devstack`, what `make stack`
runs) with its store on the real PostgreSQL server (a schema of its own): the proxy migrates it at
start-up, a prediction lands in it, and its observed price is recorded by request id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, text

from serving.api.schemas import SPEC_PREDICT_BODY
from serving.prediction_store.engine import open_engine
from serving.prediction_store.migrate import current_revision, head_revision
from serving.prediction_store.queries import feedback_rows, predictions_window
from tests.support.stack import RunningStack, launch_stack, wait_for_prediction

pytestmark = pytest.mark.slow

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    schema = f"stack_store_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_SERVER)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_SERVER}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, trained_model, store_url: str
          ) -> Iterator[RunningStack]:
    """The stack on the tiny model's store (its champion served), the prediction store on
    PostgreSQL."""
    root = tmp_path_factory.mktemp("store-stack")
    running = launch_stack(root, trained_model.tracking_uri, {"PREDICTION_STORE_URL": store_url})
    yield running
    running.stop()


def test_a_prediction_and_its_observed_price_reach_the_store(stack: RunningStack,
                                                             store_url: str) -> None:
    engine = open_engine(store_url)
    assert current_revision(engine) == head_revision()  # migrated by the proxy at start-up
    with httpx.Client(base_url=stack.url, timeout=60, trust_env=False) as client:
        priced = wait_for_prediction(client, stack.headers(), SPEC_PREDICT_BODY).json()
        answer = client.post("/feedback", headers=stack.headers(), json={"observations": [{
            "request_id": priced["request_id"], "row_index": 0, "observed_price": 20500.0,
            "observed_at": "2026-02-01T00:00:00Z", "kind": "sale"}]})
        assert answer.status_code == 200, answer.text
        metrics = client.get("/metrics").text
    stored = predictions_window(engine)
    ours = stored[stored.request_id == priced["request_id"]]
    assert len(ours) == 1 and ours.price.iloc[0] == priced["predictions"][0]
    observed = feedback_rows(engine)
    assert list(observed.prediction_id) == [int(ours.id.iloc[0])]
    assert answer.json()["observations"][0]["prediction_id"] == int(ours.id.iloc[0])
    assert "valuation_prediction_store_written_total" in metrics
    engine.dispose()
