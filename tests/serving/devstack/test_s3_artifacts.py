"""Artifacts only in a bucket: `make stack` with an s3:// artifact destination on a real
S3-protocol server (moto_server), then `make train` opening the database directly, training
through the API, promotion and serving. Every artifact is in the bucket; nothing is on disk."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.serving.devstack.test_e2e import BEST_MODEL_BODY, PREDICT_BODY, TRAIN_BODY
from tests.serving.devstack.test_store_order import make_train, registered_versions
from tests.support.s3 import S3Server
from tests.support.stack import MODEL_NAME, champion_through_api, launch_stack, wait_for_prediction

pytestmark = pytest.mark.slow


def test_train_register_and_serve_with_artifacts_only_in_the_bucket(
        tmp_path: Path, s3_server: S3Server, s3_bucket: str):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    destination = f"s3://{s3_bucket}/mlflow"
    stack = launch_stack(tmp_path, store, {**s3_server.env(),
                                           "MLFLOW_ARTIFACTS_DESTINATION": destination})
    try:
        # `make train` after `make stack`, opening the database directly: the Default experiment
        # the stack's server created has the bucket as its root, so the S3 env is all it needs.
        first = make_train(store, s3_server.env())
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
        assert registered_versions(store) == ["1"]
        with httpx.Client(base_url=stack.url, timeout=60, trust_env=False) as client:
            # The supervisor's model server loads the champion from the bucket.
            served = wait_for_prediction(client, stack.headers(), PREDICT_BODY).json()
            assert served["model_version"] == "1" and served["predictions"][0] > 0, served
            # POST /train (the worker's `mlflow run` through the server), /best_model, served.
            second = champion_through_api(client, stack, TRAIN_BODY, BEST_MODEL_BODY,
                                          PREDICT_BODY, previous="1")
    finally:
        assert stack.stop() == 0, stack.text()[-3000:]

    registry = MlflowClient(tracking_uri=store, registry_uri=store)
    for version in ("1", second):
        location = registry.get_model_version_download_uri(MODEL_NAME, version)
        assert location.startswith(f"{destination}/"), location
    keys = s3_server.keys(s3_bucket, "mlflow/")
    assert sum(key.endswith("/MLmodel") for key in keys) >= 2, keys
    assert not (tmp_path / "mlartifacts").exists()
    assert not (tmp_path / "mlruns").exists()
    # The S3 secret reached the children through their environment only: no output or log has it.
    logs = [stack.output, *(tmp_path / "state").rglob("*.log")]
    assert len(logs) > 5 and not [log for log in logs
                                  if s3_server.secret_key in log.read_text(errors="replace")]
