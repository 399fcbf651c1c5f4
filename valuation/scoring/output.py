"""The output parquet and the rejected-rows side file.

Both are written as the job goes under temporary names in the output's own folder, and renamed to
their real names only when every row is written: an interrupted job leaves no half-written file
under the output's name (and the rename is atomic, as both names are on one file system).
"""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from valuation.model_runtime.schema import NUMERIC_FEATURES
from valuation.scoring.rows import STATUS_OK, STATUS_REJECTED, Rejection

PRICE, MODEL_NAME, MODEL_VERSION, STATUS = "price", "model_name", "model_version", "status"
# With --interval: the bounds in UF and the level asked (null where the row was rejected).
PRICE_LOWER, PRICE_UPPER, INTERVAL_LEVEL = "price_lower", "price_upper", "interval_level"
INTERVAL_COLUMNS = (PRICE_LOWER, PRICE_UPPER, INTERVAL_LEVEL)
ADDED_COLUMNS = (PRICE, *INTERVAL_COLUMNS, MODEL_NAME, MODEL_VERSION, STATUS)
# An input column named like one the command adds is kept under this prefix (a portfolio with known
# prices), with --interval or without: the output's columns do not depend on the flag.
KEPT_PREFIX = "input_"
# Keys of the parquet file's metadata.
METADATA_MODEL_URI = b"valuation.model_uri"
METADATA_MODEL_NAME = b"valuation.model_name"
METADATA_MODEL_VERSION = b"valuation.model_version"
METADATA_INTERVAL_LEVEL = b"valuation.interval_level"
REJECTED_HEADER = ("row", "field", "message")


def rejected_path(output: Path, suffix: str) -> Path:
    """The side file of rejected rows beside OUTPUT: its name without extension, plus `suffix`."""
    return output.with_name(output.stem + suffix)


def output_schema(input_schema: pa.Schema, interval: float | None = None) -> pa.Schema:
    """The input's columns (the model's numbers as float64; a clash with an added column renamed
    with KEPT_PREFIX), then price, (with an interval) price_lower, price_upper and interval_level,
    then model_name, model_version and status."""
    fields = []
    for field in input_schema:
        if field.name in NUMERIC_FEATURES:
            field = pa.field(field.name, pa.float64())
        if field.name in ADDED_COLUMNS:
            field = field.with_name(KEPT_PREFIX + field.name)
        fields.append(field)
    fields.append(pa.field(PRICE, pa.float64()))
    if interval is not None:
        fields += [pa.field(name, pa.float64()) for name in INTERVAL_COLUMNS]
    fields += [pa.field(MODEL_NAME, pa.string()), pa.field(MODEL_VERSION, pa.string()),
               pa.field(STATUS, pa.string())]
    return pa.schema(fields)


class ScoredOutput:
    """Writes scored batches and rejections; `commit()` publishes both files, leaving the block
    without it (an error, Ctrl-C) removes them."""

    def __init__(self, output: Path, rejected: Path, schema: pa.Schema,
                 model_uri: str, model_name: str, model_version: str, interval: float | None = None):
        self.output, self.rejected = output, rejected
        self.model_name, self.model_version = model_name, model_version
        self.interval = interval
        metadata = {
            METADATA_MODEL_URI: model_uri.encode(),
            METADATA_MODEL_NAME: model_name.encode(),
            METADATA_MODEL_VERSION: model_version.encode(),
        }
        if interval is not None:
            metadata[METADATA_INTERVAL_LEVEL] = repr(interval).encode()
        self.schema = schema.with_metadata(metadata)
        token = uuid.uuid4().hex[:8]
        self._output_tmp = output.with_name(f".{output.name}.{token}.partial")
        self._rejected_tmp = rejected.with_name(f".{rejected.name}.{token}.partial")
        self._writer = pq.ParquetWriter(self._output_tmp, self.schema)
        self._rejected_file = self._rejected_tmp.open("w", newline="", encoding="utf-8")
        self._rejected_csv = csv.writer(self._rejected_file)
        self._rejected_csv.writerow(REJECTED_HEADER)
        self._committed = False

    def write(self, batch: pa.RecordBatch, prices: np.ndarray, accepted: np.ndarray,
              rejections: list[Rejection], bounds: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """One input batch with its prices and, with an interval, its (lower, upper) bounds (both
        ignored where not accepted), and its rejections."""
        columns = [_as_output(column, name) for column, name in zip(batch.columns, batch.schema.names,
                                                                    strict=True)]
        n_rows = batch.num_rows
        columns.append(pa.array(prices, type=pa.float64(), mask=~accepted))
        if self.interval is not None:
            if bounds is None:
                raise ValueError("an output with an interval needs the bounds of every batch")
            columns += [pa.array(bound, type=pa.float64(), mask=~accepted) for bound in bounds]
            columns.append(pa.array(np.full(n_rows, self.interval), type=pa.float64(), mask=~accepted))
        columns += [
            pa.array(np.full(n_rows, self.model_name, dtype=object), type=pa.string()),
            pa.array(np.full(n_rows, self.model_version, dtype=object), type=pa.string()),
            pa.array(np.where(accepted, STATUS_OK, STATUS_REJECTED), type=pa.string()),
        ]
        self.write_scored(pa.RecordBatch.from_arrays(columns, schema=self.schema))
        self.write_rejections(rejections)

    def write_scored(self, batch: pa.RecordBatch) -> None:
        """A batch that already has the output's columns, written as a row group of its own (a
        buffered row group would hold up to a million rows in memory)."""
        self._writer.write_table(pa.Table.from_batches([batch.replace_schema_metadata(self.schema.metadata)]))

    def write_rejections(self, rejections: list[Rejection]) -> None:
        self._rejected_csv.writerows((r.row, r.field, r.message) for r in rejections)

    def commit(self) -> None:
        self._close()
        os.replace(self._output_tmp, self.output)
        os.replace(self._rejected_tmp, self.rejected)
        self._committed = True

    def _close(self) -> None:
        self._writer.close()
        self._rejected_file.close()

    def __enter__(self) -> ScoredOutput:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._committed:
            return
        self._close()
        self._output_tmp.unlink(missing_ok=True)
        self._rejected_tmp.unlink(missing_ok=True)


def _as_output(column: pa.Array, name: str) -> pa.Array:
    if name in NUMERIC_FEATURES and column.type != pa.float64():
        # Text (a CSV's numbers are read as text) or integers: a value that is not a number is null
        # here; its row is rejected and the side file quotes it.
        return pa.array(pd.to_numeric(column.to_pandas(), errors="coerce"), type=pa.float64())
    return column
