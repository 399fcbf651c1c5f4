"""What deployment files (docker-compose.yaml, the Helm chart) are checked against: the entry
points, environment names and healthcheck programs the code really has. Files are parsed, never
run, so these checks need no container engine or cluster."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from valuation.config import PROJECT_ROOT

SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY")
# Read by third-party code inside our containers (MLflow's client and server, boto3 for the
# tracking server's S3 artifact store).
THIRD_PARTY_ENV = {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                   "AWS_SECRET_ACCESS_KEY", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"}


def tracking_server_env() -> dict[str, str]:
    """What the dev stack sets for its tracking server; compose and the chart must match it."""
    from serving.devstack.services import tracking_server_env as stack_tracking_server_env
    from valuation.config import load_config

    return stack_tracking_server_env(load_config(config_name="serving"))


def names_read_by_code() -> set[str]:
    """Env names conf/serving.yaml resolves plus those the serving code reads directly."""
    names = set(re.findall(r"oc\.env:([A-Z_][A-Z0-9_]*)", (PROJECT_ROOT / "conf" /
                                                            "serving.yaml").read_text()))
    for path in [*(PROJECT_ROOT / "serving").rglob("*.py"), *(PROJECT_ROOT / "conf" /
                                                               "data").glob("*.yaml")]:
        text = path.read_text()
        names |= set(re.findall(r"(?:secret|_env|environ\.get|getenv)\(\s*\"([A-Z_][A-Z0-9_]*)\"",
                                text))
        names |= set(re.findall(r"url_env:\s*([A-Z_][A-Z0-9_]*)", text))
    return names


def module_defines(module: str, attribute: str | None = None) -> bool:
    """`module` is a file of the project that assigns `attribute` at top level, or, without an
    attribute, is runnable with `python -m` (has a __main__ guard)."""
    path = PROJECT_ROOT / Path(*module.split(".")).with_suffix(".py")
    if not path.exists():
        return False
    tree = ast.parse(path.read_text())
    if attribute is None:
        return any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
                   for node in tree.body)
    return any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == attribute
                                                    for t in node.targets)
               for node in tree.body)


def missing_project_imports(program: str) -> list[str]:
    """Names a `python -c` program imports from the project (`from serving... import x`) that the
    code does not have; empty when all exist. Raises when it imports nothing of the project, so
    a check built on it cannot pass vacuously."""
    checked, missing = 0, []
    for node in ast.walk(ast.parse(program)):
        if isinstance(node, ast.ImportFrom) and node.module.startswith("serving"):
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)]
            checked += 1
    if not checked:
        raise AssertionError(f"the program imports nothing of the project: {program!r}")
    return missing
