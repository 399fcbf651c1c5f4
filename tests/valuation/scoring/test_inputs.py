"""INPUT read as Arrow batches: CSV, parquet file, parquet folder and database table or query; what
cannot be scored is refused up front, naming the file, table or column."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from omegaconf import OmegaConf

from tests.valuation.conftest import PG_URL
from valuation.config import load_config
from valuation.scoring.inputs import BatchReader, ScoringInputError, parse_input


def _read_all(reader: BatchReader) -> pd.DataFrame:
    try:
        return pa.Table.from_batches(list(reader), schema=reader.schema).to_pandas()
    finally:
        reader.close()


def test_csv_is_streamed_in_batches_with_numbers_as_text(portfolio, portfolio_csv) -> None:
    reader = BatchReader(parse_input(str(portfolio_csv)), batch_rows=1000)
    assert reader.total_rows == len(portfolio)
    assert reader.schema.field("latitude").type == pa.string()  # "abc" rejects one row, not the file
    frame = _read_all(reader)
    assert frame["listing_id"].tolist() == portfolio["listing_id"].tolist()


def test_parquet_file_and_folder(portfolio, tmp_path) -> None:
    clean = portfolio.astype({"latitude": str})
    clean.to_parquet(tmp_path / "one.parquet")
    folder = tmp_path / "parts"
    folder.mkdir()
    clean.iloc[:1000].to_parquet(folder / "part-0.parquet")
    clean.iloc[1000:].to_parquet(folder / "part-1.parquet")
    for path in (tmp_path / "one.parquet", folder):
        reader = BatchReader(parse_input(str(path)), batch_rows=700)
        assert reader.total_rows == len(portfolio)
        assert _read_all(reader)["listing_id"].tolist() == portfolio["listing_id"].tolist()


def test_database_table_and_query_through_the_data_source_config(pg_table, monkeypatch) -> None:
    name, frame = pg_table
    monkeypatch.setenv("VALUATION_DB_URL", PG_URL)
    data_cfg = load_config(["data=postgres"]).data
    table = _read_all(BatchReader(parse_input(f"table:{name}"), 64, data_cfg))
    assert len(table) == len(frame)
    select = f'query:SELECT * FROM "{name}" WHERE n_rooms >= 3'  # noqa: S608  (the test's own table)
    query = _read_all(BatchReader(parse_input(select), 64, data_cfg))
    assert len(query) == int((frame["n_rooms"] >= 3).sum())


def test_a_missing_table_is_named(monkeypatch) -> None:
    monkeypatch.setenv("VALUATION_DB_URL", PG_URL)
    with pytest.raises(ScoringInputError, match="table 'no_such_listings': table not found"):
        BatchReader(parse_input("table:no_such_listings"), 64, load_config(["data=postgres"]).data)


def test_a_missing_column_is_named(portfolio, tmp_path) -> None:
    path = tmp_path / "no_rooms.csv"
    portfolio.drop(columns=["n_rooms"]).to_csv(path, index=False)
    with pytest.raises(ScoringInputError, match=r"no_rooms.csv: missing column\(s\) n_rooms"):
        BatchReader(parse_input(str(path)), 100)


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("garbage.parquet", b"not parquet at all", "garbage.parquet: cannot read it"),
    ("listings.xlsx", b"PK", "listings.xlsx: expected a .csv or .parquet file"),
])
def test_unreadable_inputs_are_named(tmp_path, name, content, expected) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ScoringInputError, match=expected):
        BatchReader(parse_input(str(path)), 100)


def test_a_path_that_is_not_there_is_named(tmp_path) -> None:
    with pytest.raises(ScoringInputError, match="nowhere.csv: no such file or folder"):
        parse_input(str(tmp_path / "nowhere.csv"))


def test_an_empty_folder_is_refused(tmp_path) -> None:
    with pytest.raises(ScoringInputError, match="folder holds no .parquet file"):
        parse_input(str(tmp_path))


def test_an_unset_database_url_is_named(monkeypatch) -> None:
    monkeypatch.delenv("VALUATION_DB_URL", raising=False)
    data_cfg = OmegaConf.create({"url_env": "VALUATION_DB_URL"})
    with pytest.raises(ScoringInputError, match="VALUATION_DB_URL is not set"):
        BatchReader(parse_input("table:listings"), 64, data_cfg)


def test_a_folder_of_files_with_different_columns_is_refused(portfolio, tmp_path) -> None:
    portfolio = portfolio.astype({"latitude": str})
    portfolio.iloc[:10].to_parquet(tmp_path / "a.parquet")
    portfolio.iloc[10:20].drop(columns=["listing_id"]).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(ScoringInputError, match="b.parquet: its columns differ from those of"):
        BatchReader(parse_input(str(tmp_path)), 100)
