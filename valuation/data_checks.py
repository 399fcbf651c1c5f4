"""Schema checks for raw training/test tables, before any cleaning.

A raw table must have the nine columns of :data:`RAW_COLUMNS` (extra columns are dropped with a
log line), numbers where numbers belong, no missing values, and non-empty text in `type` and
`sector` (normalised to lower case without surrounding blanks). Failures become one
:class:`DataError` naming the source, the column and the first offending rows; rows are
1-based data rows as in the file (the header is not counted).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from valuation.model_runtime.schema import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, TARGET

log = logging.getLogger(__name__)

RAW_COLUMNS: tuple[str, ...] = (*FEATURES, TARGET)
ROWS_SHOWN_PER_PROBLEM = 3
PROBLEMS_SHOWN = 8


class DataError(ValueError):
    """Input data that cannot be used; the message names the source, column and rows."""

    def __init__(self, message: str, source: str = "", problems: Iterable[str] = ()):
        super().__init__(message)
        self.source = source
        self.problems = list(problems)


def _normalise_text(series: pd.Series) -> pd.Series:
    # Non-strings stay as they are so that the `is_text` check can name them.
    return series.map(lambda v: v.strip().lower() if isinstance(v, str) else v).astype(object)


def _text_column() -> pa.Column:
    return pa.Column(
        None,
        nullable=False,
        parsers=pa.Parser(_normalise_text),
        checks=pa.Check(
            lambda v: isinstance(v, str) and v != "", element_wise=True, name="is_text"
        ),
    )


def _number_column() -> pa.Column:
    return pa.Column(
        "float64",
        coerce=True,
        nullable=False,
        checks=pa.Check(lambda s: np.isfinite(s), name="is_finite"),
    )


RAW_SCHEMA = pa.DataFrameSchema(
    {
        **{name: _text_column() for name in CATEGORICAL_FEATURES},
        **{name: _number_column() for name in (*NUMERIC_FEATURES, TARGET)},
    },
    name="raw_table",
)


def validate_raw(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The table with the nine columns in order, text normalised, numbers (incl. price) float64.

    `source` names the table in errors (a file path, a table or a query). Raises DataError.
    """
    frame = frame.rename(columns=lambda c: str(c).strip().lower())
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise DataError(f"{source}: duplicated column(s) {duplicated}", source)
    missing = [c for c in RAW_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(repr(c) for c in missing)}"
            f" (expected columns: {', '.join(RAW_COLUMNS)})",
            source,
        )
    extra = [c for c in frame.columns if c not in RAW_COLUMNS]
    if extra:
        log.warning("%s: dropping extra column(s) %s", source, ", ".join(map(repr, extra)))
    frame = frame.loc[:, list(RAW_COLUMNS)].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{source}: no data rows (only a header or an empty table)", source)
    try:
        valid = RAW_SCHEMA.validate(frame, lazy=True)
    except SchemaErrors as errors:
        problems = _describe(errors.failure_cases)
        shown = "; ".join(problems[:PROBLEMS_SHOWN])
        more = len(problems) - PROBLEMS_SHOWN
        suffix = f"; and {more} more problem(s)" if more > 0 else ""
        raise DataError(f"{source}: {shown}{suffix}", source, problems) from None
    for name in CATEGORICAL_FEATURES:
        valid[name] = valid[name].astype("str")
    return valid


def _describe(failure_cases: pd.DataFrame) -> list[str]:
    """One line per (column, offending row) for the first rows of each (column, check)."""
    problems: list[str] = []
    cases = failure_cases[failure_cases["index"].notna()].copy()
    # A failed coercion also fails the dtype check and leaves checks that cannot run: say it once.
    cases = cases[~cases["check"].astype(str).str.startswith("dtype(")]
    cases["order"] = cases["column"].map({c: i for i, c in enumerate(RAW_COLUMNS)})
    cases = cases.sort_values(["order", "index"], kind="stable")
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        for _, case in group.head(ROWS_SHOWN_PER_PROBLEM).iterrows():
            row = int(case["index"]) + 1
            problems.append(f"column '{column}' row {row}: {_explain(check, case['failure_case'])}")
        if len(group) > ROWS_SHOWN_PER_PROBLEM:
            problems.append(
                f"column '{column}': {len(group) - ROWS_SHOWN_PER_PROBLEM} more row(s) like that"
            )
    if not problems:  # nothing row-level: report the raw pandera summary
        problems = [str(failure_cases[["column", "check", "failure_case"]].head(5).to_dict("records"))]
    return problems


def _explain(check: str, value: object) -> str:
    check = str(check)
    if check.startswith("coerce_dtype"):
        return f"{value!r} is not a number"
    if check == "not_nullable":
        return "missing value"
    if check == "is_finite":
        return f"{value!r} is not a finite number"
    if check == "is_text":
        return "empty text" if isinstance(value, str) else f"{value!r} is not text"
    return f"{value!r} fails {check}"
