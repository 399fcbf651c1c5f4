"""ingest: read the configured source, schema-check both tables, clean the TRAIN table only,
and log both as MLflow datasets and parquet artifacts (``data/train.parquet``, ``data/test.parquet``)
of the active run. The test table is never cleaned: metrics cover every row a client could send.

Logged on the run: tag ``valuation.step=ingest``; tags ``data.train_digest``/``data.test_digest``;
params ``data.source``, ``data.train_name``, ``data.test_name``, ``data.split``, ``cleaning.<option>``;
metrics ``rows_read_train``, ``rows_read_test``, ``rows_read_feedback`` (``feedback.train_path``:
extra labelled rows appended before cleaning), ``rows_removed_<rule>`` (every rule),
``rows_removed_total``, ``rows_flagged_<finding>``, ``rows_train``, ``rows_test``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from steps.common import load_step_config, run_cli, split_overrides, step_parser
from valuation.cleaning import clean
from valuation.data_checks import DataError
from valuation.model_runtime.schema import TARGET
from valuation.monitoring.market_index import restate_prices
from valuation.names import INGEST_STEP, STEP_TAG
from valuation.progress import report
from valuation.sources import (
    Tables,
    lineage_source,
    load_feedback_rows,
    load_market_index,
    load_tables,
)

# This step's share of the pipeline's overall progress.
PROGRESS_START, PROGRESS_END = 0.0, 0.15
ARTIFACT_DIR = "data"


@dataclass(frozen=True)
class IngestResult:
    train_uri: str  # runs:/<run_id>/data/train.parquet
    test_uri: str
    train_digest: str
    test_digest: str
    n_train: int
    n_test: int


def _restated(cfg: DictConfig, tables: Tables) -> Tables:
    """The train and test tables in today's market when a market index is given
    (`market_index.path`): each row's price times its sector's factor. The feedback rows are
    today's prices already and are appended after."""
    factors = load_market_index(cfg)
    if factors is None:
        return tables
    mlflow.log_param("market_index.path", str(cfg.market_index.path)[:500])
    mlflow.log_metrics({f"market_index.{sector.replace(' ', '_')}": factor
                        for sector, factor in factors.items()})
    report("ingest", _progress(0.45), "prices restated by the market index: " + ", ".join(
        f"{sector} x{factor:.3f}" for sector, factor in sorted(factors.items())))
    return replace(tables, train=restate_prices(tables.train, factors),
                   test=restate_prices(tables.test, factors))


def run(cfg: DictConfig) -> IngestResult:
    """Ingest inside the active MLflow run. Raises DataError on unusable input."""
    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("steps.ingest.run needs an active MLflow run")
    run_id = active.info.run_id
    mlflow.set_tag(STEP_TAG, INGEST_STEP)
    report("ingest", PROGRESS_START, f"reading the {cfg.data.source} source")

    tables = load_tables(cfg)
    _log_source_params(cfg, tables)
    report(
        "ingest",
        _progress(0.4),
        f"read {len(tables.train)} train rows from {tables.train_name}, "
        f"{len(tables.test)} test rows from {tables.test_name}",
    )

    tables = _restated(cfg, tables)
    feedback = load_feedback_rows(cfg)
    training_rows = tables.train
    if feedback is not None:
        # Appended before cleaning: the rules (and the duplicate check) treat them alike.
        training_rows = pd.concat([tables.train, feedback], ignore_index=True)
        mlflow.log_param("feedback.train_path", str(cfg.feedback.train_path)[:500])
        report("ingest", _progress(0.5), f"{len(feedback)} feedback rows appended to the training "
                                         f"rows from {cfg.feedback.train_path}")
    cleaning = clean(training_rows, cfg.cleaning)
    dropped = ", ".join(f"{rule} {n}" for rule, n in cleaning.removed.items() if n) or "nothing"
    flagged = ", ".join(f"{name} {n}" for name, n in cleaning.findings.items() if n)
    report(
        "ingest",
        _progress(0.6),
        f"cleaning dropped {dropped}; {len(cleaning.frame)} train rows left"
        + (f" (kept but flagged: {flagged})" if flagged else ""),
    )
    train, test = cleaning.frame, tables.test
    if train.empty:
        raise DataError(f"{tables.train_name}: no training rows left after cleaning ({dropped})")

    mlflow.log_metrics(
        {
            "rows_read_train": len(tables.train),
            "rows_read_test": len(tables.test),
            "rows_read_feedback": 0 if feedback is None else len(feedback),
            **{f"rows_removed_{rule}": n for rule, n in cleaning.removed.items()},
            "rows_removed_total": cleaning.rows_removed,
            **{f"rows_flagged_{name}": n for name, n in cleaning.findings.items()},
            "rows_train": len(train),
            "rows_test": len(test),
        }
    )
    digests = {}
    for role, frame, context in (("train", train, "training"), ("test", test, "testing")):
        dataset = mlflow.data.from_pandas(
            frame, source=lineage_source(tables, role), name=role, targets=TARGET
        )
        mlflow.log_input(dataset, context=context)
        digests[role] = dataset.digest
    mlflow.set_tags({"data.train_digest": digests["train"], "data.test_digest": digests["test"]})

    with tempfile.TemporaryDirectory(prefix="valuation-ingest-") as workdir:
        for role, frame in (("train", train), ("test", test)):
            frame.to_parquet(Path(workdir) / f"{role}.parquet", index=False)
        mlflow.log_artifacts(workdir, artifact_path=ARTIFACT_DIR)
    result = IngestResult(
        train_uri=f"runs:/{run_id}/{ARTIFACT_DIR}/train.parquet",
        test_uri=f"runs:/{run_id}/{ARTIFACT_DIR}/test.parquet",
        train_digest=digests["train"],
        test_digest=digests["test"],
        n_train=len(train),
        n_test=len(test),
    )
    report("ingest", PROGRESS_END, f"{result.n_train} train and {result.n_test} test rows logged")
    return result


def _progress(share: float) -> float:
    return PROGRESS_START + share * (PROGRESS_END - PROGRESS_START)


def _log_source_params(cfg: DictConfig, tables: Tables) -> None:
    cleaning = OmegaConf.to_container(cfg.cleaning, resolve=True) or {}
    mlflow.log_params(
        {
            "data.source": cfg.data.source,
            "data.train_name": tables.train_name[:500],
            "data.test_name": tables.test_name[:500],
            "data.split": tables.split,
            **{f"cleaning.{key}": value for key, value in cleaning.items()},
        }
    )


def main() -> None:
    parser = step_parser("Read, check and clean the data; log it as datasets and artifacts.")
    args = parser.parse_args()
    cfg = load_step_config(split_overrides(args.overrides))
    with mlflow.start_run(run_name="ingest"):
        result = run(cfg)
    print(f"train_uri={result.train_uri}")
    print(f"test_uri={result.test_uri}")


if __name__ == "__main__":
    run_cli(main)
