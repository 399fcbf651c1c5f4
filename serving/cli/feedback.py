"""`valuation feedback import FILE`: observed prices from a CSV into the prediction store.

Columns: `observed_price`, `observed_at`, `kind`, and per row either `request_id` + `row_index`
(a /predict answer) or the eight features. Every row is checked as POST /feedback checks it (the
champion's own rules for features); a rejected row goes to a side file beside FILE with its row
number (1-based, the header is not a row), field and message, and the others are recorded.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from serving.cli.audit import audit
from serving.cli.output import fail

feedback_app = typer.Typer(help="Observed prices (ground truth) for monitoring and retraining.",
                           no_args_is_help=True)
REJECTED_HEADER = ("row", "field", "message")


@feedback_app.command("import")
def import_(
    file: Path = typer.Argument(..., help="A CSV of observations (see `valuation feedback --help`)."),
    model: str | None = typer.Option(
        None, "--model", help="Check features with this model's rules: models:/NAME@ALIAS or "
                              "models:/NAME/VERSION [default: the champion]"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Record the observations of FILE; rejected rows (row, field, message) go to a side file."""
    from tqdm import tqdm

    from serving.cli.store import open_store
    from serving.prediction_store import feedback

    header, total = _header_and_rows(file)
    engine, settings = open_store()
    rules = _rules(model)
    rejected_path = file.with_name(file.stem + settings.rejected_suffix)
    recorded = duplicates = 0
    rejections: list[tuple[int, str | None, str]] = []
    with tqdm(total=total, unit="rows", disable=not progress, desc="feedback") as bar:
        for batch in _batches(file, header, settings.import_batch_rows):
            checked = []
            for row, raw in batch:
                result = feedback.check(raw, row, rules)
                if isinstance(result, list):
                    rejections += [(e.row, e.field, e.message) for e in result]
                else:
                    checked.append(result)
            outcome, refused = _record_valid(engine, checked)
            rejections += refused
            recorded, duplicates = recorded + outcome.recorded, duplicates + outcome.duplicates
            bar.update(len(batch))
    _write_rejections(rejected_path, rejections)
    rejected_rows = len({row for row, _, _ in rejections})
    audit("feedback_import:cli", inputs={"file": str(file), "rows": total},
          outputs={"recorded": recorded, "duplicates": duplicates, "rejected_rows": rejected_rows})
    typer.echo(f"{file}: {total} rows, {recorded} observations recorded, {duplicates} already "
               f"recorded, {rejected_rows} rejected (see {rejected_path})")


def _record_valid(engine: Any, checked: list) -> tuple[Any, list[tuple[int, str | None, str]]]:
    """Record the rows that pass matching; a row naming an unknown request id or a row index
    beyond its request is rejected and the rest of the batch recorded."""
    from serving.prediction_store import feedback

    refused: list[tuple[int, str | None, str]] = []
    while True:
        try:
            return feedback.record(engine, checked, key_id=None), refused
        except feedback.UnknownRequest as error:
            bad = {o.row for o in checked if o.request_id in error.unknown}
            refused += [(o.row, feedback.REQUEST_ID, f"unknown request_id '{o.request_id}': no "
                         "prediction is stored under it") for o in checked if o.row in bad]
        except feedback.FeedbackRejected as error:
            bad = {e.row for e in error.errors}
            refused += [(e.row, e.field, e.message) for e in error.errors]
        except feedback.StoreUnavailable as error:
            fail(str(error))
        if not bad:  # cannot happen: each refusal names its rows
            raise RuntimeError("a refused feedback batch named no row")
        checked = [o for o in checked if o.row not in bad]


def _header_and_rows(file: Path) -> tuple[list[str], int]:
    from serving.prediction_store.feedback import KIND, OBSERVED_AT, OBSERVED_PRICE, REQUEST_ID, ROW_INDEX
    from valuation.model_runtime.schema import FEATURES

    if not file.is_file():
        fail(f"{file}: no such file")
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), None)
            total = sum(1 for _ in handle)
    except (UnicodeDecodeError, csv.Error) as error:
        fail(f"{file}: not a UTF-8 CSV file ({error})")
    if not header:
        fail(f"{file}: empty file; expected a header row")
    header = [name.strip() for name in header]
    missing = [name for name in (OBSERVED_PRICE, OBSERVED_AT, KIND) if name not in header]
    by_reference = REQUEST_ID in header and ROW_INDEX in header
    if not by_reference and not set(FEATURES) <= set(header):
        absent = ", ".join(name for name in FEATURES if name not in header)
        missing.append(f"{REQUEST_ID} and {ROW_INDEX}, or {absent}")
    if missing:
        fail(f"{file}: missing column(s) {'; '.join(missing)}")
    return header, total


def _batches(file: Path, header: list[str], size: int) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    batch: list[tuple[int, dict[str, Any]]] = []
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for number, cells in enumerate(reader, start=1):
            batch.append((number, _observation(dict(zip(header, cells, strict=False)))))
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


def _observation(cells: dict[str, str]) -> dict[str, Any]:
    """A CSV row as POST /feedback's observation: numbers parsed where they parse (a cell that
    does not is passed on as text, and its row rejected naming the field)."""
    from serving.prediction_store.feedback import KIND, OBSERVED_AT, OBSERVED_PRICE, REQUEST_ID, ROW_INDEX
    from valuation.model_runtime.schema import FEATURES, NUMERIC_FEATURES

    raw: dict[str, Any] = {OBSERVED_PRICE: _number(cells.get(OBSERVED_PRICE)),
                           OBSERVED_AT: cells.get(OBSERVED_AT), KIND: (cells.get(KIND) or "").strip()}
    request_id = (cells.get(REQUEST_ID) or "").strip()
    if request_id:
        index = _number(cells.get(ROW_INDEX))
        raw.update(request_id=request_id,
                   row_index=int(index) if isinstance(index, float) and index.is_integer() else index)
    else:
        raw["features"] = {name: _number(cells.get(name)) if name in NUMERIC_FEATURES else cells.get(name)
                           for name in FEATURES if name in cells}
    return raw


def _number(cell: str | None) -> Any:
    if cell is None or not cell.strip():
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


def _rules(model: str | None) -> Any:
    """The row rules of `model` (default: the champion); None, with a warning, when there is no
    champion: rows given by request id still import, rows given by features are rejected."""
    from serving.settings import get_settings
    from valuation.config import tracking_uri
    from valuation.scoring.model import ModelNotFoundError, resolve_model

    settings = get_settings()
    uri = model or f"models:/{settings.registry.model_name}@{settings.registry.champion_alias}"
    try:
        return resolve_model(uri, tracking_uri(settings.mlflow.tracking_uri)).rules
    except ModelNotFoundError as error:
        if model is not None:
            fail(str(error))
        typer.echo(f"warning: {error}; rows given by features cannot be checked and are rejected",
                   err=True)
        return None


def _write_rejections(path: Path, rejections: list[tuple[int, str | None, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REJECTED_HEADER)
        writer.writerows(sorted(rejections, key=lambda r: r[0]))
