"""The Spark engine (one local Spark session for the whole test session) gives the local engine's
output: the same prices, statuses and rejected rows. (A non-local `--env-manager` does not work
yet: MLflow's spark_udf sends `dataframe_split`, which the model's scoring server refuses for a
type-hint signature; see the README's "Batch scoring".)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.valuation.scoring.conftest import CHAMPION
from valuation.scoring.job import ScoringJob, run

pytestmark = pytest.mark.slow


def _score(trained_model, input: Path, output: Path, engine: str, env_manager: str = "local"):
    return run(ScoringJob(input=str(input), output=output, model_uri=CHAMPION,
                          tracking_uri=trained_model.tracking_uri, batch_rows=1000,
                          rejected_suffix=".rejected.csv", engine=engine, spark_master="local[2]",
                          env_manager=env_manager, progress=False))


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
