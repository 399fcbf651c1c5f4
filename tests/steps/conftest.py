"""Fixtures for pipeline tests: small, fast configurations on the synthetic generator."""

from __future__ import annotations

import pytest

# Small enough for CI, large enough that a model clearly beats the mean.
FAST_GBR = ["data=sample", "data.n_train=900", "data.n_test=300", "cv.folds=2", "model=gbr",
            "model.params.n_estimators=60"]


@pytest.fixture
def fast_overrides() -> list[str]:
    return list(FAST_GBR)
