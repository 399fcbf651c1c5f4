"""`valuation feedback import` and `valuation store upgrade | prune` on a real SQLite store, with
the tiny model's champion (its rules check the features)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from serving.cli.main import app
from serving.prediction_store.engine import open_engine
from serving.prediction_store.queries import feedback_rows, predictions_window
from serving.prediction_store.settings import PredictionStoreSettings
from serving.prediction_store.writer import PredictionWriter, PricedRequest, StoreMetrics
from serving.settings import get_settings
from valuation.model_runtime.schema import FEATURES
from valuation.synthetic import generate_frame

pytestmark = pytest.mark.slow

runner = CliRunner()


@pytest.fixture
def store_url(trained_model, tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'store' / 'predictions.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_model.tracking_uri)
    monkeypatch.setenv("PREDICTION_STORE_URL", url)
    monkeypatch.setenv("AUDIT_LOG_PATH", str(tmp_path / "audit.jsonl"))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def store_prediction(url: str, request_id: str, rows: pd.DataFrame, at: datetime | None = None) -> None:
    writer = PredictionWriter(open_engine(url), PredictionStoreSettings(), StoreMetrics(CollectorRegistry()))
    writer.prepare()
    writer.start()
    writer.submit(PricedRequest(request_id, "k", "property_friends_best_model", "1", "champion",
                                at or datetime.now(UTC), rows[list(FEATURES)].to_dict("records"),
                                [1000.0] * len(rows)))
    assert writer.flush(20)
    writer.close()


def test_import_records_good_rows_and_lists_each_rejected_row_with_its_field(store_url, tmp_path) -> None:
    assert runner.invoke(app, ["store", "upgrade"]).exit_code == 0
    homes = generate_frame(6, seed=5)
    store_prediction(store_url, "req-1", homes.iloc[:2])
    rows = []
    for _, home in homes.iloc[2:].iterrows():  # 4 rows by features
        rows.append({**{name: home[name] for name in FEATURES}, "observed_price": home["price"],
                     "observed_at": "2026-03-01", "kind": "sale"})
    by_request = {"request_id": "req-1", "row_index": 1, "observed_price": 9000,
                  "observed_at": "2026-03-02T12:00:00-03:00", "kind": "appraisal"}
    rows += [
        by_request,
        {**by_request, "row_index": 7},                       # row 6: beyond the request's rows
        {**by_request, "request_id": "unknown"},              # row 7
        {**rows[0], "sector": "atlantis"},                    # row 8
        {**rows[0], "observed_price": "a lot", "kind": "rent"},  # row 9: two fields
        {**rows[0], "observed_at": "2026-03-01T00:00:00"},    # row 10: no time zone
    ]
    source = tmp_path / "observed.csv"
    pd.DataFrame(rows, columns=["request_id", "row_index", *FEATURES, "observed_price", "observed_at",
                                "kind"]).to_csv(source, index=False)

    result = runner.invoke(app, ["feedback", "import", str(source), "--no-progress"])
    assert result.exit_code == 0, result.output
    rejected_file = tmp_path / "observed.rejected.csv"
    assert "10 rows, 5 observations recorded, 0 already recorded, 5 rejected" in result.output
    with rejected_file.open() as handle:
        rejected = [(int(r["row"]), r["field"]) for r in csv.DictReader(handle)]
    assert sorted(rejected) == [(6, "row_index"), (7, "request_id"), (8, "sector"),
                                (9, "kind"), (9, "observed_price"), (10, "observed_at")]
    engine = open_engine(store_url)
    recorded = feedback_rows(engine)
    assert len(recorded) == 5
    matched = recorded[recorded.request_id == "req-1"].iloc[0]
    stored = predictions_window(engine)
    assert matched.prediction_id == int(stored[stored.row_index == 1].id.iloc[0])
    assert matched.observed_at == pd.Timestamp("2026-03-02T15:00:00Z")

    again = runner.invoke(app, ["feedback", "import", str(source), "--no-progress"])
    assert "0 observations recorded, 5 already recorded, 5 rejected" in again.output
    trail = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    imports = [e for e in trail if e["action"] == "feedback_import:cli"]
    assert [e["outputs"]["recorded"] for e in imports] == [5, 0]


@pytest.mark.parametrize(("content", "named"), [
    ("kind,observed_at\nsale,2026-01-01\n", "missing column(s) observed_price"),
    ("observed_price,observed_at,kind,type\n1,2026-01-01,sale,casa\n", "request_id and row_index, or"),
    ("", "empty file"),
])
def test_a_file_that_cannot_be_read_is_refused_naming_it(store_url, tmp_path, content, named) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(content)
    result = runner.invoke(app, ["feedback", "import", str(source)])
    assert result.exit_code == 1 and named in result.output and str(source) in result.output
    missing = runner.invoke(app, ["feedback", "import", str(tmp_path / "none.csv")])
    assert missing.exit_code == 1 and "no such file" in missing.output


def test_prune_deletes_what_is_older_than_the_retention(store_url) -> None:
    homes = generate_frame(2, seed=9)
    store_prediction(store_url, "old", homes.iloc[:1], at=datetime.now(UTC) - timedelta(days=91))
    store_prediction(store_url, "new", homes.iloc[1:])
    result = runner.invoke(app, ["store", "prune"])  # monitoring.retention_days: 90
    assert result.exit_code == 0, result.output
    assert "deleted 1 predictions and 0 observations older than 90 days" in result.output
    assert list(predictions_window(open_engine(store_url)).request_id) == ["new"]
