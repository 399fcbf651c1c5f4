"""A fixture for tests that run a command's main() in-process: main() points structlog at the
sys.stderr of that moment, which pytest's capsys closes after the test, so later tests' log
lines would fail on a closed file. The configuration is put back afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture
def structlog_restored() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
