"""A registry with the default model (LightGBM) as champion and a scikit-learn model (stored with
skops) as challenger, both trained by the project's own pipeline on synthetic data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.serving import TINY_PIPELINE, run_pipeline_in_child

MODEL_NAME = "property_friends_best_model"
# The default model group, made tiny; thresholds opened up as in TINY_PIPELINE.
TINY_DEFAULT_MODEL = [item for item in TINY_PIPELINE if not item.startswith("model")] + [
    "model=lgbm", "model.params.n_estimators=30",
]


@dataclass(frozen=True)
class PortableRegistry:
    tracking_uri: str
    root: Path
    champion: str  # lgbm
    challenger: str  # gbr (skops)


@pytest.fixture(scope="session")
def portable_registry(tmp_path_factory: pytest.TempPathFactory) -> PortableRegistry:
    root = tmp_path_factory.mktemp("portable-registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    champion = run_pipeline_in_child(uri, root, TINY_DEFAULT_MODEL)["version"]
    challenger = run_pipeline_in_child(uri, root, TINY_PIPELINE)["version"]
    assert champion and challenger, "the pipeline registered nothing"
    from mlflow import MlflowClient

    # The second run may have won the champion alias on its test data: put each where it belongs.
    client = MlflowClient(tracking_uri=uri)
    client.set_registered_model_alias(MODEL_NAME, "champion", str(champion))
    client.set_registered_model_alias(MODEL_NAME, "challenger", str(challenger))
    return PortableRegistry(uri, root, str(champion), str(challenger))
