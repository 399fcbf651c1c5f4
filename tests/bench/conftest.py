"""Fixtures for the benchmark harness tests. bench/ is not an installed package (it is not shipped),
so the project root goes on sys.path as it is when `python -m bench.<part>` runs from there."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))
