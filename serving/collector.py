"""Python's garbage collector, tuned for a long-lived server process.

At start-up the proxy imports and builds a few million objects (MLflow, pandas, the app) that
live as long as the process. Left in the collected generations, every full collection walks all
of them, pausing the event loop (and every request on it) for tens of milliseconds; the youngest
generation, collected every 700 allocations by default, runs thousands of times a second under
load. `proxy.gc` freezes what start-up built (`gc.freeze`: never scanned again, never freed)
and sets the generations' thresholds (`gc.set_threshold`).
"""

from __future__ import annotations

import gc

from serving.logging import get_logger
from serving.settings import CollectorSettings

log = get_logger("serving.collector")


def tune_after_start(settings: CollectorSettings) -> None:
    """Call once, when start-up is complete (the objects built so far are the long-lived ones)."""
    if settings.thresholds is not None:
        gc.set_threshold(*settings.thresholds)
    if settings.freeze_after_start:
        gc.collect()  # what start-up left as garbage is freed, not frozen
        gc.freeze()
    log.info("collector_tuned", frozen_objects=gc.get_freeze_count(), thresholds=gc.get_threshold())
