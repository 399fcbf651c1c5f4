"""Versions registered before the model package was split out (their code_paths is the whole
`valuation/` package, which imports Hydra) keep loading and serving in the project's virtualenv,
the way the proxy's supervisor serves them (`mlflow models serve --env-manager local`)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import mlflow
import pytest

from serving.processes import terminate_process_group
from tests.support.serving import TINY_PIPELINE, child_env, free_port, run_pipeline_in_child, wait_for
from valuation.config import PROJECT_ROOT
from valuation.model_runtime.schema import EXAMPLE_ROW

pytestmark = pytest.mark.slow

# The last commit whose pipeline logged `valuation/` as the model's code_paths.
OLD_LAYOUT_COMMIT = "d53db83"
MODEL_NAME = "property_friends_best_model"


def old_project_tree(destination: Path) -> Path:
    """The project's files as of OLD_LAYOUT_COMMIT, from this checkout's git history."""
    archive = subprocess.run(["git", "archive", "--format=tar", OLD_LAYOUT_COMMIT, "valuation", "steps",
                              "conf"], cwd=PROJECT_ROOT, capture_output=True, timeout=120)
    if archive.returncode != 0:
        raise AssertionError(f"this test builds an old-layout model from commit {OLD_LAYOUT_COMMIT}, which "
                             f"this clone lacks (a shallow clone?): {archive.stderr.decode()[-500:]}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    return destination


def test_a_version_logged_with_the_old_layout_is_still_served(tmp_path: Path) -> None:
    old_tree = old_project_tree(tmp_path / "old-project")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # The old pipeline, run from the old tree (its `valuation` first on the path).
    env_for_old = {"PYTHONPATH": str(old_tree)}
    result = run_pipeline_in_child(uri, old_tree, TINY_PIPELINE, **env_for_old)
    version = str(result["version"])
    mlflow.set_tracking_uri(uri)
    model_uri = f"models:/{MODEL_NAME}/{version}"
    code = Path(mlflow.artifacts.download_artifacts(f"{model_uri}/code", dst_path=str(tmp_path / "dl")))
    assert (code / "valuation" / "config.py").exists()  # really the old layout
    assert not (code / "model_runtime").exists()

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env={**child_env(MLFLOW_TRACKING_URI=uri),
                           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def answers() -> bool:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, 300, "the old-layout model server", 1.0)
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": [EXAMPLE_ROW]},
                            timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0] > 0
    finally:
        terminate_process_group(server, grace_s=30)
        log.close()
