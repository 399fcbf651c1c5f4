"""The Spark engine: the same input as a Spark DataFrame, the model's rules in a pandas function
(the same statuses and rejections as the local engine), and the price from
`mlflow.pyfunc.spark_udf`, which builds the model's environment with `env_manager` where asked.

The rules run in the workers' Python, which must import this project (true in local mode, where
PYSPARK_PYTHON is this interpreter). Spark writes the scored rows as parquet parts beside OUTPUT;
they are then streamed into the one output file with the model version in its metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from valuation.model_runtime.schema import FEATURES, NUMERIC_FEATURES
from valuation.model_runtime.validation import ValidationRules
from valuation.scoring.inputs import BatchReader, ScoringInput
from valuation.scoring.model import ScoringModel, use_store
from valuation.scoring.output import (
    ADDED_COLUMNS,
    INTERVAL_LEVEL,
    KEPT_PREFIX,
    MODEL_NAME,
    MODEL_VERSION,
    PRICE,
    PRICE_LOWER,
    PRICE_UPPER,
    STATUS,
    ScoredOutput,
)
from valuation.scoring.rows import STATUS_OK, STATUS_REJECTED, Rejection, check_rows
from valuation.scoring.summary import ScoringSummary

ROW, REJECTIONS = "_row", "_rejections"  # working columns, dropped before writing
_PARTITION, _POSITION = "_partition", "_position"
_PRICED = "_priced"  # the UDF's answer: the price, or with an interval a struct holding it


def spark_session(master: str, rules: ValidationRules) -> Any:
    """The running Spark session, or a new one on `master`."""
    from pyspark.sql import SparkSession

    if master.startswith("local"):
        # Workers start this interpreter, so they import pandas, pyarrow and this project.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    return (SparkSession.builder.master(master).appName("valuation-score")
            # Arrow batches no larger than the rules take in one call.
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(rules.max_rows))
            .getOrCreate())


def score_spark(source: ScoringInput, model: ScoringModel, output: Path, rejected: Path, *,
                master: str, env_manager: str, batch_rows: int, data_cfg: Any = None,
                interval: float | None = None) -> ScoringSummary:
    """As the local engine; with `interval` (a level checked by the job), spark_udf is made with
    `params={"interval": level}` and a struct result type, and the bounds become columns."""
    import mlflow
    from pyspark.sql import functions as F

    started = time.perf_counter()
    spark = spark_session(master, model.rules)
    frame = _with_row_numbers(_read(spark, source, batch_rows, data_cfg))
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    checked = frame.mapInPandas(
        _checker(model.rules.to_dict()),
        schema=StructType([*frame.schema.fields, StructField(REJECTIONS, StringType(), True)]),
    ).cache()  # read twice: the scored rows and the rejections
    use_store(model.tracking_uri)
    result_type = DoubleType() if interval is None else _interval_result()
    price = mlflow.pyfunc.spark_udf(spark, model.version_uri, result_type=result_type,
                                    env_manager=env_manager, extra_env=_executor_env(),
                                    params=None if interval is None else {"interval": interval})
    good = checked.filter(F.col(REJECTIONS).isNull())
    bad = checked.filter(F.col(REJECTIONS).isNotNull())
    priced = _priced_columns(F, interval)
    scored = good.withColumn(_PRICED, price(*_model_input(F, env_manager))).unionByName(
        bad.withColumn(_PRICED, F.lit(None).cast(result_type)))
    inputs = [c for c in frame.columns if c != ROW]
    result = scored.select(
        *[_output_column(F, c) for c in inputs],
        *priced,
        F.lit(model.name).alias(MODEL_NAME),
        F.lit(model.version).alias(MODEL_VERSION),
        F.when(F.col(REJECTIONS).isNull(), STATUS_OK).otherwise(STATUS_REJECTED).alias(STATUS),
        F.col(ROW),
    ).orderBy(ROW).drop(ROW)
    parts = output.with_name(f".{output.name}.{uuid.uuid4().hex[:8]}.spark")
    try:
        result.write.parquet(str(parts))
        rejections = _rejections(bad.select(ROW, REJECTIONS).orderBy(ROW).toLocalIterator())
        files = sorted(parts.glob("part-*.parquet"))  # orderBy: part order is row order
        schema = pq.read_schema(files[0]).remove_metadata()
        rows = rejected_rows = 0
        with ScoredOutput(output, rejected, schema, model.uri, model.name, model.version,
                          interval) as out:
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
                    out.write_scored(batch)
                    rows += batch.num_rows
            out.write_rejections(rejections)
            rejected_rows = len({r.row for r in rejections})
            out.commit()
    finally:
        shutil.rmtree(parts, ignore_errors=True)
        checked.unpersist()
    return ScoringSummary(rows, rows - rejected_rows, rejected_rows, time.perf_counter() - started,
                          output, rejected, model.name, model.version, "spark")


# MLflow's wait for each batch's answer from a model environment's scoring server (default 60 s),
# which also covers that server's start (Python, MLflow, the model): a loaded machine needs more.
# Passed on because executors started before it was set would not see it.
_EXECUTOR_ENV = ("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT",)


def _executor_env() -> dict[str, str]:
    return {name: os.environ[name] for name in _EXECUTOR_ENV if name in os.environ}


def _model_input(F: Any, env_manager: str) -> list[Any]:
    """The UDF's arguments: the features as one struct column, which the UDF gets as a DataFrame.

    In this process (`local`) spark_udf hands that DataFrame to the model, which MLflow turns
    into rows. With another env manager it sends it to the model's scoring server in the built
    environment, which first casts it to the model's signature: for our type-hint signature one
    column holding each row as an object, so eight feature columns are refused ("Expected data to
    be dictionary"). Given more arguments than the signature's one input, spark_udf builds that
    column itself (each struct row as a dict, named as the signature names it) and drops the
    extra ones: the literal below is never sent."""
    features = F.struct(*FEATURES)
    return [features] if env_manager == "local" else [features, F.lit(0)]


def _read(spark: Any, source: ScoringInput, batch_rows: int, data_cfg: Any) -> Any:
    reader = BatchReader(source, batch_rows, data_cfg)  # the same checks and messages as local
    if source.kind == "csv":
        reader.close()
        return spark.read.option("header", True).option("inferSchema", True).csv(source.location)
    if source.kind == "parquet":
        reader.close()
        return spark.read.option("recursiveFileLookup", True).parquet(source.location)
    # A database: read through the data-source config here (workers need no JDBC driver).
    import pyarrow as pa

    try:
        table = pa.Table.from_batches(list(reader), schema=reader.schema)
    finally:
        reader.close()
    return spark.createDataFrame(table.to_pandas())


def _with_row_numbers(frame: Any) -> Any:
    """`frame` with its 1-based input row number, in Spark's reading order (a file's own order
    for one file). Computed in the JVM: each partition's row count gives its offset, and
    monotonically_increasing_id holds the partition index above bit 33 and the position below."""
    from itertools import accumulate

    from pyspark.sql import functions as F

    tagged = frame.withColumn(_PARTITION, F.spark_partition_id()).withColumn(
        _POSITION, F.monotonically_increasing_id() - F.shiftleft(F.col(_PARTITION).cast("long"), 33))
    counts = dict(tagged.groupBy(_PARTITION).count().collect())
    partitions = max(counts, default=-1) + 1
    offsets = [0, *accumulate(counts.get(i, 0) for i in range(partitions))][:partitions] or [0]
    offset = F.element_at(F.array(*[F.lit(o) for o in offsets]), F.col(_PARTITION) + 1)
    return tagged.withColumn(ROW, offset + F.col(_POSITION) + 1).drop(_PARTITION, _POSITION)


def _checker(rules_dict: dict[str, Any]) -> Any:
    """The pandas function that adds REJECTIONS (JSON [[field, message], ...], null when the row
    is accepted) to each batch."""

    def check(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        rules = ValidationRules.from_dict(rules_dict)
        for frame in batches:
            checked = check_rows(frame, rules, first_row=0)
            problems: dict[int, list[list[str]]] = {}
            for rejection in checked.rejections:
                problems.setdefault(rejection.row, []).append([rejection.field, rejection.message])
            frame[REJECTIONS] = [json.dumps(problems[i]) if i in problems else None
                                 for i in range(len(frame))]
            yield frame

    return check


def _interval_result() -> Any:
    """The UDF's result type with an interval. The pyfunc answers one object per row,
    {"price": UF, "interval": {"lower": UF, "upper": UF, "level": L}}, which MLflow turns into
    this struct."""
    from pyspark.sql.types import DoubleType, StructField, StructType

    bounds = StructType([StructField(name, DoubleType()) for name in ("lower", "upper", "level")])
    return StructType([StructField("price", DoubleType()), StructField("interval", bounds)])


def _priced_columns(F: Any, interval: float | None) -> list[Any]:
    """The output's price columns from the UDF's answer (null where the row was rejected)."""
    if interval is None:
        return [F.col(_PRICED).alias(PRICE)]
    return [F.col(f"{_PRICED}.price").alias(PRICE),
            F.col(f"{_PRICED}.interval.lower").alias(PRICE_LOWER),
            F.col(f"{_PRICED}.interval.upper").alias(PRICE_UPPER),
            F.col(f"{_PRICED}.interval.level").alias(INTERVAL_LEVEL)]


def _output_column(F: Any, name: str) -> Any:
    column = F.col(name)
    if name in NUMERIC_FEATURES:
        # As the local engine: a value that is not a number is null (its row is rejected).
        column = F.expr(f"try_cast(`{name}` AS DOUBLE)")
    return column.alias(KEPT_PREFIX + name if name in ADDED_COLUMNS else name)


def _rejections(rows: Iterator[Any]) -> list[Rejection]:
    return [Rejection(int(row[ROW]), field, message)
            for row in rows for field, message in json.loads(row[REJECTIONS])]
