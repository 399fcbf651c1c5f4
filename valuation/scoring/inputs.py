"""What INPUT names, read as a stream of Arrow record batches.

INPUT is a CSV file, a parquet file, a folder of parquet files, or a database table or query through
the data-source config (conf/data/postgres.yaml: the URL comes from the env var named by
``url_env``): ``table:NAME`` or ``query:SELECT ...``. Problems found before any row is scored (no
such file, unreadable file, a missing model column) raise ScoringInputError naming the file or
column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from valuation.model_runtime.schema import FEATURES, NUMERIC_FEATURES

TABLE_PREFIX = "table:"
QUERY_PREFIX = "query:"


class ScoringInputError(ValueError):
    """INPUT cannot be scored at all; the message names the file, table or column."""


@dataclass(frozen=True)
class ScoringInput:
    """One INPUT: its kind (csv | parquet | database), what to show for it and where it is."""

    kind: str
    name: str  # safe to show (a database URL without its password)
    location: str  # the path, or the table name or query
    is_query: bool = False

    @property
    def path(self) -> Path:
        return Path(self.location)


def parse_input(text: str) -> ScoringInput:
    """The INPUT a command line names. Raises ScoringInputError for a path that is not there."""
    if text.startswith(TABLE_PREFIX) or text.startswith(QUERY_PREFIX):
        is_query = text.startswith(QUERY_PREFIX)
        location = text.removeprefix(QUERY_PREFIX if is_query else TABLE_PREFIX).strip()
        if not location:
            raise ScoringInputError(f"{text!r}: name a table after 'table:' or a SELECT after 'query:'")
        return ScoringInput("database", text, location, is_query)
    path = Path(text)
    if not path.exists():
        raise ScoringInputError(f"{text}: no such file or folder")
    if path.is_dir():
        if not any(path.rglob("*.parquet")):
            raise ScoringInputError(f"{text}: folder holds no .parquet file")
        return ScoringInput("parquet", text, str(path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return ScoringInput("csv", text, str(path))
    if suffix in (".parquet", ".pq"):
        return ScoringInput("parquet", text, str(path))
    raise ScoringInputError(f"{text}: expected a .csv or .parquet file, a folder of parquet files, "
                            "table:NAME or query:SELECT ...")


class BatchReader:
    """The batches of one INPUT, with its schema known before the first row is scored."""

    def __init__(self, source: ScoringInput, batch_rows: int, data_cfg: Any = None):
        self.source = source
        self.batch_rows = batch_rows
        self._close = lambda: None
        try:
            self.schema, self._batches, self.total_rows = self._open(data_cfg)
        except ScoringInputError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise ScoringInputError(f"{source.name}: cannot read it: {exc}") from None
        missing = [name for name in FEATURES if name not in self.schema.names]
        if missing:
            self.close()
            raise ScoringInputError(
                f"{source.name}: missing column(s) {', '.join(missing)}; the model needs "
                f"{', '.join(FEATURES)}"
            )

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._batches
        except (OSError, pa.ArrowException) as exc:
            raise ScoringInputError(f"{self.source.name}: cannot read it: {exc}") from None

    def close(self) -> None:
        self._close()

    def _open(self, data_cfg: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch], int | None]:
        if self.source.kind == "csv":
            return self._open_csv()
        if self.source.kind == "parquet":
            return self._open_parquet()
        return self._open_database(data_cfg)

    def _open_csv(self) -> tuple[pa.Schema, Iterator[pa.RecordBatch], int | None]:
        from pyarrow import csv

        # The model's numbers are read as text: one unparseable value must reject its row (with the
        # value in the message), not stop the reader; the rules parse them. An empty field is a
        # missing value (null), as in a parquet file or a database.
        convert = csv.ConvertOptions(column_types={name: pa.string() for name in NUMERIC_FEATURES},
                                     strings_can_be_null=True)
        reader = csv.open_csv(self.source.location, convert_options=convert,
                              read_options=csv.ReadOptions(block_size=1 << 22))
        self._close = reader.close
        return reader.schema, iter(reader), _count_data_lines(self.source.path)

    def _open_parquet(self) -> tuple[pa.Schema, Iterator[pa.RecordBatch], int | None]:
        import pyarrow.parquet as pq

        path = self.source.path
        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        opened = [pq.ParquetFile(file) for file in files]
        schema = opened[0].schema_arrow
        for file, parquet in zip(files, opened, strict=True):
            if not parquet.schema_arrow.equals(schema):
                raise ScoringInputError(f"{file}: its columns differ from those of {files[0]}")

        def batches() -> Iterator[pa.RecordBatch]:
            # One file at a time, one batch at a time: a file's reader holds one row group's pages,
            # so memory does not grow with the input (a dataset scanner reads ahead).
            for parquet in opened:
                yield from parquet.iter_batches(batch_size=self.batch_rows)

        return schema, batches(), sum(parquet.metadata.num_rows for parquet in opened)

    def _open_database(self, data_cfg: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch], int | None]:
        import pandas as pd
        import sqlalchemy as sa

        from valuation.sources import DataError, database_cause, open_database, table_statement

        try:
            engine, safe_url, url = open_database(data_cfg)
        except DataError as exc:
            raise ScoringInputError(str(exc)) from None
        shown = f"{safe_url} {'query' if self.source.is_query else 'table'} {self.source.location!r}"
        connection = engine.connect().execution_options(stream_results=True)

        def close() -> None:
            connection.close()
            engine.dispose()

        self._close = close
        try:
            statement = table_statement(connection, None if self.source.is_query else self.source.location,
                                        self.source.location if self.source.is_query else None)
            result = connection.execute(statement)
            columns = list(result.keys())
            first = result.fetchmany(self.batch_rows)
        except sa.exc.NoSuchTableError:
            close()
            raise ScoringInputError(f"{shown}: table not found") from None
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            close()
            raise ScoringInputError(f"{shown}: {database_cause(exc, url)}") from None
        first_batch = pa.RecordBatch.from_pandas(pd.DataFrame(first, columns=columns), preserve_index=False)
        schema = first_batch.schema

        def batches() -> Iterator[pa.RecordBatch]:
            rows = first
            while rows:
                yield pa.RecordBatch.from_pandas(pd.DataFrame(rows, columns=columns), schema=schema,
                                                 preserve_index=False)
                rows = result.fetchmany(self.batch_rows)

        return schema, batches(), None


def _count_data_lines(path: Path) -> int:
    """Lines after the header: the row count for the progress bar's ETA (a quoted value holding a
    line break makes it an overestimate, which only the ETA sees)."""
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1  # the last line has no line break
    return max(lines - 1, 0)
