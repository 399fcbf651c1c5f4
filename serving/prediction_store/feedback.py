"""Observed prices (ground truth): checked like a prediction's rows, matched to the prediction of
the same row, recorded once. POST /feedback and `valuation feedback import` both call `record`.

An observation names its row either by `request_id` + `row_index` (the row of a /predict request,
whose features are then taken from the stored prediction) or by its eight `features` (matched to
the latest prediction of the same features, when there is one; stored unmatched otherwise, still
good for retraining). Shadow prices are never the match: the row is the one the client was
answered, and `labelled_rows` finds the shadow price through the same request row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, select
from sqlalchemy.exc import OperationalError

from serving.prediction_store.rows import feature_values, insert_ignoring_duplicates
from serving.prediction_store.tables import OBSERVATION_KINDS, Observation, Prediction
from valuation.model_runtime.schema import FEATURES
from valuation.model_runtime.validation import ValidationRules

REQUEST_ID, ROW_INDEX, FEATURES_FIELD = "request_id", "row_index", "features"
OBSERVED_PRICE, OBSERVED_AT, KIND = "observed_price", "observed_at", "kind"
FIELDS = (REQUEST_ID, ROW_INDEX, FEATURES_FIELD, OBSERVED_PRICE, OBSERVED_AT, KIND)
# A clock a little ahead of ours is not an error; a date in the future is.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_REQUEST_ID_LENGTH = 128


@dataclass(frozen=True)
class RowError:
    row: int
    field: str | None
    message: str


@dataclass(frozen=True)
class CheckedObservation:
    row: int
    observed_price: float
    observed_at: datetime
    kind: str
    request_id: str | None = None
    row_index: int | None = None
    features: dict[str, Any] | None = None  # stored form (feature_values), when given by features


@dataclass
class Outcome:
    """What `record` did with each observation, in input order."""

    ids: list[int] = field(default_factory=list)
    duplicate: list[bool] = field(default_factory=list)
    prediction_ids: list[int | None] = field(default_factory=list)

    @property
    def recorded(self) -> int:
        return self.duplicate.count(False)

    @property
    def duplicates(self) -> int:
        return self.duplicate.count(True)


class FeedbackRejected(ValueError):
    """Rows that break the rules (422): each names its row and field."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"row {e.row}, field {e.field}: {e.message}" for e in self.errors[:10]))


class StoreUnavailable(RuntimeError):
    """The store's database cannot be reached or used right now (503)."""


class UnknownRequest(LookupError):
    """A request id no stored prediction has (404)."""

    def __init__(self, unknown: Mapping[str, int]) -> None:
        self.unknown = dict(unknown)  # request id -> first row naming it
        listed = ", ".join(f"'{rid}' (row {row})" for rid, row in list(self.unknown.items())[:10])
        super().__init__(f"unknown request_id {listed}: no prediction is stored under it (a "
                         "prediction reaches the store within a second of its answer)")


def check(raw: Any, row: int, rules: ValidationRules | None, now: datetime | None = None
          ) -> CheckedObservation | list[RowError]:
    """One observation as sent (a mapping of FIELDS), checked; or every problem it has.
    `rules` are the served model's row rules (None: no model to check features against)."""
    if not isinstance(raw, Mapping):
        return [RowError(row, None, f"must be an object with {', '.join(FIELDS)}")]
    errors = [RowError(row, str(name), f"unknown field; expected one of {', '.join(FIELDS)}")
              for name in raw if name not in FIELDS]
    price, price_error = _price(raw.get(OBSERVED_PRICE))
    at, at_error = _time(raw.get(OBSERVED_AT), now or datetime.now(UTC))
    kind = raw.get(KIND)
    errors += [RowError(row, name, message) for name, message in
               ((OBSERVED_PRICE, price_error), (OBSERVED_AT, at_error)) if message]
    if kind not in OBSERVATION_KINDS:
        errors.append(RowError(row, KIND, f"must be one of {', '.join(OBSERVATION_KINDS)}, got {kind!r}"))
    request_id, row_index, features = raw.get(REQUEST_ID), raw.get(ROW_INDEX), raw.get(FEATURES_FIELD)
    stored_features = None
    if request_id is not None and features is not None:
        errors.append(RowError(row, FEATURES_FIELD, "give either request_id and row_index, or features"))
    elif request_id is not None or row_index is not None:
        errors += _reference_errors(request_id, row_index, row)
    elif features is None:
        errors.append(RowError(row, None, "name the row: request_id and row_index, or features"))
    elif not isinstance(features, Mapping):
        errors.append(RowError(row, FEATURES_FIELD, f"must be an object with {', '.join(FEATURES)}"))
    elif rules is None:
        errors.append(RowError(row, FEATURES_FIELD, "no model is served to check features against; "
                                                    "retry once one is"))
    else:
        feature_errors = rules.row_errors(features, row)
        errors += [RowError(row, e.field, e.message) for e in feature_errors]
        unknown = [name for name in features if name not in FEATURES]
        errors += [RowError(row, name, "unknown feature") for name in unknown]
        if not feature_errors and not unknown:
            stored_features = feature_values(features)
    if errors:
        return errors
    return CheckedObservation(row, price, at, kind, request_id, row_index, stored_features)


def record(engine: Engine, observations: Sequence[CheckedObservation], key_id: str | None,
           flush: Callable[[], Any] | None = None) -> Outcome:
    """Match and store `observations` in one transaction: all or nothing. `flush` writes the
    predictions the proxy still buffers: called before matching features, and before a request
    id is declared unknown. Raises UnknownRequest when a request id has no stored prediction,
    FeedbackRejected when a row index is beyond its request's rows, StoreUnavailable when the
    database cannot be reached."""
    try:
        return _record(engine, observations, key_id, flush)
    except OperationalError as error:
        raise StoreUnavailable("the prediction store cannot be reached right now; retry shortly "
                               f"({type(error.orig).__name__})") from error


def _record(engine: Engine, observations: Sequence[CheckedObservation], key_id: str | None,
            flush: Callable[[], Any] | None) -> Outcome:
    received_at = datetime.now(UTC)
    if flush is not None and any(o.features is not None for o in observations):
        flush()  # the latest prediction of a row may still be in the proxy's buffer
    with engine.connect() as connection:
        matches, missing = _by_reference(connection, observations)
        if missing and flush is not None:
            connection.rollback()  # a new transaction sees what the writer commits meanwhile
            flush()
            matches, missing = _by_reference(connection, observations)
    if missing:
        raise UnknownRequest(missing)
    bad_rows = [RowError(o.row, ROW_INDEX, _row_index_message(o, matches))
                for o in observations if o.request_id is not None and (o.request_id, o.row_index)
                not in matches["rows"]]
    if bad_rows:
        raise FeedbackRejected(bad_rows)
    outcome = Outcome()
    insert = insert_ignoring_duplicates(engine, Observation.__table__).returning(Observation.__table__.c.id)
    with engine.begin() as connection:
        for observation in observations:
            values = _values(connection, observation, matches, received_at, key_id)
            new_id = connection.execute(insert, values).scalar()
            outcome.duplicate.append(new_id is None)
            outcome.ids.append(new_id if new_id is not None else _existing_id(connection, values))
            outcome.prediction_ids.append(values["prediction_id"])
    return outcome


# ---- matching ---------------------------------------------------------------------------------


def _by_reference(connection: Connection, observations: Sequence[CheckedObservation]
                  ) -> tuple[dict[str, Any], dict[str, int]]:
    """Stored answered rows of the request ids named: {"rows": {(request_id, row_index): row},
    "sizes": {request_id: rows}}, and the ids with none (-> first input row naming each)."""
    wanted: dict[str, int] = {}
    for o in observations:
        if o.request_id is not None:
            wanted.setdefault(o.request_id, o.row)
    table = Prediction.__table__
    rows: dict[tuple[str, int], Any] = {}
    sizes: dict[str, int] = {}
    ids = list(wanted)
    for start in range(0, len(ids), 500):  # bounded IN lists
        query = select(table).where(table.c.request_id.in_(ids[start:start + 500]),
                                    table.c.served_alias != "shadow")
        for found in connection.execute(query).mappings():
            key = (found["request_id"], found["row_index"])
            rows[key] = found
            sizes[found["request_id"]] = max(sizes.get(found["request_id"], 0), found["row_index"] + 1)
    missing = {rid: row for rid, row in wanted.items() if rid not in sizes}
    return {"rows": rows, "sizes": sizes}, missing


def _latest_same_row(connection: Connection, features: Mapping[str, Any]) -> Any:
    table = Prediction.__table__
    query = (select(table).where(and_(*(table.c[name] == features[name] for name in FEATURES)),
                                 table.c.served_alias != "shadow")
             .order_by(table.c.created_at.desc(), table.c.id.desc()).limit(1))
    return connection.execute(query).mappings().first()


def _values(connection: Connection, o: CheckedObservation, matches: dict[str, Any],
            received_at: datetime, key_id: str | None) -> dict[str, Any]:
    if o.request_id is not None:
        prediction = matches["rows"][(o.request_id, o.row_index)]
        features = {name: prediction[name] for name in FEATURES}
    else:
        features = dict(o.features or {})
        prediction = _latest_same_row(connection, features)
    return {
        **features,
        "request_id": prediction["request_id"] if prediction else None,
        "row_index": prediction["row_index"] if prediction else None,
        "prediction_id": prediction["id"] if prediction else None,
        "observed_price": o.observed_price, "observed_at": o.observed_at, "kind": o.kind,
        "received_at": received_at, "key_id": key_id,
    }


def _existing_id(connection: Connection, values: Mapping[str, Any]) -> int:
    table = Observation.__table__
    same = [table.c[name] == values[name]
            for name in (*FEATURES, "kind", "observed_at", "observed_price")]
    return int(connection.execute(select(table.c.id).where(*same)).scalar_one())


def _row_index_message(o: CheckedObservation, matches: dict[str, Any]) -> str:
    size = matches["sizes"][o.request_id]
    return f"request '{o.request_id}' priced {size} row(s): row_index must be in 0..{size - 1}"


# ---- field checks -----------------------------------------------------------------------------


def _reference_errors(request_id: Any, row_index: Any, row: int) -> list[RowError]:
    errors = []
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_LENGTH:
        errors.append(RowError(row, REQUEST_ID, f"must be the request id /predict answered (a string "
                                                f"of 1 to {MAX_REQUEST_ID_LENGTH} characters)"))
    if isinstance(row_index, bool) or not isinstance(row_index, int) or row_index < 0:
        errors.append(RowError(row, ROW_INDEX, f"must be a row's index in its request (an integer "
                                               f">= 0), got {row_index!r}"))
    return errors


def _price(value: Any) -> tuple[float, str | None]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan, f"must be a number (UF), got {value!r}"
    if not math.isfinite(value) or value <= 0:
        return math.nan, f"must be a positive price in UF, got {value!r}"
    return float(value), None


def _time(value: Any, now: datetime) -> tuple[datetime, str | None]:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
            if len(text) == len("2025-03-01"):  # a date alone: that day, UTC
                parsed = parsed.replace(tzinfo=UTC)
        except ValueError:
            return now, f"must be an ISO 8601 date-time such as 2025-03-01T00:00:00Z, got {value!r}"
    else:
        return now, f"must be an ISO 8601 date-time such as 2025-03-01T00:00:00Z, got {value!r}"
    if parsed.tzinfo is None:
        return now, f"give a time zone (e.g. 2025-03-01T00:00:00Z), got {value!r}"
    parsed = parsed.astimezone(UTC)
    if parsed > now + FUTURE_TOLERANCE:
        return now, f"{parsed.isoformat()} is in the future"
    return parsed, None
