#!/usr/bin/env sh
# Entry-point launcher for MLproject. MLflow runs entry-point commands through a shell with the
# caller's PATH: under `--env-manager conda` (or an activated virtualenv) `python` is the right
# interpreter, but `.venv/bin/mlflow run . --env-manager local` from a shell that never activated
# .venv would reach some other python. Use `python` when it has MLflow, else the project's .venv.
if python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mlflow') is None)" 2>/dev/null; then
  exec python -m "$@"
fi
if [ -x .venv/bin/python ]; then
  exec .venv/bin/python -m "$@"
fi
# Neither: say which python was found (if any), where .venv was looked for, and the fix.
found=$(command -v python 2>/dev/null)
if [ -n "$found" ]; then
  why="the 'python' on PATH ($found) cannot import mlflow"
else
  why="there is no 'python' on PATH"
fi
echo "error: cannot run '$1': $why, and there is no .venv/bin/python in $(pwd)." >&2
echo "Fix: run 'make install' in the project root (it creates .venv with MLflow and the project)," >&2
echo "or activate an environment that has them (e.g. 'mlflow run . --env-manager conda')." >&2
exit 2
