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
echo "error: no python with MLflow on PATH and no .venv here; run 'make install' first" >&2
exit 2
