"""Row checks shared by the pyfunc and the API, so a row is judged the same way everywhere.

The rules live in config (`validation:` in conf/config.yaml) plus the sectors seen in training;
they travel inside the logged model as metadata, so the API reads them from the model it serves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from .schema import AREA_FEATURES, CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES

MAX_REPORTED_ERRORS = 50  # enough to fix a batch, small enough for one response
SMALL_FRAME_MAX_ROWS = 16  # up to here rows are read as one object matrix (see _feature_values)


@dataclass(frozen=True)
class FieldError:
    row: int | None  # 0-based row index in the request; None for a whole-column problem
    field: str
    message: str

    def __str__(self) -> str:
        where = f"row {self.row}, " if self.row is not None else ""
        return f"{where}field '{self.field}': {self.message}"


class RowValidationError(ValueError):
    """One or more rows break the rules; `.errors` says which row and field, and why."""

    def __init__(self, errors: Sequence[FieldError], total: int | None = None):
        self.errors = list(errors)
        self.total = total if total is not None else len(self.errors)
        more = f" (and {self.total - len(self.errors)} more)" if self.total > len(self.errors) else ""
        super().__init__("; ".join(str(e) for e in self.errors[:10]) + more)


@dataclass(frozen=True)
class ValidationRules:
    types: tuple[str, ...]
    sectors: tuple[str, ...]
    min_area: float
    max_area: float
    max_rooms: float
    max_bathrooms: float
    latitude: tuple[float, float]
    longitude: tuple[float, float]
    max_rows: int

    @classmethod
    def from_config(
        cls, validation_cfg: Mapping[str, Any], sectors: Sequence[str], types: Sequence[str] | None = None
    ) -> ValidationRules:
        """Rules from config; `types` narrows the configured types (e.g. to those seen in training)."""
        chosen_types = types if types is not None else validation_cfg["types"]
        return cls(
            types=tuple(sorted(str(t).lower() for t in chosen_types)),
            sectors=tuple(sorted(str(s).lower() for s in sectors)),
            min_area=float(validation_cfg["min_area"]),
            max_area=float(validation_cfg["max_area"]),
            max_rooms=float(validation_cfg["max_rooms"]),
            max_bathrooms=float(validation_cfg["max_bathrooms"]),
            latitude=(float(validation_cfg["latitude"][0]), float(validation_cfg["latitude"][1])),
            longitude=(float(validation_cfg["longitude"][0]), float(validation_cfg["longitude"][1])),
            max_rows=int(validation_cfg["max_rows"]),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationRules:
        return cls(
            types=tuple(data["types"]),
            sectors=tuple(data["sectors"]),
            min_area=float(data["min_area"]),
            max_area=float(data["max_area"]),
            max_rooms=float(data["max_rooms"]),
            max_bathrooms=float(data["max_bathrooms"]),
            latitude=(float(data["latitude"][0]), float(data["latitude"][1])),
            longitude=(float(data["longitude"][0]), float(data["longitude"][1])),
            max_rows=int(data["max_rows"]),
        )

    # --- the numeric bounds, one place ---------------------------------------------------
    def bounds(self, field: str) -> tuple[float, float]:
        if field in AREA_FEATURES:
            return self.min_area, self.max_area
        if field == "n_rooms":
            return 0.0, self.max_rooms
        if field == "n_bathroom":
            return 0.0, self.max_bathrooms
        if field == "latitude":
            return self.latitude
        if field == "longitude":
            return self.longitude
        raise KeyError(field)

    def allowed_values(self, field: str) -> tuple[str, ...]:
        return self.types if field == "type" else self.sectors

    # --- one row ---------------------------------------------------------------------------
    def row_errors(self, row: Mapping[str, Any], index: int | None) -> list[FieldError]:
        """Every problem of one row (a mapping of feature name to value)."""
        errors: list[FieldError] = []
        for field in CATEGORICAL_FEATURES:
            if field not in row:
                errors.append(FieldError(index, field, "is required"))
                continue
            message = self._category_problem(field, row[field])
            if message:
                errors.append(FieldError(index, field, message))
        for field in NUMERIC_FEATURES:
            if field not in row:
                errors.append(FieldError(index, field, "is required"))
                continue
            message = self._number_problem(field, row[field])
            if message:
                errors.append(FieldError(index, field, message))
        return errors

    def _category_problem(self, field: str, value: Any) -> str | None:
        if not isinstance(value, str):
            return f"must be a string, got {_describe(value)}"
        allowed = self.allowed_values(field)
        if normalize_category(value) not in allowed:
            return f"{value!r} is not a known {field}; expected one of: {', '.join(allowed)}"
        return None

    def _number_problem(self, field: str, value: Any) -> str | None:
        if isinstance(value, bool) or value is None:
            return f"must be a number, got {_describe(value)}"
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"must be a number, got {_describe(value)}"
        if not math.isfinite(number):
            return f"must be a finite number, got {value}"
        low, high = self.bounds(field)
        if not low <= number <= high:
            return f"{number:g} is outside the accepted range [{low:g}, {high:g}]"
        return None

    @cached_property
    def _numeric_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of NUMERIC_FEATURES as column vectors."""
        low, high = np.array([self.bounds(field) for field in NUMERIC_FEATURES], dtype=np.float64).T
        return low[:, None], high[:, None]

    # --- a batch ---------------------------------------------------------------------------
    def validate_frame(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Checked, normalized columns of `frame` (extra columns ignored).

        The fast path is vectorized; only when something is wrong are rows examined one by one
        to say exactly which row and field failed.
        """
        missing = [f for f in FEATURES if f not in frame.columns]
        if missing:
            raise RowValidationError([FieldError(None, f, "column is missing") for f in missing])
        if not frame.columns.is_unique:
            repeated = [f for f in FEATURES if int((frame.columns == f).sum()) > 1]
            if repeated:
                raise RowValidationError([FieldError(None, f, "column appears more than once")
                                          for f in repeated])
        self._check_row_count(len(frame))
        raw = _feature_values(frame)

        def bad_records(rows: np.ndarray) -> list[dict[str, Any]]:
            return [_denan(r) for r in frame.iloc[rows][list(FEATURES)].to_dict(orient="records")]

        return self._validated(raw, len(frame), bad_records)

    def validate_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Checked, normalized columns of rows given as mappings (extra keys ignored); a missing
        key is reported as required. The same rules and messages as `validate_frame`."""
        self._check_row_count(len(records))
        raw = {field: [record.get(field) for record in records] for field in FEATURES}
        return self._validated(raw, len(records), lambda rows: [records[i] for i in rows.tolist()])

    def _check_row_count(self, n_rows: int) -> None:
        if n_rows == 0:
            raise RowValidationError([FieldError(None, "features", "no rows to predict")])
        if n_rows > self.max_rows:
            raise RowValidationError(
                [FieldError(None, "features", f"{n_rows} rows exceed the limit of {self.max_rows}")]
            )

    def _validated(
        self,
        raw: Mapping[str, list[Any] | pd.Series],
        n_rows: int,
        bad_records: Callable[[np.ndarray], list[Mapping[str, Any]]],
    ) -> dict[str, np.ndarray]:
        """The vectorized checks; only when something is wrong are the bad rows (from
        `bad_records`) examined one by one to say exactly which row and field failed."""
        columns: dict[str, np.ndarray] = {}
        bad = np.zeros(n_rows, dtype=bool)
        for field in CATEGORICAL_FEATURES:
            normalized = [normalize_category(v) if isinstance(v, str) else None
                          for v in _as_list(raw[field])]
            allowed = self.allowed_values(field)
            bad |= np.array([v not in allowed for v in normalized], dtype=bool)
            columns[field] = np.array(normalized, dtype=object)
        # One array for the numeric fields: the range checks are then a handful of array operations
        # whatever the number of fields, which is what matters for a single row.
        numbers = np.empty((len(NUMERIC_FEATURES), n_rows), dtype=np.float64)
        for j, field in enumerate(NUMERIC_FEATURES):
            values = raw[field]
            if isinstance(values, pd.Series) and values.dtype.kind in "fiu":
                numbers[j] = values.to_numpy(dtype=np.float64)
            else:
                numbers[j] = [_to_float(v) for v in _as_list(values)]
            columns[field] = numbers[j]
        low, high = self._numeric_bounds
        with np.errstate(invalid="ignore"):
            bad |= (~np.isfinite(numbers) | (numbers < low) | (numbers > high)).any(axis=0)
        if bad.any():
            rows = np.flatnonzero(bad)
            self._raise_for_rows(rows, bad_records(rows))
        return columns

    def _raise_for_rows(self, rows: np.ndarray, records: list[Mapping[str, Any]]) -> None:
        errors: list[FieldError] = []
        total = 0
        for position, record in zip(rows.tolist(), records, strict=True):
            row_errors = self.row_errors(record, position)
            total += len(row_errors)
            errors.extend(row_errors)
        raise RowValidationError(errors[:MAX_REPORTED_ERRORS], total=total)


def _feature_values(frame: pd.DataFrame) -> dict[str, list[Any] | pd.Series]:
    """The feature columns of `frame`: Python lists for a few rows, Series otherwise.

    One object matrix costs ~25 us where eight pandas column lookups cost ~200 us; that is most of
    a single-row call. Past a few rows, per-column vectorized conversion wins, so Series are kept.
    """
    if len(frame) <= SMALL_FRAME_MAX_ROWS:
        matrix = frame.to_numpy(dtype=object)
        names = frame.columns.tolist()  # list.index: Index.get_indexer costs ~50 us on string labels
        return {field: matrix[:, names.index(field)].tolist() for field in FEATURES}
    return {field: frame[field] for field in FEATURES}


def _as_list(values: list[Any] | pd.Series) -> list[Any]:
    return values.tolist() if isinstance(values, pd.Series) else values


def normalize_category(value: str) -> str:
    return " ".join(value.strip().lower().split())


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _denan(record: dict[str, Any]) -> dict[str, Any]:
    # pandas turns missing values into NaN/None; report them as missing, not as a bad number.
    return {k: (None if isinstance(v, float) and math.isnan(v) and k not in NUMERIC_FEATURES else v)
            for k, v in record.items()}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"
