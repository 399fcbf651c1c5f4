"""Build and run the project's image (docker/Dockerfile) with Podman, on a machine that reaches
no image registry: the base image is made locally with debootstrap.

    python scripts/podman_image.py build              # base (once) + image, prints its tag
    python scripts/podman_image.py run valuation --help
    python scripts/podman_image.py run -e REDIS_HOST=127.0.0.1 --detach --name proxy uvicorn ...

It installs nothing: podman, runc and debootstrap must be there (`make system-packages` installs
them as root). Used by the README and by tests/docker/test_image.py.

Why the flags: crun fails on this kind of host's cgroups (hybrid mode), so runc with the
cgroupfs manager; the default nproc ulimit (32768) exceeds what an unprivileged host allows;
host networking avoids needing slirp4netns/netavark set up, and lets a container reach services
on the host's loopback (Redis, OpenBao, a tracking server).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"
IGNOREFILE = PROJECT_ROOT / "docker" / "Dockerfile.dockerignore"

# Debian bookworm's python3 is 3.11, the Python the official default base (python:3.11-slim)
# has; the image makes its own virtualenv (/opt/venv), so python3-venv is all it needs.
BASE_IMAGE = "localhost/debian-python:3.11"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "libgomp1", "ca-certificates")
IMAGE = "localhost/property-valuation:latest"

PODMAN_GLOBAL = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")
CONTAINER_FLAGS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                   "--network", "host")
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build and run the valuation image with Podman (base made with debootstrap).")


class Missing(RuntimeError):
    """A tool the script needs is not installed."""


def require(*tools: str) -> None:
    absent = [tool for tool in tools if shutil.which(tool) is None
              and not Path("/usr/sbin", tool).exists()]
    if absent:
        raise Missing(f"{', '.join(absent)} not found: install with `make system-packages` as root "
                      f"(or `apt-get install -y {' '.join(absent)} runc`)")


def podman(*args: str) -> list[str]:
    return ["podman", *PODMAN_GLOBAL, *args]


def image_exists(name: str) -> bool:
    return subprocess.run(podman("image", "exists", name), check=False).returncode == 0


def ca_bundle() -> Path:
    """The CA bundle the host's pip trusts (`pip config list`: cert), else the system's."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], check=False,
                            capture_output=True, text=True).stdout
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".cert") and value.strip("'\" "):
            return Path(value.strip("'\" ")).resolve()
    default = ssl.get_default_verify_paths().cafile
    return Path(default).resolve() if default else SYSTEM_CA_BUNDLE.resolve()


def make_base(name: str = BASE_IMAGE, mirror: str | None = None) -> bool:
    """Debootstrap a minimal bookworm with Python and import it as `name`; False when it exists."""
    require("podman", "runc", "debootstrap")
    if image_exists(name):
        return False
    if os.geteuid() != 0:
        raise Missing("debootstrap needs root: run `python scripts/podman_image.py base` as root")
    with tempfile.TemporaryDirectory(prefix="debian-python-", dir="/var/tmp") as rootfs:
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                        BASE_SUITE, rootfs, *([mirror] if mirror else [])], check=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(podman("import", "-", name), stdin=tar.stdout, check=False)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise subprocess.CalledProcessError(imported.returncode or tar.returncode,
                                                f"tar -C {rootfs} -c . | podman import - {name}")
    return True


def build_image(tag: str = IMAGE, base: str = BASE_IMAGE) -> float:
    """Build docker/Dockerfile on `base` as `tag`; returns the seconds the build took. pip in
    the build trusts the host's CA bundle: its directory is mounted read-only at the same path."""
    require("podman", "runc")
    bundle = ca_bundle()
    started = time.monotonic()
    subprocess.run(podman("build", *CONTAINER_FLAGS,
                          "--file", str(DOCKERFILE), "--ignorefile", str(IGNOREFILE),
                          "--build-arg", f"BASE_IMAGE={base}",
                          "--build-arg", f"PIP_CERT={bundle}",
                          "--volume", f"{bundle.parent}:{bundle.parent}:ro",
                          "--tag", tag, str(PROJECT_ROOT)), check=True)
    return time.monotonic() - started


def image_size(tag: str = IMAGE) -> int:
    """Bytes of the image as podman reports it (uncompressed layers)."""
    out = subprocess.run(podman("image", "inspect", "--format", "{{.Size}}", tag),
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip())


def run_command(command: list[str], *, tag: str = IMAGE, env: list[str] = (),
                volumes: list[str] = (), name: str | None = None, detach: bool = False) -> list[str]:
    """The `podman run` command line for `command` in the image (removed when it exits)."""
    options = [*CONTAINER_FLAGS, "--rm"]
    options += [f"--env={item}" for item in env]  # NAME alone: podman copies it from its own env
    options += [f"--volume={item}" for item in volumes]
    options += [f"--name={name}"] if name else []
    options += ["--detach"] if detach else []
    return podman("run", *options, tag, *command)


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(1)


@app.command()
def base(name: str = BASE_IMAGE,
         mirror: Annotated[str | None, typer.Option(help="Debian mirror URL")] = None) -> None:
    """Make the base image (debootstrap + podman import) unless it exists."""
    try:
        made = make_base(name, mirror)
    except (Missing, subprocess.CalledProcessError) as error:
        _fail(error)
    typer.echo(f"{name}: {'made' if made else 'exists'}")


@app.command()
def build(tag: str = IMAGE, base_image: str = BASE_IMAGE,
          mirror: Annotated[str | None, typer.Option(help="Debian mirror URL")] = None) -> None:
    """Make the base if needed, build the image, print its tag, build time and size."""
    try:
        make_base(base_image, mirror)
        seconds = build_image(tag, base_image)
        size = image_size(tag)
    except (Missing, subprocess.CalledProcessError) as error:
        _fail(error)
    typer.echo(f"{tag}: built in {seconds:.0f} s, {size / 1e6:.0f} MB")


@app.command(context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
def run(command: Annotated[list[str], typer.Argument(help="command to run in the image")],
        env: Annotated[list[str], typer.Option("--env", "-e", help="NAME or NAME=VALUE")] = [],  # noqa: B006
        volume: Annotated[list[str], typer.Option("--volume", "-v")] = [],  # noqa: B006
        name: str | None = None, detach: bool = False, tag: str = IMAGE) -> None:
    """Run COMMAND in the image with host networking (Redis, Vault... on the host's loopback)."""
    try:
        require("podman", "runc")
    except Missing as error:
        _fail(error)
    done = subprocess.run(run_command(command, tag=tag, env=env, volumes=volume, name=name,
                                      detach=detach), check=False)
    raise typer.Exit(done.returncode)


if __name__ == "__main__":
    app()
