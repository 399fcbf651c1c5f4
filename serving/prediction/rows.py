"""Row checks with the served model's own rules, one request at a time (before any batching, so a
bad row is refused alone and never fails a neighbour's request).

The rules (known types and sectors, area/room/bathroom ranges, coordinates inside greater
Santiago, row limit) are `ServedModel.rules`, read from the model's metadata: the same
`ValidationRules` the pyfunc applies, so the API and the model can never disagree on a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.concurrency import run_in_threadpool

from serving.api.errors import field_errors
from serving.settings import ProxySettings
from valuation.model_runtime.schema import FEATURES
from valuation.model_runtime.validation import ValidationRules


async def row_errors(
    features: Sequence[Any], rules: ValidationRules, proxy: ProxySettings
) -> list[dict[str, Any]]:
    """The 422 `detail` for these rows (`{row, field, message}` each); empty when all are good."""
    limit = min(proxy.max_rows, int(rules.max_rows))
    if not features:
        return field_errors([(None, "features", "give at least one row")])
    if len(features) > limit:
        return field_errors([(None, "features", f"{len(features)} rows exceed the limit of {limit}")])
    if len(features) > proxy.validate_in_thread_rows:
        return await run_in_threadpool(_check_rows, features, rules)
    return _check_rows(features, rules)


def _check_rows(features: Sequence[Any], rules: ValidationRules) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for index, row in enumerate(features):
        if not isinstance(row, dict):
            errors += field_errors(
                [(index, None, f"must be an object with the fields {', '.join(FEATURES)}")])
            continue
        errors += field_errors((e.row, e.field, e.message) for e in rules.row_errors(row, index))
    return errors
