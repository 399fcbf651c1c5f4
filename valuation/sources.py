"""Where training and test tables come from, chosen by ``cfg.data.source``:

- ``csv``:      ``data.train_path`` / ``data.test_path`` (relative to the project root);
- ``postgres``: any SQLAlchemy URL taken from the env var named by ``data.url_env`` (a secret, never
                logged), reading ``data.train_table``/``test_table`` or ``train_query``/``test_query``;
- ``sample``:   the synthetic generator (``data.n_train``, ``data.n_test``, ``data.seed``).

When there is no test table (``test_path``/``test_table``/``test_query`` null) the train table is
split with ``cfg.split.test_size`` and ``cfg.seed``. Every table is schema-checked
(:func:`valuation.data_checks.validate_raw`) before the split, so row numbers in errors are the
rows of the file (or of the query result). Problems raise :class:`DataError`; there is no silent
fallback to another source.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from omegaconf import DictConfig

from valuation.config import resolve_path
from valuation.data_checks import DataError, validate_raw
from valuation.synthetic import generate_frame

__all__ = [
    "DataError",
    "NamedDatasetSource",
    "database_cause",
    "Tables",
    "lineage_source",
    "open_database",
    "load_feedback_rows",
    "load_market_index",
    "load_tables",
    "read_artifact_frame",
    "split_frame",
    "table_statement",
]

SOURCES = ("csv", "postgres", "sample")


@dataclass(frozen=True)
class Tables:
    train: pd.DataFrame
    test: pd.DataFrame
    train_name: str  # human-readable origin, safe to log (no password)
    test_name: str
    split: bool  # True when `test` was split off the train table
    kind: str = "csv"  # csv | postgres | sample
    train_location: str | None = None  # absolute file path for csv sources (for dataset lineage)
    test_location: str | None = None


def load_tables(cfg: DictConfig) -> Tables:
    """Schema-checked train and test tables of the configured source. Raises DataError."""
    source = cfg.data.get("source")
    if source == "csv":
        return _load_csv(cfg)
    if source == "postgres":
        return _load_postgres(cfg)
    if source == "sample":
        return _load_sample(cfg)
    raise DataError(f"data.source={source!r}: expected one of {', '.join(SOURCES)}")


def split_frame(
    frame: pd.DataFrame, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split; each part keeps the original row order."""
    if not 0.0 < float(test_size) < 1.0:
        raise DataError(f"split.test_size must be in (0, 1), got {test_size}")
    n_test = math.ceil(len(frame) * float(test_size))
    if n_test < 1 or len(frame) - n_test < 1:
        raise DataError(f"cannot split {len(frame)} row(s) with split.test_size={test_size}")
    test_rows = np.sort(np.random.default_rng(int(seed)).permutation(len(frame))[:n_test])
    is_test = np.zeros(len(frame), dtype=bool)
    is_test[test_rows] = True
    return frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)


def _with_split(cfg: DictConfig, train: pd.DataFrame, name: str, **extra: Any) -> Tables:
    test_size = float(cfg.split.test_size)
    train_part, test_part = split_frame(train, test_size, int(cfg.seed))
    return Tables(
        train=train_part,
        test=test_part,
        train_name=f"{name} [train split {1 - test_size:.0%}, seed {cfg.seed}]",
        test_name=f"{name} [test split {test_size:.0%}, seed {cfg.seed}]",
        split=True,
        **extra,
    )


# --- CSV ---------------------------------------------------------------------------------------


def _load_csv(cfg: DictConfig) -> Tables:
    train_path = cfg.data.get("train_path")
    if not train_path:
        raise DataError("data.train_path is not set (or use data=sample for the synthetic sample)")
    train, train_file = _read_csv(str(train_path))
    test_path = cfg.data.get("test_path")
    if not test_path:
        return _with_split(
            cfg, train, str(train_path), kind="csv",
            train_location=str(train_file), test_location=str(train_file),
        )
    test, test_file = _read_csv(str(test_path))
    return Tables(
        train=train,
        test=test,
        train_name=str(train_path),
        test_name=str(test_path),
        split=False,
        kind="csv",
        train_location=str(train_file),
        test_location=str(test_file),
    )


def _read_csv(configured: str) -> tuple[pd.DataFrame, Path]:
    path = resolve_path(configured)
    if not path.exists():
        raise DataError(
            f"{configured}: file not found (looked for {path}); put the CSV there, point "
            "data.train_path/data.test_path at it, or use data=sample for the synthetic sample",
            configured,
        )
    if path.is_dir():
        raise DataError(f"{configured}: is a directory, expected a CSV file", configured)
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{configured}: file is empty (no header, no rows)", configured) from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{configured}: not UTF-8 text (byte {exc.start}); is it really a CSV?", configured
        ) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{configured}: not a valid CSV: {exc}".strip(), configured) from None
    except OSError as exc:
        raise DataError(
            f"{configured}: cannot read file: {exc.strerror or exc}", configured
        ) from None
    return validate_raw(frame, configured), path


def load_feedback_rows(cfg: DictConfig) -> pd.DataFrame | None:
    """The extra labelled rows of ``feedback.train_path``, schema-checked like a training table;
    None when unset. A CSV file, or a parquet file or artifact (``runs:/<id>/....parquet``, what
    the retraining policy logs). Raises DataError naming the file."""
    configured = (cfg.get("feedback") or {}).get("train_path")
    if not configured:
        return None
    configured = str(configured)
    if not configured.endswith(".parquet"):
        return _read_csv(configured)[0]
    if "://" in configured or configured.startswith("runs:/"):
        return validate_raw(read_artifact_frame(configured), configured)
    try:
        frame = pd.read_parquet(resolve_path(configured))
    except (OSError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{configured}: cannot read the feedback rows: {first_line}",
                        configured) from None
    return validate_raw(frame, configured)


def load_market_index(cfg: DictConfig) -> dict[str, float] | None:
    """The per-sector price index of ``market_index.path`` ({sector: factor}; see
    valuation.monitoring.market_index), or None when unset: a JSON file, or a JSON artifact
    (``runs:/<id>/....json``, what the retraining policy logs). Raises DataError naming it."""
    import json

    from valuation.monitoring.market_index import read_index

    configured = (cfg.get("market_index") or {}).get("path")
    if not configured:
        return None
    configured = str(configured)
    try:
        if "://" in configured or configured.startswith("runs:/"):
            import mlflow

            values = mlflow.artifacts.load_dict(configured)
        else:
            values = json.loads(resolve_path(configured).read_text())
    except Exception as exc:  # unreadable, missing or not JSON: this index is unusable
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{configured}: cannot read the market index: {first_line[:300]}",
                        configured) from None
    return read_index(values, configured)


# --- PostgreSQL (or any SQLAlchemy database) ---------------------------------------------------


def _load_postgres(cfg: DictConfig) -> Tables:
    engine, safe_url, url = open_database(cfg.data)
    try:
        train_name, train = _read_table(
            engine, safe_url, url, cfg.data.get("train_table"), cfg.data.get("train_query"), "train"
        )
        test_table, test_query = cfg.data.get("test_table"), cfg.data.get("test_query")
        if not test_table and not test_query:
            return _with_split(cfg, train, train_name, kind="postgres")
        test_name, test = _read_table(engine, safe_url, url, test_table, test_query, "test")
    finally:
        engine.dispose()
    return Tables(train, test, train_name, test_name, split=False, kind="postgres")


def open_database(data_cfg: DictConfig) -> tuple[Any, str, Any]:
    """An engine for the database whose URL is in the env var named by ``data.url_env``, the URL
    safe to show (no password) and the parsed URL. Raises DataError."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    env_name = data_cfg.get("url_env") or "VALUATION_DB_URL"
    raw_url = os.environ.get(env_name)
    if not raw_url:
        raise DataError(
            f"data.source=postgres: environment variable {env_name} is not set; it holds the "
            "database URL, e.g. postgresql+psycopg2://user@host:5432/dbname"
        )
    try:
        url = sa.engine.make_url(raw_url)
    except (sa.exc.ArgumentError, ValueError):
        raise DataError(f"{env_name}: not a valid SQLAlchemy database URL") from None
    safe_url = url.render_as_string(hide_password=True)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = int(data_cfg.get("connect_timeout_s") or 5)
    try:
        engine = sa.create_engine(url, connect_args=connect_args, poolclass=NullPool)
    except (ImportError, sa.exc.SQLAlchemyError) as exc:
        raise DataError(f"{safe_url}: cannot use this database: {database_cause(exc, url)}") from None
    return engine, safe_url, url


def table_statement(connection: Any, table: str | None, query: str | None) -> Any:
    """The SELECT for a table (``schema.table`` allowed) or a query; the table is reflected, so a
    missing one raises NoSuchTableError."""
    import sqlalchemy as sa

    if query:
        return sa.text(str(query))
    schema, _, table_name = str(table).rpartition(".")
    reflected = sa.Table(table_name, sa.MetaData(), schema=schema or None, autoload_with=connection)
    return sa.select(reflected)


def _read_table(engine, safe_url: str, url, table: str | None, query: str | None, role: str):
    import sqlalchemy as sa

    if query:
        shown = " ".join(str(query).split())
        name = f"{safe_url} query {shown[:120]!r}"
    elif table:
        name = f"{safe_url} table {table!r}"
    else:
        raise DataError(f"data.{role}_table or data.{role}_query must be set for data.source=postgres")
    try:
        with engine.connect() as connection:
            statement = table_statement(connection, table, query)
            # Executed directly (not pd.read_sql) so that driver errors arrive unwrapped.
            result = connection.execute(statement)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    except sa.exc.NoSuchTableError:
        raise DataError(f"{name}: table not found", name) from None
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        raise DataError(f"{name}: {database_cause(exc, url)}", name) from None
    return name, validate_raw(frame, name)


def database_cause(exc: BaseException, url) -> str:
    """The driver's own first line (no SQL echo, no SQLAlchemy boilerplate), password removed."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


# --- Synthetic sample --------------------------------------------------------------------------


def _load_sample(cfg: DictConfig) -> Tables:
    n_train, n_test = int(cfg.data.get("n_train", 4000)), int(cfg.data.get("n_test", 1000))
    seed = int(cfg.data.get("seed", cfg.seed))
    if n_train < 1 or n_test < 1:
        raise DataError(f"data.n_train and data.n_test must be >= 1, got {n_train}, {n_test}")
    name = f"sample(n={n_train + n_test}, seed={seed})"
    # One draw, sliced: train and test come from the same distribution and never share a row.
    frame = validate_raw(generate_frame(n_train + n_test, seed), name)
    return Tables(
        train=frame.iloc[:n_train].reset_index(drop=True),
        test=frame.iloc[n_train:].reset_index(drop=True),
        train_name=f"{name} rows 1-{n_train}",
        test_name=f"{name} rows {n_train + 1}-{n_train + n_test}",
        split=False,
        kind="sample",
    )


# --- Artifacts handed between steps ------------------------------------------------------------


def read_artifact_frame(uri: str) -> pd.DataFrame:
    """A parquet artifact (e.g. ``runs:/<run_id>/data/train.parquet``) as a DataFrame."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="valuation-artifact-") as directory:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=directory)
            return pd.read_parquet(local)
        except Exception as exc:  # any failure here means "this URI is unusable"
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DataError(f"{uri}: cannot read the artifact: {first_line}", uri) from None


# --- Dataset lineage for MLflow ----------------------------------------------------------------


def lineage_source(tables: Tables, role: str):
    """What `mlflow.data.from_pandas(source=...)` records for the train or test table.

    A CSV is recorded as its absolute path; a database table or the synthetic sample (which
    MLflow has no source type for) as its safe-to-log name.
    """
    location = tables.train_location if role == "train" else tables.test_location
    if location:
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        # MLflow registers its local-file source twice (schemes "" and "file") and warns that
        # a path is ambiguous between the two identical classes; that warning says nothing.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
            return resolve_dataset_source(location)
    return NamedDatasetSource(tables.train_name if role == "train" else tables.test_name)


class NamedDatasetSource(DatasetSource):
    """A dataset source that only names where the rows came from (it cannot reload them)."""

    def __init__(self, name: str):
        self.name = name

    @staticmethod
    def _get_source_type() -> str:
        return "valuation"

    def load(self):
        raise NotImplementedError(f"{self.name}: reload it through valuation.sources.load_tables")

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source):
        return cls(str(raw_source))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_dict(cls, source_dict):
        return cls(source_dict["name"])
