"""One MLflow store, whatever starts first: `make stack` before `make train`, training through the
stack's API in between, `make train` again; every registered version loads and prices a row.
Where a store cannot be written by a direct client, training refuses at once with one line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import psutil
import pytest
from mlflow import MlflowClient

from tests.serving.devstack.test_e2e import BEST_MODEL_BODY, PREDICT_BODY, TRAIN_BODY
from tests.support.stack import (
    MODEL_NAME,
    PIPELINE_OVERRIDES,
    TRAINING_TIMEOUT_S,
    champion_through_api,
    launch_stack,
)
from valuation.config import PROJECT_ROOT


def direct_env(store_uri: str) -> dict[str, str]:
    """The environment of `make train` against `store_uri` (a database, opened directly)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "MLFLOW_TRACKING_URI": store_uri}


def make_train(store_uri: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """What `make train` runs: the Project's main entry point, filed under MLflow's Default
    experiment, on the tiny pipeline; `extra_env` adds to its environment (e.g. S3 credentials)."""
    return subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(PROJECT_ROOT), "--env-manager", "local",
         "-P", f"overrides={' '.join(PIPELINE_OVERRIDES)}"],
        cwd=PROJECT_ROOT, env={**direct_env(store_uri), **(extra_env or {})}, capture_output=True,
        text=True,
        timeout=TRAINING_TIMEOUT_S,
    )


def job_runner_processes(root_pid: int) -> list[str]:
    """The command lines of MLflow job-runner consumers (Huey) under a stack's process."""
    found = []
    for child in psutil.Process(root_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            if "huey" in command:
                found.append(command)
    return found


def registered_versions(store_uri: str) -> list[str]:
    client = MlflowClient(tracking_uri=store_uri, registry_uri=store_uri)
    return sorted((str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'")),
                  key=int)


def price_each_version(store_uri: str, versions: list[str]) -> dict[str, float]:
    """Load every version with a direct client (a fresh interpreter, as `mlflow models serve`
    would) and price the specification's row."""
    script = textwrap.dedent(
        """
        import json, sys
        import mlflow
        mlflow.set_tracking_uri(sys.argv[1])
        prices = {}
        for version in json.loads(sys.argv[2]):
            model = mlflow.pyfunc.load_model(f"models:/{sys.argv[3]}/{version}")
            prices[version] = float(model.predict(json.loads(sys.argv[4]))[0])
        print("PRICES=" + json.dumps(prices))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, store_uri, json.dumps(versions), MODEL_NAME,
         json.dumps(PREDICT_BODY["features"])],
        cwd=PROJECT_ROOT, env=direct_env(store_uri), capture_output=True, text=True, timeout=600,
    )
    marker = [line for line in done.stdout.splitlines() if line.startswith("PRICES=")]
    assert done.returncode == 0 and marker, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(marker[0].removeprefix("PRICES="))


def test_training_refuses_an_experiment_only_a_tracking_server_can_write(tmp_path: Path):
    # What a stack started before the fix left behind: an experiment whose artifacts live
    # behind the server (`mlflow-artifacts:`), which a client opening the database cannot write.
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=store).create_experiment(
        "served-artifacts", artifact_location="mlflow-artifacts:/1")
    done = subprocess.run(
        [sys.executable, "-m", "steps.main",
         "--overrides", " ".join([*PIPELINE_OVERRIDES, "experiment_name=served-artifacts"])],
        cwd=PROJECT_ROOT, env=direct_env(store), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    # One line of ours (libraries may log or warn beside it, e.g. MLflow creating its tables).
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: experiment 'served-artifacts'"), line
    assert "mlflow-artifacts:/1" in line and "make stack" in line and "--experiment-name" in line
    assert registered_versions(store) == []  # nothing was trained before the refusal


@pytest.mark.slow
def test_stack_first_then_train_then_train_through_the_stack_then_train_again(tmp_path: Path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"

    # `make stack` on a fresh store, then Ctrl-C: its tracking server created the store and
    # MLflow's Default experiment.
    stack = launch_stack(tmp_path, store, {})
    # Its tracking server runs without MLflow's own job runner (conf: stack.mlflow_env).
    runners = job_runner_processes(stack.process.pid)
    assert not runners, runners
    stack.stop()
    default = MlflowClient(tracking_uri=store).get_experiment("0")
    assert default.artifact_location.startswith("file://"), default.artifact_location

    # `make train` on that store: the run is filed under the Default experiment.
    first = make_train(store)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    assert registered_versions(store) == ["1"]

    # `make stack` again; POST /train through the proxy, promote it, and it is served.
    stack = launch_stack(tmp_path, store, {})
    try:
        with httpx.Client(base_url=stack.url, timeout=60, trust_env=False) as client:
            champion_through_api(client, stack, TRAIN_BODY, BEST_MODEL_BODY, PREDICT_BODY,
                                 previous="1")  # make train's champion, served meanwhile
    finally:
        assert stack.stop() == 0, stack.text()[-3000:]

    # `make train` once more, directly on the store the stack wrote to.
    again = make_train(store)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]

    versions = registered_versions(store)
    assert len(versions) == 3, versions  # make train, /train (+ /best_model), make train
    prices = price_each_version(store, versions)
    assert sorted(prices) == versions and all(price > 0 for price in prices.values()), prices
