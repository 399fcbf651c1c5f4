"""`valuation score`: the command's summary and errors, and the same prices from the local engine,
the Spark engine and POST /predict (the real proxy in front of a real `mlflow models serve`)."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.cli.main import app
from serving.settings import get_settings
from valuation.model_runtime.schema import FEATURES
from valuation.synthetic import generate_frame

pytestmark = pytest.mark.slow

runner = CliRunner()


@pytest.fixture
def store(trained_model, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_model.tracking_uri)
    get_settings.cache_clear()
    return trained_model.tracking_uri


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def listings(tmp_path) -> pd.DataFrame:
    frame = generate_frame(60, seed=21)
    frame.insert(0, "listing_id", range(1000, 1060))
    frame.to_csv(tmp_path / "listings.csv", index=False)
    return frame


def test_score_prints_a_summary_and_writes_parquet(store, listings, tmp_path, trained_model) -> None:
    result = invoke("score", str(tmp_path / "listings.csv"), str(tmp_path / "priced.parquet"),
                    "--no-progress")
    assert result.exit_code == 0, result.output
    assert "60 rows: 60 scored, 0 rejected" in result.output
    assert f"property_friends_best_model version {trained_model.version}" in result.output
    assert pd.read_parquet(tmp_path / "priced.parquet")["status"].eq("ok").all()


@pytest.mark.parametrize(("args", "named"), [
    (["--model", "models:/property_friends_best_model/99"], "models:/property_friends_best_model/99"),
    (["--engine", "dask"], "engine 'dask'"),
    (["--interval", "1.5"], "--interval 1.5: interval level must be between 0.5 and 0.99, got 1.5"),
])
def test_score_refuses_with_a_message_naming_what_is_wrong(store, listings, tmp_path, args,
                                                           named) -> None:
    result = invoke("score", str(tmp_path / "listings.csv"), str(tmp_path / "out.parquet"), *args)
    assert result.exit_code != 0
    assert named in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_a_missing_column_is_named(store, listings, tmp_path) -> None:
    listings.drop(columns=["net_area"]).to_csv(tmp_path / "short.csv", index=False)
    result = invoke("score", str(tmp_path / "short.csv"), str(tmp_path / "out.parquet"))
    assert result.exit_code == 1
    assert "short.csv: missing column(s) net_area" in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_the_same_prices_from_both_engines_and_predict(store, listings, tmp_path, spark_session,
                                                       make_client, serving_supervisor,
                                                       auth) -> None:
    prices = {}
    for engine in ("local", "spark"):
        output = tmp_path / f"{engine}.parquet"
        result = invoke("score", str(tmp_path / "listings.csv"), str(output), "--engine", engine,
                        "--master", "local[2]", "--no-progress")
        assert result.exit_code == 0, result.output
        prices[engine] = pd.read_parquet(output)["price"].tolist()
    client = make_client(supervisor=serving_supervisor)
    rows = listings[list(FEATURES)].to_dict(orient="records")
    answer = client.post("/predict", headers=auth,
                         json={"model_name": "property_friends_best_model", "features": rows})
    assert answer.status_code == 200, answer.text
    prices["predict"] = answer.json()["predictions"]
    assert prices["local"] == pytest.approx(prices["predict"], rel=1e-9)
    assert prices["spark"] == pytest.approx(prices["predict"], rel=1e-9)
