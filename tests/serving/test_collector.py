"""The proxy's garbage-collector tuning (serving/collector.py, `proxy.gc`): applied by the app's
start-up in a real proxy process, and each setting doing what it says."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

from serving.collector import tune_after_start
from serving.settings import CollectorSettings, ServingSettings, get_settings


@pytest.fixture
def collector_restored():
    """The test process's collector as it was (the tuning is process-wide)."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_start_up_objects_are_frozen_and_the_thresholds_set(collector_restored) -> None:
    long_lived = [object() for _ in range(1000)]
    tune_after_start(CollectorSettings(freeze_after_start=True, thresholds=(20000, 50, 100)))
    assert gc.get_threshold() == (20000, 50, 100)
    assert gc.get_freeze_count() >= len(long_lived)


def test_garbage_left_by_start_up_is_freed_not_frozen(collector_restored) -> None:
    class Cycle:
        pass

    cycle = Cycle()
    cycle.self = cycle
    del cycle
    before = gc.get_freeze_count()
    tune_after_start(CollectorSettings(freeze_after_start=True))
    assert not [o for o in gc.get_objects() if type(o).__name__ == "Cycle"]
    assert gc.get_freeze_count() > before


def test_nothing_is_changed_when_off(collector_restored) -> None:
    thresholds = gc.get_threshold()
    tune_after_start(CollectorSettings(freeze_after_start=False, thresholds=None))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


@pytest.mark.parametrize("thresholds", [(0, 10, 10), (700, -1, 10)])
def test_thresholds_that_would_stop_the_collector_are_refused(thresholds) -> None:
    with pytest.raises(ValidationError, match="youngest generation"):
        CollectorSettings(thresholds=thresholds)


def test_the_configured_proxy_tunes_its_collector_at_start_up(tmp_path) -> None:
    """A proxy process started from conf/serving.yaml (no test overrides) has frozen its
    start-up objects and runs with the configured thresholds once its lifespan has run."""
    configured = ServingSettings.from_config(get_settings()).proxy.gc
    assert configured.freeze_after_start and configured.thresholds is not None
    script = textwrap.dedent(f"""
        import asyncio, gc, json
        from serving.app import create_app
        from serving.keys.env_store import EnvKeyStore
        from tests.support.serving import FixedSupervisor, serving_settings
        from valuation.config import load_config

        settings = serving_settings(__import__("pathlib").Path({str(tmp_path)!r}), "sqlite:///{tmp_path}/mlflow.db")
        settings.proxy.gc = load_config(config_name="serving").proxy.gc  # the configured tuning
        app = create_app(supervisor=FixedSupervisor("http://127.0.0.1:9"),
                         key_store=EnvKeyStore("k"), settings=settings)

        async def main():
            async with app.router.lifespan_context(app):
                print("STATE", json.dumps({{"frozen": gc.get_freeze_count(),
                                  "thresholds": gc.get_threshold()}}))

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("STATE ")]
    state = json.loads(line.removeprefix("STATE "))
    assert state["frozen"] > 10_000  # MLflow, pandas and the app are in the permanent generation
    assert tuple(state["thresholds"]) == configured.thresholds
