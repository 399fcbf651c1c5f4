"""The local engine on the session's trained model: every row priced by the model's own code or
rejected with its row, field and message; nothing under the output's name until the job is done."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.valuation.scoring.conftest import BAD_ROWS, CHAMPION, pyfunc_intervals
from valuation.model_runtime.schema import FEATURES
from valuation.scoring.inputs import ScoringInputError
from valuation.scoring.job import ScoringJob, run
from valuation.scoring.model import ModelNotFoundError

pytestmark = pytest.mark.slow


def _job(trained_model, input: Path | str, output: Path, **overrides) -> ScoringJob:
    values = dict(input=str(input), output=output, model_uri=CHAMPION,
                  tracking_uri=trained_model.tracking_uri, batch_rows=500,
                  rejected_suffix=".rejected.csv", progress=False)
    return ScoringJob(**{**values, **overrides})


def _rejected(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_csv_portfolio_is_priced_row_by_row(trained_model, scoring_model, portfolio,
                                              portfolio_csv, tmp_path) -> None:
    output = tmp_path / "priced.parquet"
    summary = run(_job(trained_model, portfolio_csv, output))
    assert (summary.rows, summary.rejected) == (len(portfolio), len(BAD_ROWS))
    priced = pd.read_parquet(output)
    assert priced.columns.tolist() == ["listing_id", *FEATURES, "input_price", "price", "model_name",
                                       "model_version", "status"]
    assert priced["listing_id"].tolist() == portfolio["listing_id"].tolist()
    bad = [row - 1 for row in BAD_ROWS]
    assert priced.loc[bad, "status"].eq("rejected").all() and priced.loc[bad, "price"].isna().all()
    good = priced.drop(index=bad)
    assert good["status"].eq("ok").all()
    assert good["model_version"].eq(trained_model.version).all()
    # The prices the pyfunc itself gives, through MLflow's own predict, in slices it accepts.
    clean = portfolio.drop(index=bad)[list(FEATURES)].astype({"latitude": float})
    expected = np.concatenate([scoring_model.pyfunc.predict(clean.iloc[i:i + 1000])
                               for i in range(0, len(clean), 1000)])
    np.testing.assert_allclose(good["price"].to_numpy(), expected, rtol=1e-9)
    assert [(int(r["row"]), r["field"]) for r in _rejected(summary.rejected_file)] == list(
        BAD_ROWS.items())
    metadata = pq.read_schema(output).metadata
    assert metadata[b"valuation.model_version"] == trained_model.version.encode()
    assert metadata[b"valuation.model_uri"] == CHAMPION.encode()


def test_parquet_gives_the_same_prices_as_csv(trained_model, portfolio, portfolio_csv, tmp_path) -> None:
    parquet = tmp_path / "portfolio.parquet"
    portfolio.astype({"latitude": str}).to_parquet(parquet)
    run(_job(trained_model, portfolio_csv, tmp_path / "from_csv.parquet"))
    run(_job(trained_model, parquet, tmp_path / "from_parquet.parquet", batch_rows=777))
    from_csv = pd.read_parquet(tmp_path / "from_csv.parquet")
    from_parquet = pd.read_parquet(tmp_path / "from_parquet.parquet")
    pd.testing.assert_series_equal(from_csv["price"], from_parquet["price"])
    assert _rejected(tmp_path / "from_csv.rejected.csv") == _rejected(
        tmp_path / "from_parquet.rejected.csv")


def test_an_unknown_model_stops_before_any_output(trained_model, portfolio_csv, tmp_path) -> None:
    unknown = "models:/property_friends_best_model@nobody"
    with pytest.raises(ModelNotFoundError, match="models:/property_friends_best_model@nobody"):
        run(_job(trained_model, portfolio_csv, tmp_path / "out.parquet", model_uri=unknown))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["portfolio.csv"]


def test_a_missing_column_stops_before_any_output(trained_model, portfolio, tmp_path) -> None:
    path = tmp_path / "in.csv"
    portfolio.drop(columns=["sector"]).to_csv(path, index=False)
    with pytest.raises(ScoringInputError, match="missing column.*sector"):
        run(_job(trained_model, path, tmp_path / "out.parquet"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_a_job_that_fails_midway_leaves_nothing_under_the_output_name(trained_model, portfolio,
                                                                     tmp_path) -> None:
    # A file whose last row group is damaged: the first ones are read, scored and written to the
    # temporary file before the reader meets the damage.
    path = tmp_path / "damaged.parquet"
    portfolio.astype({"latitude": str}).to_parquet(path, row_group_size=1000, compression="snappy")
    first = pq.ParquetFile(path).metadata.row_group(2).column(0).file_offset
    data = bytearray(path.read_bytes())
    data[first:first + 2000] = b"\xff" * 2000
    path.write_bytes(bytes(data))
    with pytest.raises(ScoringInputError, match="damaged.parquet: cannot read it"):
        run(_job(trained_model, path, tmp_path / "out.parquet", batch_rows=100))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.parquet"]


def test_interval_adds_the_bounds_the_pyfunc_gives_for_the_same_params(trained_model, scoring_model,
                                                                        portfolio, portfolio_csv,
                                                                        tmp_path) -> None:
    output = tmp_path / "priced.parquet"
    summary = run(_job(trained_model, portfolio_csv, output, interval=0.8))
    assert (summary.rows, summary.rejected) == (len(portfolio), len(BAD_ROWS))
    priced = pd.read_parquet(output)
    assert priced.columns.tolist() == ["listing_id", *FEATURES, "input_price", "price", "price_lower",
                                       "price_upper", "interval_level", "model_name", "model_version",
                                       "status"]
    bad = [row - 1 for row in BAD_ROWS]
    assert priced.loc[bad, ["price", "price_lower", "price_upper", "interval_level"]].isna().all().all()
    good = priced.drop(index=bad).reset_index(drop=True)
    clean = portfolio.drop(index=bad)[list(FEATURES)].astype({"latitude": float})
    expected = pyfunc_intervals(scoring_model, clean, 0.8)
    pd.testing.assert_frame_equal(good[expected.columns.tolist()], expected, rtol=1e-9)
    assert (good["price_lower"] <= good["price"]).all() and (good["price"] <= good["price_upper"]).all()
    assert (good["price_lower"] < good["price_upper"]).any()  # a real interval, not the price twice
    assert pq.read_schema(output).metadata[b"valuation.interval_level"] == b"0.8"
    # A wider level gives wider intervals for the same rows.
    run(_job(trained_model, portfolio_csv, tmp_path / "wide.parquet", interval=0.95))
    wide = pd.read_parquet(tmp_path / "wide.parquet").drop(index=bad).reset_index(drop=True)
    assert ((wide["price_upper"] - wide["price_lower"]) >= (good["price_upper"] - good["price_lower"])).all()


@pytest.mark.parametrize("level", [0.3, 1.0, float("nan")])
def test_an_interval_level_out_of_range_stops_before_any_output(trained_model, portfolio_csv, tmp_path,
                                                                level) -> None:
    from valuation.scoring.job import ScoringUsageError

    with pytest.raises(ScoringUsageError, match=r"--interval .*: interval level must be between 0.5 "
                                                r"and 0.99"):
        run(_job(trained_model, portfolio_csv, tmp_path / "out.parquet", interval=level))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["portfolio.csv"]
