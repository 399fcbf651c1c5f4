"""A training's console output: captured to a file (a failed job quotes its last lines) while it
is forwarded to the worker's own log."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def tail_lines(path: Path, count: int) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no output captured)"
    return "\n".join(lines[-count:]) or "(no output)"



class CapturedOutput:
    """Send this process's stdout/stderr (and so the run's subprocesses') to a file, forwarding
    it to the original streams as it grows: the worker's log still shows the training, and a
    failed job can quote its last lines."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def original_stderr(self) -> int:
        """The stream the worker logged to before the capture (for helpers that outlive it)."""
        return self._saved_stderr

    def __enter__(self) -> CapturedOutput:
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved_stdout = os.dup(1)
        self._saved_stderr = os.dup(2)
        file_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(file_fd, 1)
        os.dup2(file_fd, 2)
        os.close(file_fd)
        self._reader = self.path.open("rb")
        return self

    def forward(self) -> None:
        chunk = self._reader.read()
        if chunk:
            os.write(self._saved_stdout, chunk)

    def __exit__(self, *exc_info: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            self.forward()
        finally:
            os.dup2(self._saved_stdout, 1)
            os.dup2(self._saved_stderr, 2)
            os.close(self._saved_stdout)
            os.close(self._saved_stderr)
            self._reader.close()
