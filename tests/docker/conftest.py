"""The project's image, built for real with Podman once per test session by the script the README
uses (scripts/podman_image.py: a debootstrapped Debian base, then docker/Dockerfile). Skipped
only where podman is absent."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from types import ModuleType

import pytest

from valuation.config import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "podman_image.py"
# A full build downloads and installs every runtime dependency (minutes on a loaded 2-core
# machine); later sessions reuse podman's layer cache.
BUILD_TIMEOUT_S = 3000


def load_script() -> ModuleType:
    """scripts/ is not a package: the test reads the script's names (image tag, podman flags)."""
    spec = importlib.util.spec_from_file_location("podman_image", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


podman_image = load_script()


@pytest.fixture(scope="session")
def built_image() -> str:
    """The image's tag, after `python scripts/podman_image.py build` (base made when missing)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (`make system-packages` installs it, as root)")
    done = subprocess.run([sys.executable, str(SCRIPT), "build"], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S, cwd=PROJECT_ROOT)
    assert done.returncode == 0, f"image build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    # "<tag>: built in N s, M MB": the figures CI reports (shown with -s, and in -rA summaries).
    print(f"\n{done.stdout.strip().splitlines()[-1]}")
    return podman_image.IMAGE
