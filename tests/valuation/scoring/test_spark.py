"""The Spark engine (one local Spark session for the whole test session) gives the local engine's
output: the same prices, statuses and rejected rows, also with `--env-manager uv`, where MLflow
builds the model's environment from the model's own requirements and scores in it."""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.valuation.scoring.conftest import BAD_ROWS, CHAMPION, pyfunc_intervals
from valuation.model_runtime.schema import FEATURES
from valuation.scoring.job import ScoringJob, run

pytestmark = pytest.mark.slow


def _score(trained_model, input: Path, output: Path, engine: str, env_manager: str = "local",
           interval: float | None = None):
    return run(ScoringJob(input=str(input), output=output, model_uri=CHAMPION,
                          tracking_uri=trained_model.tracking_uri, batch_rows=1000,
                          rejected_suffix=".rejected.csv", engine=engine, spark_master="local[2]",
                          env_manager=env_manager, progress=False, interval=interval))


def _same_output(local: Path, spark: Path) -> None:
    by_local, by_spark = pd.read_parquet(local), pd.read_parquet(spark)
    assert by_spark.columns.tolist() == by_local.columns.tolist()
    for column in ("listing_id", "status", "model_name", "model_version", "type", "latitude"):
        pd.testing.assert_series_equal(by_spark[column], by_local[column], check_dtype=False)
    pd.testing.assert_series_equal(by_spark["price"], by_local["price"], rtol=1e-9)
    rejected = local.with_name(local.stem + ".rejected.csv")
    assert rejected.read_text() == spark.with_name(spark.stem + ".rejected.csv").read_text()


def test_spark_gives_the_local_engines_output(trained_model, spark_session, portfolio_csv,
                                              tmp_path) -> None:
    local = _score(trained_model, portfolio_csv, tmp_path / "local.parquet", "local")
    spark = _score(trained_model, portfolio_csv, tmp_path / "spark.parquet", "spark")
    assert (spark.rows, spark.scored, spark.rejected) == (local.rows, local.scored, local.rejected)
    _same_output(tmp_path / "local.parquet", tmp_path / "spark.parquet")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no parts left


def test_spark_with_the_uv_env_manager_gives_the_local_engines_output(
        trained_model, spark_session, portfolio, tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mlflow.utils.virtualenv")
    # MLflow finds uv on PATH and builds the model's environment from its requirements.txt, with
    # this Python (the base interpreter, not this venv), never a download. It keeps the environment
    # under its per-process temporary root: a second uv run in this session would reuse it.
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is a test dependency (pyproject.toml [test]); run make install"
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(uv).parent), str(Path(sys.base_prefix) / "bin"),
                                                os.environ["PATH"]]))
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    # The model environment's scoring server starts within MLflow's wait for the first batch:
    # 60 s by default, too short on a loaded CI machine.
    monkeypatch.setenv("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "900")
    small = tmp_path / "small.csv"
    portfolio.iloc[:200].to_csv(small, index=False)  # BAD_ROWS included
    local = _score(trained_model, small, tmp_path / "local.parquet", "local")
    spark = _score(trained_model, small, tmp_path / "uv.parquet", "spark", env_manager="uv")
    assert (spark.rows, spark.scored, spark.rejected) == (local.rows, local.scored, local.rejected)
    assert local.rejected == len(BAD_ROWS)
    _same_output(tmp_path / "local.parquet", tmp_path / "uv.parquet")
    # The prices came from an environment MLflow built (or reused) for the model, not this venv.
    envs = re.findall(r"(?:Creating a new environment in|Environment) (\S+/mlflow-[0-9a-f]+)", caplog.text)
    assert envs and all((Path(env) / "bin" / "python").exists() for env in envs), caplog.text[-2000:]
    assert not any(Path(env).resolve().is_relative_to(Path(sys.prefix).resolve()) for env in envs)


def test_spark_gives_the_intervals_of_the_local_engine_and_the_pyfunc(trained_model, scoring_model,
                                                                       spark_session, portfolio,
                                                                       tmp_path) -> None:
    small = tmp_path / "small.csv"
    portfolio.iloc[:400].to_csv(small, index=False)  # BAD_ROWS included
    local = _score(trained_model, small, tmp_path / "local.parquet", "local", interval=0.9)
    spark = _score(trained_model, small, tmp_path / "spark.parquet", "spark", interval=0.9)
    assert (spark.rows, spark.scored, spark.rejected) == (local.rows, local.scored, local.rejected)
    _same_output(tmp_path / "local.parquet", tmp_path / "spark.parquet")
    by_local = pd.read_parquet(tmp_path / "local.parquet")
    by_spark = pd.read_parquet(tmp_path / "spark.parquet")
    for column in ("price_lower", "price_upper", "interval_level"):
        pd.testing.assert_series_equal(by_spark[column], by_local[column], rtol=1e-9)
    bad = [row - 1 for row in BAD_ROWS]
    clean = portfolio.iloc[:400].drop(index=bad)[list(FEATURES)].astype({"latitude": float})
    expected = pyfunc_intervals(scoring_model, clean, 0.9)
    good = by_spark.drop(index=bad).reset_index(drop=True)
    pd.testing.assert_frame_equal(good[expected.columns.tolist()], expected, rtol=1e-9)
    assert pq.read_schema(tmp_path / "spark.parquet").metadata[b"valuation.interval_level"] == b"0.9"
