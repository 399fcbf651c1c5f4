"""Fixtures of the monitoring tests: the prediction store, migrated by its own Alembic history,
on real PostgreSQL (a schema of its own) and on SQLite, a model version trained by the project's
own pipeline with a reference of more than 1,000 rows (Evidently's large-sample statistics
decide), and the serving settings pointing at all of it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from omegaconf import DictConfig, OmegaConf
from redis import Redis

from serving.prediction_store.engine import open_engine
from serving.prediction_store.migrate import upgrade
from serving.prediction_store.tables import Observation, Prediction
from tests.support.serving import purge_queue, run_pipeline_in_child, serving_settings
from tests.support.store import fresh_pg_schema, pg_schema_url
from valuation.model_runtime.schema import FEATURES

MODEL_NAME = "property_friends_best_model"
# 600 training rows, 1,500 test rows: the reference has more than 1,000 rows.
MONITORED_PIPELINE = [
    "data=sample", "data.n_train=600", "data.n_test=1500", "cv.folds=0", "model=gbr",
    "model.params.n_estimators=40", "model.params.max_depth=3",
    "evaluate.thresholds.rmse=1e12", "evaluate.thresholds.mae=1e12",
    "evaluate.thresholds.r2=-1e12", "experiment_name=monitoring-tests",
]


def _records(frame: pd.DataFrame) -> list[dict]:
    """The eight features of each row as plain Python values (drivers refuse numpy scalars)."""
    return [{name: (str(row[name]) if name in ("type", "sector") else float(row[name]))
             for name in FEATURES} for row in frame[list(FEATURES)].to_dict("records")]


@dataclass
class PredictionStore:
    url: str
    engine: sa.Engine

    def add_predictions(self, frame: pd.DataFrame, prices: np.ndarray, version: str,
                        start: datetime, request: str) -> list[int]:
        """One prediction per row, a second apart from `start`; returns their ids."""
        table = Prediction.__table__
        rows = [{"request_id": request, "row_index": i, "created_at": start + timedelta(seconds=i),
                 "key_id": "k" * 12, "model_name": MODEL_NAME, "model_version": version,
                 "served_alias": "champion", "price": float(prices[i]),
                 **record}
                for i, record in enumerate(_records(frame))]
        with self.engine.begin() as connection:
            connection.execute(sa.insert(table), rows)
            found = connection.execute(sa.select(table.c.id).where(table.c.request_id == request)
                                       .order_by(table.c.row_index))
            return [row[0] for row in found]

    def add_observations(self, frame: pd.DataFrame, observed: np.ndarray, prediction_ids,
                         request: str, observed_at: datetime) -> None:
        now = datetime.now(UTC)
        rows = [{"request_id": request, "row_index": i, "observed_price": float(observed[i]),
                 "observed_at": observed_at + timedelta(hours=i % 48), "kind": "sale",
                 "received_at": now, "key_id": "k" * 12, "prediction_id": prediction_ids[i],
                 **record}
                for i, record in zip(range(len(observed)), _records(frame), strict=False)]
        with self.engine.begin() as connection:
            connection.execute(sa.insert(Observation.__table__), rows)


@pytest.fixture(params=["postgresql", "sqlite"])
def prediction_store(request, tmp_path: Path) -> Iterator[PredictionStore]:
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            url = pg_schema_url(stack.enter_context(fresh_pg_schema("drift")))
        else:
            url = f"sqlite:///{tmp_path / 'predictions.db'}"
        engine = open_engine(url)
        stack.callback(engine.dispose)
        upgrade(engine)
        yield PredictionStore(url, engine)


@dataclass(frozen=True)
class MonitoredModel:
    tracking_uri: str
    root: Path
    version: str


@pytest.fixture(scope="session")
def monitored_model(tmp_path_factory: pytest.TempPathFactory) -> MonitoredModel:
    root = tmp_path_factory.mktemp("monitored-model")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    result = run_pipeline_in_child(uri, root, MONITORED_PIPELINE)
    assert result["version"], f"the monitored model was not registered: {result}"
    return MonitoredModel(uri, root, str(result["version"]))


@pytest.fixture(scope="session")
def champion_predict(monitored_model: MonitoredModel):
    """The champion's own prices for a frame of rows (what the proxy would have stored)."""
    mlflow.set_tracking_uri(monitored_model.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{monitored_model.version}")
    return lambda frame: np.asarray(model.predict(frame[list(FEATURES)]), dtype=float)


@pytest.fixture
def monitoring_settings(tmp_path: Path, monitored_model: MonitoredModel,
                        prediction_store: PredictionStore, redis_conn: Redis,
                        monkeypatch: pytest.MonkeyPatch) -> Iterator[DictConfig]:
    """Serving settings with unique queues and Redis prefix, the store, a tmp audit file."""
    unique = uuid.uuid4().hex[:10]
    monkeypatch.setenv("PREDICTION_STORE_URL", prediction_store.url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", monitored_model.tracking_uri)
    settings = serving_settings(tmp_path, monitored_model.tracking_uri)
    settings = OmegaConf.merge(settings, {
        "monitoring_job": {"queue": f"test-monitoring-{unique}",
                           "redis_prefix": f"test-monitoring:{unique}",
                           "window": {"rows": 1200, "min_rows": 500}},
        "retraining": {"min_feedback_rows": 300, "cooldown_s": 600},
        "prediction_store": {"url": prediction_store.url},
    })
    yield settings
    for queue in (settings.jobs.queue, settings.monitoring_job.queue):
        purge_queue(redis_conn, queue)
    for key in redis_conn.scan_iter(f"{settings.monitoring_job.redis_prefix}*"):
        redis_conn.delete(key)
