"""The image built for real (tests/docker/conftest.py builds it once per session with Podman) and
run: its CLI, its user, and the proxy container serving one prediction against the host's Redis,
a real OpenBao and the session's trained model (`mlflow models serve`, started inside the
container by the proxy's supervisor, as in compose and the Helm chart)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from serving.api.schemas import SPEC_PREDICT_BODY
from serving.ports import free_port
from serving.vault_init import bootstrap
from tests.docker.conftest import podman_image
from tests.support.bao import vault_settings
from tests.support.serving import TrainedModel, wait_for
from tests.support.vault import bao  # noqa: F401  (fixture: the session's OpenBao)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # the first test pays for the build
READY_TIMEOUT_S = 300  # the model server loads the model inside the container


def run_in_image(image: str, *command: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(podman_image.run_command(list(command), tag=image), capture_output=True,
                          text=True, timeout=timeout_s)


def test_the_cli_runs_in_the_image(built_image) -> None:
    done = run_in_image(built_image, "valuation", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: valuation" in done.stdout and "score" in done.stdout


def test_the_image_runs_as_its_unprivileged_user(built_image) -> None:
    done = run_in_image(built_image, "id", "-u")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 10001 != 0  # the Dockerfile's `app` user, which the chart expects


@pytest.fixture
def shared_store(trained_model: TrainedModel, tmp_path: Path) -> Path:
    """A copy of the session's trained store that the container's user may write, to mount where
    the original lies (its paths are absolute). pytest's temp dirs are private (0700) to the host
    user, and the container runs as another; MLflow writes a registered_model_meta file beside a
    model it loads from a local artifact store (from S3 it downloads to a temp dir instead)."""
    copy = tmp_path / "store"
    shutil.copytree(trained_model.root, copy, ignore=shutil.ignore_patterns("*.lock"))
    for path in (copy, *copy.rglob("*")):
        path.chmod(0o777 if path.is_dir() else 0o666)
    return copy


def diagnose(name: str, base: str) -> str:
    """/ready's answer, the container's log and its model servers' logs (progress bars left out)."""
    podman = podman_image.podman
    try:
        ready = httpx.get(f"{base}/ready", timeout=5).text
    except httpx.HTTPError as error:
        ready = repr(error)
    logs = subprocess.run(podman("logs", name), capture_output=True, text=True)
    servers = subprocess.run(podman("exec", name, "sh", "-c", "tail -n 40 /app/.stack/model-servers/*.log"),
                             capture_output=True, text=True)
    lines = [line for line in (logs.stdout + logs.stderr + servers.stdout + servers.stderr).splitlines()
             if line.strip() and "Downloading artifacts" not in line]
    return f"/ready: {ready}\n" + "\n".join(lines[-120:])


def test_the_proxy_container_answers_a_prediction(built_image, trained_model, shared_store,
                                                  bao) -> None:  # noqa: F811
    api_key = f"pv_image_{secrets.token_urlsafe(16)}"
    credentials = bootstrap(bao.addr, bao.root_token, api_key=api_key,
                            settings=vault_settings(bao.addr))
    port, name = free_port(), f"valuation-proxy-{uuid.uuid4().hex[:8]}"
    vault_host, vault_port = bao.addr.rsplit(":", 1)
    env = {
        "MLFLOW_TRACKING_URI": trained_model.tracking_uri,
        "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6379",
        "TRAINING_QUEUE": f"test-image-{uuid.uuid4().hex[:12]}",
        "RATE_LIMIT_PREFIX": f"test-image-{uuid.uuid4().hex[:12]}",
        "VAULT_ADDR": vault_host, "VAULT_PORT": vault_port,
        "VAULT_ROLE_ID": credentials.role_id, "VAULT_SECRET_ID": credentials.secret_id,
        "MODEL_SERVER_PORT": str(free_port()),
        "AUDIT_LOG_PATH": "/var/log/valuation/audit.jsonl",
    }
    # Values reach podman through its environment (`--env NAME`), never its command line.
    command = podman_image.run_command(
        ["uvicorn", "serving.app:app", "--host", "127.0.0.1", "--port", str(port)],
        tag=built_image, env=list(env), name=name, detach=True,
        volumes=[f"{shared_store}:{trained_model.root}"])
    started = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True,
                             timeout=120)
    assert started.returncode == 0, started.stderr
    podman = podman_image.podman
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/ready", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(ready, READY_TIMEOUT_S, "the proxy container's /ready", every_s=2)
        except AssertionError:
            raise AssertionError(f"not ready: {diagnose(name, base)}") from None
        answer = httpx.post(f"{base}/predict", json=SPEC_PREDICT_BODY,
                            headers={"X-API-Key": api_key}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_version"] == trained_model.version
        (price,) = body["predictions"]
        assert isinstance(price, float) and price > 0
        # The container ran as its unprivileged user, with the key from the real OpenBao.
        user = subprocess.run(podman("exec", name, "id", "-u"), capture_output=True, text=True)
        assert user.stdout.strip() == "10001"
        refused = httpx.post(f"{base}/predict", json=SPEC_PREDICT_BODY,
                             headers={"X-API-Key": "pv_not_a_key"}, timeout=30)
        assert refused.status_code == 401
    finally:
        subprocess.run(podman("stop", "--time", "10", name), capture_output=True, timeout=60)
        subprocess.run(podman("rm", "--force", "--ignore", name), capture_output=True, timeout=60)
