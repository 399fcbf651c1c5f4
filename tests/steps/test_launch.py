"""steps/launch.sh, the MLproject entry points' launcher: it runs a step with the `python` on PATH
when that one has MLflow, else with the project's .venv, else stops with a message saying what is
missing and how to fix it. Run for real with `sh`, from a copy of the launcher in a directory
with or without a .venv, and a PATH chosen by the test."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from valuation.config import PROJECT_ROOT

SH = shutil.which("sh") or "/bin/sh"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory laid out like the project (steps/launch.sh) but without a .venv."""
    (tmp_path / "project" / "steps").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "steps" / "launch.sh", tmp_path / "project" / "steps" / "launch.sh")
    return tmp_path / "project"


@pytest.fixture(scope="module")
def python_without_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose `python` is a real interpreter that cannot import mlflow: a fresh venv
    without the project's packages."""
    env_dir = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    bin_dir = env_dir / "bin"
    probe = subprocess.run([str(bin_dir / "python"), "-c", "import mlflow"],
                           capture_output=True, text=True, check=False)
    assert probe.returncode != 0, "the bare venv should not see mlflow"
    return bin_dir


def launch(project: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SH, "steps/launch.sh", *args], cwd=project, env={"PATH": path, "HOME": str(project)},
        capture_output=True, text=True, timeout=60, check=False,
    )


def assert_says_what_is_missing(done: subprocess.CompletedProcess[str], project: Path) -> None:
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert "cannot run 'steps.ingest'" in done.stderr
    assert f"no .venv/bin/python in {project}" in done.stderr
    assert "make install" in done.stderr


def test_no_python_on_path_and_no_venv_says_so(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = launch(project, str(empty), "steps.ingest")
    assert_says_what_is_missing(done, project)
    assert "no 'python' on PATH" in done.stderr


def test_a_python_without_mlflow_and_no_venv_says_so(project: Path, python_without_mlflow: Path) -> None:
    done = launch(project, str(python_without_mlflow), "steps.ingest")
    assert_says_what_is_missing(done, project)
    assert f"({python_without_mlflow / 'python'}) cannot import mlflow" in done.stderr


def test_a_python_without_mlflow_falls_back_to_the_venv(project: Path, python_without_mlflow: Path) -> None:
    # The project's .venv: a launcher script for the interpreter running these tests (which has
    # MLflow); a symlink would lose the venv, since Python finds pyvenv.cfg beside its own path.
    venv_python = project / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    venv_python.chmod(0o755)
    (project / "probe_step.py").write_text(
        "import importlib.util, sys\n"
        "print(importlib.util.find_spec('mlflow') is not None, sys.argv[1:])\n"
    )
    done = launch(project, str(python_without_mlflow), "probe_step", "--x")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True ['--x']"  # run by the .venv's python, arguments passed on
