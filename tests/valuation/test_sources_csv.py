"""CSV and sample sources: reading, the seeded split, and clear errors for bad files."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from valuation.config import PROJECT_ROOT
from valuation.data_checks import DataError
from valuation.sources import load_tables, split_frame
from valuation.synthetic import generate_frame


def test_two_csv_files(make_cfg, write_csv):
    train, test = generate_frame(120, 1), generate_frame(40, 2)
    train_path, test_path = write_csv("train.csv", train), write_csv("test.csv", test)
    tables = load_tables(make_cfg(f"data.train_path={train_path}", f"data.test_path={test_path}"))
    assert not tables.split and tables.kind == "csv"
    assert tables.train_name == str(train_path) and tables.test_location == str(test_path)
    pd.testing.assert_frame_equal(tables.train, train.astype({"price": np.float64}))
    assert len(tables.test) == 40


def test_relative_paths_resolve_against_the_project_root(make_cfg):
    with pytest.raises(DataError) as error:
        load_tables(make_cfg("data.train_path=data/nope_h2.csv"))
    message = str(error.value)
    assert message.startswith("data/nope_h2.csv: file not found")
    assert str(PROJECT_ROOT / "data" / "nope_h2.csv") in message
    assert "data=sample" in message


def test_no_test_path_splits_with_the_seed(make_cfg, write_csv):
    frame = generate_frame(101, 3)
    path = write_csv("all.csv", frame)
    cfg = make_cfg(f"data.train_path={path}", "data.test_path=null", "split.test_size=0.2", "seed=5")
    tables = load_tables(cfg)
    assert tables.split and len(tables.test) == 21 and len(tables.train) == 80
    assert "test split 20%" in tables.test_name
    rejoined = pd.concat([tables.train, tables.test]).sort_values(list(frame.columns))
    expected = frame.astype({"price": np.float64}).sort_values(list(frame.columns))
    np.testing.assert_array_equal(rejoined.to_numpy(), expected.to_numpy())
    again = load_tables(cfg)
    pd.testing.assert_frame_equal(again.test, tables.test)
    other = load_tables(make_cfg(f"data.train_path={path}", "data.test_path=null", "seed=6"))
    assert not other.test.equals(tables.test)


def test_split_refuses_impossible_sizes():
    with pytest.raises(DataError, match="test_size"):
        split_frame(generate_frame(10, 1), 1.5, 0)
    with pytest.raises(DataError, match="cannot split 1 row"):
        split_frame(generate_frame(1, 1), 0.2, 0)


def test_bad_cell_names_file_column_and_row(make_cfg, write_csv):
    frame = generate_frame(30, 1).astype({"n_rooms": object})
    frame.loc[16, "n_rooms"] = "three"
    path = write_csv("train.csv", frame)
    with pytest.raises(DataError) as error:
        load_tables(make_cfg(f"data.train_path={path}", "data.test_path=null"))
    assert str(error.value) == f"{path}: column 'n_rooms' row 17: 'three' is not a number"


def test_missing_column_names_the_file(make_cfg, write_csv):
    path = write_csv("train.csv", generate_frame(10, 1).drop(columns=["latitude"]))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: missing column\(s\) 'latitude'"):
        load_tables(make_cfg(f"data.train_path={path}", "data.test_path=null"))


def test_error_in_the_test_file_names_the_test_file(make_cfg, write_csv):
    train = write_csv("train.csv", generate_frame(10, 1))
    test = write_csv("test.csv", "type,sector\ncasa,nunoa\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(test))}: missing column"):
        load_tables(make_cfg(f"data.train_path={train}", f"data.test_path={test}"))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "file is empty"),
        ("type,sector,net_usable_area,net_area,n_rooms,n_bathroom,latitude,longitude,price\n",
         "no data rows"),
        (b"\xff\xfe\x00\x01binary", "not UTF-8"),
        ('type,sector\n"casa,nunoa\n', "not a valid CSV"),
    ],
)
def test_unusable_files(make_cfg, tmp_path, content, expected):
    path = tmp_path / "train.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: .*{expected}"):
        load_tables(make_cfg(f"data.train_path={path}", "data.test_path=null"))


def test_a_directory_is_not_a_csv(make_cfg, tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        load_tables(make_cfg(f"data.train_path={tmp_path}", "data.test_path=null"))


def test_sample_source(make_cfg):
    tables = load_tables(make_cfg("data=sample", "data.n_train=300", "data.n_test=100"))
    assert (len(tables.train), len(tables.test)) == (300, 100)
    assert not tables.split and tables.kind == "sample"
    assert tables.train_name == "sample(n=400, seed=7) rows 1-300"
    assert pd.concat([tables.train, tables.test]).duplicated().sum() == 0
    again = load_tables(make_cfg("data=sample", "data.n_train=300", "data.n_test=100"))
    pd.testing.assert_frame_equal(again.train, tables.train)


def test_unknown_source_is_named(make_cfg):
    with pytest.raises(DataError, match="data.source='excel'"):
        load_tables(make_cfg("data.source=excel"))
