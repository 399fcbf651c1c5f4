"""A registered model loads and serves from an environment built from its own requirements.txt
alone, outside the checkout, with no PYTHONPATH: what every MLflow deployment target does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest

from serving.processes import terminate_process_group
from tests.support.serving import free_port, wait_for
from tests.valuation.model_runtime.conftest import MODEL_NAME, PortableRegistry
from valuation.model_runtime.schema import EXAMPLE_ROW

pytestmark = pytest.mark.slow

CHAMPION_URI = f"models:/{MODEL_NAME}@champion"
CHALLENGER_URI = f"models:/{MODEL_NAME}@challenger"

# Run by the fresh environment's interpreter: price the specification's row with each model URI.
PRICE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import mlflow
    row = json.loads(sys.argv[1])
    prices = {uri: mlflow.pyfunc.load_model(uri).predict([row])[0] for uri in sys.argv[2:]}
    print("PRICES=" + json.dumps(prices))
    """
)


def uv_binary() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert found, "uv is a test dependency (pyproject.toml [test]); run make install"
    return found


def clean_env(registry: PortableRegistry, bin_dirs: list[Path]) -> dict[str, str]:
    """The machine's environment without this project: no PYTHONPATH, no virtualenv, PATH holding
    only the given directories and the system's."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not name.startswith("MLFLOW_")}
    system_path = [entry for entry in env.get("PATH", "").split(os.pathsep)
                   if entry and ".venv" not in entry and not entry.startswith(str(Path(sys.prefix)))]
    env["PATH"] = os.pathsep.join([str(d) for d in bin_dirs] + system_path)
    env["MLFLOW_TRACKING_URI"] = registry.tracking_uri
    return env


@pytest.fixture(scope="session")
def model_venv(portable_registry: PortableRegistry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv outside the checkout holding nothing but the champion's requirements.txt."""
    mlflow.set_tracking_uri(portable_registry.tracking_uri)
    requirements = mlflow.pyfunc.get_model_dependencies(CHAMPION_URI)
    place = tmp_path_factory.mktemp("model-env")
    venv = place / "venv"
    interpreter = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    subprocess.run([uv_binary(), "venv", "--quiet", "--python", interpreter, str(venv)], check=True,
                   cwd=place, timeout=300)
    subprocess.run([uv_binary(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                    "-r", requirements], check=True, cwd=place, timeout=900)
    return venv


@pytest.fixture
def uv_bin_dir(tmp_path: Path) -> Path:
    """A directory holding only `uv`, so PATH gives MLflow uv and nothing of the project."""
    directory = tmp_path / "uv-bin"
    directory.mkdir()
    (directory / "uv").symlink_to(uv_binary())
    return directory


def in_project_price(registry: PortableRegistry, uri: str) -> float:
    mlflow.set_tracking_uri(registry.tracking_uri)
    return float(mlflow.pyfunc.load_model(uri).predict([EXAMPLE_ROW])[0])


def test_the_model_environment_holds_nothing_of_the_project(portable_registry, model_venv: Path) -> None:
    python = model_venv / "bin" / "python"
    env = clean_env(portable_registry, [model_venv / "bin"])
    for module in ("valuation", "serving", "hydra", "omegaconf"):
        probe = subprocess.run([str(python), "-c", f"import {module}"], cwd=model_venv.parent, env=env,
                               capture_output=True, text=True, timeout=120)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module


def test_champion_and_skops_challenger_load_and_price_from_their_own_requirements(
        portable_registry: PortableRegistry, model_venv: Path) -> None:
    env = clean_env(portable_registry, [model_venv / "bin"])
    done = subprocess.run(
        [str(model_venv / "bin" / "python"), "-c", PRICE_SCRIPT, json.dumps(EXAMPLE_ROW),
         CHAMPION_URI, CHALLENGER_URI],
        cwd=model_venv.parent, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    prices = json.loads(next(line for line in done.stdout.splitlines()
                             if line.startswith("PRICES=")).removeprefix("PRICES="))
    for uri in (CHAMPION_URI, CHALLENGER_URI):
        assert prices[uri] > 0
        assert prices[uri] == pytest.approx(in_project_price(portable_registry, uri), rel=1e-9)


@pytest.fixture
def uv_model_server(portable_registry: PortableRegistry, model_venv: Path, uv_bin_dir: Path,
                    tmp_path: Path) -> Iterator[str]:
    """`mlflow models serve --env-manager uv` for the champion, run from the model environment:
    MLflow builds the server's environment from the model's requirements with uv."""
    port = free_port()
    env = clean_env(portable_registry, [model_venv / "bin", uv_bin_dir])
    env["MLFLOW_ENV_ROOT"] = str(tmp_path / "mlflow-envs")
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(model_venv / "bin" / "mlflow"), "models", "serve", "-m", CHAMPION_URI, "--env-manager", "uv",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if server.poll() is not None:
            output = (tmp_path / "serve.log").read_text()[-3000:]
            raise AssertionError(f"mlflow models serve exited: {output}")
        try:
            return httpx.get(f"{url}/ping", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(answers, 600, "the uv-built model server to answer /ping", 1.0)
        yield url
    finally:
        terminate_process_group(server, grace_s=30)
        log.close()


def test_champion_served_with_env_manager_uv_gives_the_same_price(
        portable_registry: PortableRegistry, uv_model_server: str, tmp_path: Path) -> None:
    answer = httpx.post(f"{uv_model_server}/invocations", json={"inputs": [EXAMPLE_ROW]}, timeout=30)
    assert answer.status_code == 200, answer.text
    price = answer.json()["predictions"][0]
    assert price == pytest.approx(in_project_price(portable_registry, CHAMPION_URI), rel=1e-9)
    # The server's environment was built by uv from the model's requirements, not this virtualenv.
    built = list((tmp_path / "mlflow-envs").glob("*/bin/python"))
    assert built, "MLflow built no environment under MLFLOW_ENV_ROOT"
