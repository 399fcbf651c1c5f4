"""Child processes in process groups of their own: how they are started and how they are stopped.

Every long-running child of the service (model servers, the dev stack's parts, a training run)
leads a session of its own, so that signalling its group reaches whatever it spawned (uvicorn
workers, gunicorn children). This module is the one place that signals process groups.

Only the standard library is imported: `serving.run_guard` uses it in an otherwise bare
interpreter.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from typing import Any

_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    # Runs in the forked child before exec: if the thread that started it dies (even by SIGKILL),
    # the kernel sends the child SIGTERM, which takes its own children down in turn (MLflow sets
    # the same signal on uvicorn). This is how a killed proxy or stack leaves no orphans.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def own_group_options() -> dict[str, Any]:
    """`subprocess.Popen` keyword arguments for a child that leads its own process group and gets
    SIGTERM when the thread that started it dies (Linux)."""
    return {"start_new_session": True,
            "preexec_fn": _set_parent_death_signal if _LIBC is not None else None}


def signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to the process group `pgid`; False when the group is gone (or not ours).
    Signal 0 only asks whether the group still exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return signum == 0  # it exists, owned by someone else
    return True


def kill_group(pgid: int) -> bool:
    """SIGKILL the whole process group `pgid`; False when it was already gone."""
    return signal_group(pgid, signal.SIGKILL)


def terminate_process_group(proc: subprocess.Popen, grace_s: float) -> int | None:
    """Stop a child started with `own_group_options()` and everything it spawned: SIGTERM to its
    group, SIGKILL after `grace_s`. Returns its exit code (None if it could not be reaped)."""
    signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # The leader may be gone while grandchildren (uvicorn workers) linger: kill the group anyway.
    kill_group(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    return proc.returncode
