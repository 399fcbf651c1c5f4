"""scripts/podman_image.py and docker/console_scripts.py without building anything (the build
itself: test_image.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from tests.docker.conftest import SCRIPT, podman_image
from tests.support.deployment import module_defines
from valuation.config import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"


def test_a_missing_tool_is_named_with_how_to_install_it() -> None:
    with pytest.raises(podman_image.Missing, match=r"no-such-tool-here not found: install with "
                                                   r"`make system-packages`"):
        podman_image.require("sh", "no-such-tool-here")


def test_containers_run_with_the_flags_this_machine_needs() -> None:
    command = podman_image.run_command(["id", "-u"], env=["REDIS_HOST"], volumes=["/a:/b:ro"],
                                       name="c1", detach=True)
    assert command[:5] == ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
    assert command[5] == "run" and command[-3:] == [podman_image.IMAGE, "id", "-u"]
    for flag in ("nofile=1024:1024", "nproc=1024:1024", "--rm", "--env=REDIS_HOST",
                 "--volume=/a:/b:ro", "--name=c1", "--detach"):
        assert flag in command
    assert command[command.index("--network") + 1] == "host"


def test_pip_in_the_build_trusts_an_existing_ca_bundle() -> None:
    bundle = podman_image.ca_bundle()
    assert bundle.is_file() and bundle.is_absolute()


def test_the_dockerfile_takes_the_base_the_script_makes() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)  # the official default
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\} AS ", text, re.M)) == 2
    assert "python3 -m venv /opt/venv" in text  # Debian's python3 (no `python` before the venv)
    assert "3.11" in podman_image.BASE_IMAGE and "python3-venv" in podman_image.BASE_PACKAGES
    assert "/mlartifacts" not in text  # nothing in the image uses it


def test_the_cli_says_what_it_does() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert all(word in done.stdout for word in ("base", "build", "run"))


def test_console_script_launchers_match_pyproject(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location(
        "console_scripts", PROJECT_ROOT / "docker" / "console_scripts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "bin").mkdir()
    (launcher,) = module.write_launchers(PROJECT_ROOT / "pyproject.toml", tmp_path)
    assert launcher.name == "valuation" and launcher.stat().st_mode & 0o111
    text = launcher.read_text()
    assert text.startswith(f"#!{tmp_path}/bin/python\n")
    imported = re.search(r"^from (\S+) import (\S+) as entry$", text, re.M)
    assert module_defines(imported.group(1), imported.group(2))
