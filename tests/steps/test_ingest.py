"""The ingest step end to end in a temporary SQLite tracking store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from steps import ingest
from valuation.config import PROJECT_ROOT, ensure_experiment
from valuation.data_checks import DataError
from valuation.sources import read_artifact_frame
from valuation.synthetic import defect_counts, generate_frame


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An initialised, empty SQLite tracking database: MLflow's schema migrations take seconds,
    so each test copies this file instead of migrating its own."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def experiment(tracking_uri: str, empty_store: Path, make_cfg) -> str:
    """The config's experiment in the tmp store, with artifacts beside the tmp database."""
    shutil.copyfile(empty_store, tracking_uri.removeprefix("sqlite:///"))
    name = make_cfg().experiment_name
    ensure_experiment(name, tracking_uri)
    mlflow.set_experiment(name)
    return name


def test_csv_ingest_logs_cleaned_train_and_untouched_test(experiment, make_cfg, write_csv):
    train = generate_frame(700, 1, defect_share=0.1)  # 10 rows of each defect kind
    test = generate_frame(200, 2, defect_share=0.07)
    train_path, test_path = write_csv("train.csv", train), write_csv("test.csv", test)
    cfg = make_cfg(f"data.train_path={train_path}", f"data.test_path={test_path}")

    with mlflow.start_run() as active:
        result = ingest.run(cfg)

    planned = defect_counts(700, 0.1)
    removed = planned["zero_price"] + planned["tiny_price"] + planned["too_many_rooms"] + \
        planned["too_many_bathrooms"] + planned["duplicate"]  # zero areas are kept by default
    assert (result.n_train, result.n_test) == (700 - removed, 200)
    run_id = active.info.run_id
    assert result.train_uri == f"runs:/{run_id}/data/train.parquet"
    assert result.test_uri == f"runs:/{run_id}/data/test.parquet"

    stored_train, stored_test = read_artifact_frame(result.train_uri), read_artifact_frame(result.test_uri)
    assert len(stored_train) == result.n_train and (stored_train["price"] >= 1000).all()
    assert not stored_train.duplicated().any()
    # The test table keeps every row a client could send, defects included.
    test_defects = defect_counts(200, 0.07)
    assert len(stored_test) == 200
    assert (stored_test["price"] == 0).sum() == test_defects["zero_price"] > 0
    assert stored_test.duplicated().sum() == test_defects["duplicate"]
    assert list(stored_train.columns) == list(train.columns)

    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.tags["valuation.step"] == "ingest"
    assert run.data.tags["data.train_digest"] == result.train_digest
    assert run.data.tags["data.test_digest"] == result.test_digest
    assert run.data.tags["progress.fraction"] == "0.150"
    metrics = run.data.metrics
    assert metrics["rows_read_train"] == 700 and metrics["rows_read_test"] == 200
    assert metrics["rows_removed_price_below_min"] == 20
    assert metrics["rows_removed_too_many_rooms"] == 10
    assert metrics["rows_removed_duplicate"] == 10
    assert metrics["rows_removed_zero_area"] == 0
    assert metrics["rows_removed_total"] == removed
    assert metrics["rows_flagged_usable_exceeds_total"] == 10
    assert metrics["rows_train"] == result.n_train and metrics["rows_test"] == 200
    assert run.data.params["data.source"] == "csv" and run.data.params["cleaning.min_price"] == "1000"

    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "test"}
    assert inputs["train"].dataset.digest == result.train_digest
    assert json.loads(inputs["test"].dataset.source) == {"uri": str(test_path)}
    contexts = {d.dataset.name: {t.key: t.value for t in d.tags} for d in run.inputs.dataset_inputs}
    assert contexts["train"]["mlflow.data.context"] == "training"
    assert contexts["test"]["mlflow.data.context"] == "testing"


def test_sample_ingest_digests_are_stable_and_named(experiment, make_cfg):
    cfg = make_cfg("data=sample", "data.n_train=200", "data.n_test=50")
    with mlflow.start_run():
        first = ingest.run(cfg)
    with mlflow.start_run() as active:
        second = ingest.run(cfg)
    assert (first.train_digest, first.test_digest) == (second.train_digest, second.test_digest)
    assert first.train_digest != first.test_digest
    dataset = mlflow.MlflowClient().get_run(active.info.run_id).inputs.dataset_inputs[0].dataset
    assert dataset.source_type == "valuation"
    assert json.loads(dataset.source)["name"].startswith("sample(n=250, seed=7)")


def test_bad_file_fails_the_run_with_a_data_error(experiment, make_cfg, write_csv):
    frame = generate_frame(20, 1).astype({"latitude": object})
    frame.loc[4, "latitude"] = "north"
    path = write_csv("train.csv", frame)
    cfg = make_cfg(f"data.train_path={path}", "data.test_path=null")
    expected = r"column 'latitude' row 5: 'north' is not a number"
    with pytest.raises(DataError, match=expected), mlflow.start_run() as active:
        ingest.run(cfg)
    assert mlflow.MlflowClient().get_run(active.info.run_id).info.status == "FAILED"


def test_run_needs_an_active_run(tracking_uri, make_cfg):
    with pytest.raises(RuntimeError, match="active MLflow run"):
        ingest.run(make_cfg("data=sample"))


def _ingest_cli(overrides: str, tracking_uri: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "steps.ingest", "--overrides", overrides],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.mark.slow
def test_cli_entry_point(experiment, tracking_uri, tmp_path):
    done = _ingest_cli("data=sample data.n_train=120 data.n_test=30", tracking_uri, tmp_path)
    assert done.returncode == 0, done.stderr
    uris = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert len(read_artifact_frame(uris["train_uri"])) == 120
    assert len(read_artifact_frame(uris["test_uri"])) == 30

    missing = tmp_path / "nope.csv"
    failed = _ingest_cli(f"data.train_path={missing}", tracking_uri, tmp_path)
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {missing}: file not found") and "data=sample" in last
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]


def test_a_market_index_restates_train_and_test_prices_by_sector(
        experiment, make_cfg, write_csv, tmp_path):
    train, test = generate_frame(300, 3), generate_frame(100, 4)
    sector = str(train["sector"].iloc[0]).strip().lower()
    index = tmp_path / "market_index.json"
    index.write_text(json.dumps({sector: {"factor": 1.25, "rows": 30, "median_ratio": 1.3}}))
    cfg = make_cfg(f"data.train_path={write_csv('train.csv', train)}",
                   f"data.test_path={write_csv('test.csv', test)}", f"market_index.path={index}")
    plain = make_cfg(f"data.train_path={write_csv('train.csv', train)}",
                     f"data.test_path={write_csv('test.csv', test)}")

    with mlflow.start_run() as restated_run:
        restated = ingest.run(cfg)
    with mlflow.start_run():
        as_read = ingest.run(plain)

    for role in ("train_uri", "test_uri"):
        after = read_artifact_frame(getattr(restated, role))
        before = read_artifact_frame(getattr(as_read, role))
        inside = after["sector"].astype(str).str.strip().str.lower() == sector
        assert inside.any() and (~inside).any()
        assert (after.loc[inside, "price"] / before.loc[inside, "price"]).to_numpy() == \
            pytest.approx(1.25)
        assert after.loc[~inside, "price"].tolist() == before.loc[~inside, "price"].tolist()
    logged = mlflow.get_run(restated_run.info.run_id).data
    assert logged.params["market_index.path"] == str(index)
    assert logged.metrics[f"market_index.{sector.replace(' ', '_')}"] == pytest.approx(1.25)


def test_a_bad_market_index_is_refused_naming_the_file_and_sector(
        experiment, make_cfg, write_csv, tmp_path):
    train, test = generate_frame(100, 5), generate_frame(50, 6)
    index = tmp_path / "market_index.json"
    index.write_text(json.dumps({"vitacura": 9.0}))
    cfg = make_cfg(f"data.train_path={write_csv('train.csv', train)}",
                   f"data.test_path={write_csv('test.csv', test)}", f"market_index.path={index}")
    with mlflow.start_run(), pytest.raises(DataError, match=rf"{index}: sector 'vitacura': factor 9.0"):
        ingest.run(cfg)
    missing = make_cfg(f"data.train_path={write_csv('train.csv', train)}",
                       f"data.test_path={write_csv('test.csv', test)}",
                       f"market_index.path={tmp_path / 'absent.json'}")
    with mlflow.start_run(), pytest.raises(DataError, match="absent.json: cannot read the market index"):
        ingest.run(missing)
