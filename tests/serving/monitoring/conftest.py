"""Fixtures of the monitoring tests: a prediction store with the agreed `predictions` and
`observations` tables on real PostgreSQL (a schema of its own) and on SQLite, a model version
trained by the project's own pipeline with a reference of more than 1,000 rows (Evidently's
large-sample statistics decide), and the serving settings pointing at all of it.

The table definitions below are the agreed schema of the prediction store, written here only
until the store's own models (serving/prediction_store/) are on main; the job itself reflects
the tables and defines none.
"""

from __future__ import annotations

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

from tests.support.serving import purge_queue, run_pipeline_in_child, serving_settings
from valuation.model_runtime.schema import FEATURES

POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
MODEL_NAME = "property_friends_best_model"
# 600 training rows, 1,500 test rows: the reference has more than 1,000 rows.
MONITORED_PIPELINE = [
    "data=sample", "data.n_train=600", "data.n_test=1500", "cv.folds=0", "model=gbr",
    "model.params.n_estimators=40", "model.params.max_depth=3",
    "evaluate.thresholds.rmse=1e12", "evaluate.thresholds.mae=1e12",
    "evaluate.thresholds.r2=-1e12", "experiment_name=monitoring-tests",
]


def store_metadata(schema: str | None) -> sa.MetaData:
    metadata = sa.MetaData(schema=schema)

    def features() -> list[sa.Column]:
        return [sa.Column("type", sa.String(32)), sa.Column("sector", sa.String(64)),
                *[sa.Column(name, sa.Float) for name in FEATURES[2:]]]

    sa.Table("predictions", metadata,
             sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("request_id", sa.String(128)), sa.Column("row_index", sa.Integer),
             sa.Column("created_at", sa.DateTime(timezone=True)),
             sa.Column("key_id", sa.String(32)), sa.Column("model_name", sa.String(128)),
             sa.Column("model_version", sa.String(16)), sa.Column("served_alias", sa.String(16)),
             *features(), sa.Column("price", sa.Float),
             sa.Index("ix_predictions_time_version", "created_at", "model_version"))
    prefix = f"{schema}." if schema else ""
    sa.Table("observations", metadata,
             sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("request_id", sa.String(128)), sa.Column("row_index", sa.Integer),
             *features(),
             sa.Column("observed_price", sa.Float),
             sa.Column("observed_at", sa.DateTime(timezone=True)),
             sa.Column("kind", sa.String(16)),
             sa.Column("received_at", sa.DateTime(timezone=True)),
             sa.Column("key_id", sa.String(32)),
             sa.Column("prediction_id", sa.Integer, sa.ForeignKey(f"{prefix}predictions.id"),
                       nullable=True))
    return metadata


def _records(frame: pd.DataFrame) -> list[dict]:
    """The eight features of each row as plain Python values (drivers refuse numpy scalars)."""
    return [{name: (str(row[name]) if name in ("type", "sector") else float(row[name]))
             for name in FEATURES} for row in frame[list(FEATURES)].to_dict("records")]


@dataclass
class PredictionStore:
    url: str
    schema: str | None
    engine: sa.Engine
    metadata: sa.MetaData

    def table(self, name: str) -> sa.Table:
        return self.metadata.tables[f"{self.schema}.{name}" if self.schema else name]

    def add_predictions(self, frame: pd.DataFrame, prices: np.ndarray, version: str,
                        start: datetime, request: str) -> list[int]:
        """One prediction per row, a second apart from `start`; returns their ids."""
        rows = [{"request_id": request, "row_index": i, "created_at": start + timedelta(seconds=i),
                 "key_id": "k" * 12, "model_name": MODEL_NAME, "model_version": version,
                 "served_alias": "champion", "price": float(prices[i]),
                 **record}
                for i, record in enumerate(_records(frame))]
        with self.engine.begin() as connection:
            connection.execute(sa.insert(self.table("predictions")), rows)
            found = connection.execute(
                sa.select(self.table("predictions").c.id)
                .where(self.table("predictions").c.request_id == request)
                .order_by(self.table("predictions").c.row_index))
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
            connection.execute(sa.insert(self.table("observations")), rows)


@pytest.fixture(params=["postgresql", "sqlite"])
def prediction_store(request, tmp_path: Path) -> Iterator[PredictionStore]:
    if request.param == "postgresql":
        schema = f"drift_{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(POSTGRES_URL)
        with engine.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = POSTGRES_URL
    else:
        schema = None
        url = f"sqlite:///{tmp_path / 'predictions.db'}"
        engine = sa.create_engine(url)
    metadata = store_metadata(schema)
    metadata.create_all(engine)
    yield PredictionStore(url, schema, engine, metadata)
    if schema:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


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
        "monitoring_job": {"queue": f"test-monitoring-{unique}", "store_schema": prediction_store.schema,
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
