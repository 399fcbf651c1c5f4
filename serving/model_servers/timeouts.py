"""Calls into MLflow that may hang (its HTTP retries cannot be interrupted), bounded in time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def call_with_timeout(
    fn: Callable[[], T], timeout_s: float, what: str, pending: dict[str, threading.Thread]
) -> T:
    """Run `fn` in a helper thread; raise TimeoutError after `timeout_s`.

    MLflow's HTTP retries cannot be interrupted, only stopped waiting for: the abandoned thread
    finishes on its own, and until it has, further calls of the same kind fail at once instead
    of piling up threads behind an unreachable server."""
    earlier = pending.get(what)
    if earlier is not None and earlier.is_alive():
        raise TimeoutError(f"{what}: an earlier call has not returned yet")
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"model-server-{what}", daemon=True)
    pending[what] = thread
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not answer within {timeout_s:g}s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def describe_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}"
