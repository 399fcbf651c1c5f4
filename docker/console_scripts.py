"""Write a launcher in the image's venv for each of pyproject.toml's [project.scripts] (run in the
Dockerfile's builder stage). The project is not pip-installed in the image (it runs from /app,
beside conf/), so pip makes no console scripts: this makes `valuation` a command there too.

    python docker/console_scripts.py pyproject.toml /opt/venv
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

LAUNCHER = """#!{python}
import sys

from {module} import {attribute} as entry

sys.exit(entry())
"""


def write_launchers(pyproject: Path, venv: Path) -> list[Path]:
    scripts = tomllib.loads(pyproject.read_text())["project"].get("scripts", {})
    written = []
    for name, target in scripts.items():
        module, attribute = target.split(":")
        path = venv / "bin" / name
        path.write_text(LAUNCHER.format(python=venv / "bin" / "python", module=module,
                                        attribute=attribute))
        path.chmod(0o755)
        written.append(path)
    return written


if __name__ == "__main__":
    for launcher in write_launchers(Path(sys.argv[1]), Path(sys.argv[2])):
        print(launcher)
