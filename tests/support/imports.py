"""Reading a source tree's import statements without running it."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImportLine:
    file: Path
    line: int
    module: str  # the dotted name imported; for a relative import, dots then the name
    level: int  # 0 absolute, 1 `from . import`, 2 `from .. import`, ...

    @property
    def top(self) -> str:
        return self.module.partition(".")[0]


def imports_in(directory: Path) -> list[ImportLine]:
    """Every import statement of every module under `directory`, nested ones (inside functions)
    too, in file and line order."""
    found = []
    for path in sorted(directory.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found += [ImportLine(path, node.lineno, alias.name, 0) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                found.append(ImportLine(path, node.lineno, node.module or "", node.level))
    return sorted(found, key=lambda item: (str(item.file), item.line))
