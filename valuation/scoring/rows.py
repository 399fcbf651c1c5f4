"""A batch of input rows split into the rows the model takes and the rows its rules reject.

The model's own rules (`validation_rules` in its metadata) judge each row, as the proxy does, so a
row is rejected here exactly when `/predict` would refuse it, with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from valuation.model_runtime.schema import FEATURES
from valuation.model_runtime.validation import MAX_REPORTED_ERRORS, RowValidationError, ValidationRules

STATUS_OK = "ok"
STATUS_REJECTED = "rejected"
# A frame this small is reported in full by one validation: at most every field of every row,
# within the MAX_REPORTED_ERRORS the rules name at once.
_FULLY_REPORTED_ROWS = MAX_REPORTED_ERRORS // len(FEATURES)


@dataclass(frozen=True)
class Rejection:
    row: int  # 1-based row number in the input (a CSV's header is not a row)
    field: str
    message: str


@dataclass(frozen=True)
class CheckedRows:
    accepted: np.ndarray  # bool per row of the batch
    rejections: list[Rejection]


def check_rows(frame: pd.DataFrame, rules: ValidationRules, first_row: int) -> CheckedRows:
    """Which rows of `frame` (whose first row is input row `first_row`) the rules accept. At most
    `rules.max_rows` rows at a time, the size the rules take."""
    accepted = np.ones(len(frame), dtype=bool)
    rejections: list[Rejection] = []
    features = frame[list(FEATURES)]
    for start in range(0, len(frame), rules.max_rows):
        part = features.iloc[start:start + rules.max_rows]
        for position, field, message in _problems(part, rules):
            accepted[start + position] = False
            rejections.append(Rejection(first_row + start + position, field, message))
    return CheckedRows(accepted, rejections)


def _problems(frame: pd.DataFrame, rules: ValidationRules) -> list[tuple[int, str, str]]:
    """(position, field, message) of every problem in `frame`. A clean frame costs one vectorized
    check; a dirty one is halved until each bad part is small enough to be reported in full, so the
    cost grows with the bad rows, not with the batch."""
    try:
        rules.validate_frame(frame)
        return []
    except RowValidationError as error:
        if len(frame) <= _FULLY_REPORTED_ROWS:
            return [(e.row if e.row is not None else 0, e.field, e.message) for e in error.errors]
    middle = len(frame) // 2
    head = _problems(frame.iloc[:middle], rules)
    tail = [(middle + position, field, message)
            for position, field, message in _problems(frame.iloc[middle:], rules)]
    return head + tail
