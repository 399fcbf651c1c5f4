"""One child process of the dev stack: started in its own process group, logged to a file."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from serving.processes import kill_group, own_group_options, terminate_process_group
from valuation.config import PROJECT_ROOT

LOG_TAIL_LINES = 15  # lines of a part's log quoted when it fails


class StackError(RuntimeError):
    """A part could not start; the message says which, why, and where its log is."""


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


@dataclass
class Part:
    """One child process of the stack."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    where: str  # what to print: where it listens
    stdin_text: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600: a dev Vault prints its root token into its log.
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log_file:
            # Its own process group: Ctrl-C reaches the stack only, which stops parts in order.
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE if self.stdin_text is not None else subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                **own_group_options(),
            )
        if self.stdin_text is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(self.stdin_text.encode())
            self.proc.stdin.close()

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self, grace_s: float) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate_process_group(self.proc, grace_s)
        elif self.proc is not None:
            # The leader is gone; make sure nothing it started lingers in its group.
            kill_group(self.proc.pid)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    | {line}" for line in text[-lines:])
