"""`python -m serving.run_guard PGID RUN_ID [SCRATCH_DIR]`: stops a training run whose job died.

MLflow starts `mlflow run` in a session of its own (so that it can cancel the whole tree), which
means the run outlives a work horse killed with SIGKILL (the out-of-memory killer, `kill -9`) and
would go on to register a model for a job already reported failed. The work horse therefore
starts this guard beside every run, also in a session of its own so that a kill of the worker's
process groups spares it, with a pipe on its stdin. The horse writes "done" once the run's
processes have ended. If the pipe closes without it, the horse died: the guard SIGKILLs the run's
process group, marks the MLflow run KILLED and removes the job's scratch directory.

Only the standard library is imported until the guard fires: one idle interpreter per training.
"""

from __future__ import annotations

import contextlib
import shutil
import sys

from serving.processes import kill_group

DONE = b"done"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    pgid, run_id = int(args[0]), args[1]
    scratch = args[2] if len(args) > 2 else None
    if sys.stdin.buffer.read().strip() == DONE:
        return 0
    _say(f"the job of run {run_id} died: killing the run's process group {pgid}")
    kill_group(pgid)  # False when the run had ended on its own
    _mark_killed(run_id)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _mark_killed(run_id: str) -> None:
    """The run would stay RUNNING in MLflow forever: nobody is left to end it."""
    try:
        from mlflow import MlflowClient

        client = MlflowClient()  # MLFLOW_TRACKING_URI is inherited from the work horse
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status="KILLED")
        _say(f"run {run_id} marked KILLED")
    except Exception as error:  # the tracking store may be down; the processes are gone anyway
        _say(f"run {run_id} could not be marked KILLED: {type(error).__name__}: {error}")


def _say(message: str) -> None:
    with contextlib.suppress(OSError):  # whoever read our stderr may be gone too
        print(f"run_guard: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
