"""A labelled Prometheus metric's children, remembered by label values.

prometheus_client's `labels()` checks its arguments, converts them and takes a lock on every
call; the proxy calls it several times per request. `Children(metric)(*values)` looks
the child up in a plain dict first and asks `labels()` only the first time. Only for metrics whose
children are never removed (`metric.remove`/`clear` would leave a remembered child orphaned), and
label values must already be strings: the dict is keyed by the values as given.
"""

from __future__ import annotations

from typing import Any


class Children:
    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child
