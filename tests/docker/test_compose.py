"""docker-compose.yaml, docker/Dockerfile and .env.example checked against what the code reads.

No Docker engine runs here, so the files are parsed: commands must name entry points that exist,
environment names must be ones the code reads, ports must agree, secrets must be ${VAR} only.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from packaging.requirements import Requirement

from tests.support.deployment import (
    SECRET_NAME,
    THIRD_PARTY_ENV,
    missing_project_imports,
    module_defines,
    names_read_by_code,
    tracking_server_env,
)
from valuation.artifact_store import is_object_store
from valuation.config import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / "docker" / "Dockerfile.dockerignore"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
OUR_IMAGE_SERVICES = ("tracking_server", "vault-init", "proxy", "worker")
VAR_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])[^}]*)?\}")
ONE_SHOT_SERVICES = ("vault-init", "minio-init")
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_USER",
                  "MINIO_ROOT_PASSWORD"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            values[match.group(1)] = match.group(2).split(" #")[0].strip()
    return values


def strings_in(node: object) -> list[str]:
    """Every string value (and key) of the parsed compose file: comments are not config."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (str(k), *strings_in(v))]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return [str(node)] if node is not None else []


def command_words(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(w) for w in command]


# ---- topology ------------------------------------------------------------------------------


def test_every_part_of_the_topology_is_a_service(services):
    assert set(services) == {"postgres", "minio", "minio-init", "tracking_server", "vault",
                             "vault-init", "redis", "proxy", "worker"}
    for name in OUR_IMAGE_SERVICES:
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile", name


def test_long_running_services_have_healthchecks(services):
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            assert service["restart"] == "no"  # one-shot
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name


def test_dependencies_wait_for_health(services):
    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("tracking_server") == {"postgres": "service_healthy",
                                             "minio-init": "service_completed_successfully"}
    assert conditions("minio-init") == {"minio": "service_healthy"}
    assert conditions("vault-init") == {"vault": "service_healthy"}
    assert conditions("proxy") == {"postgres": "service_healthy",  # the prediction store
                                   "tracking_server": "service_healthy",
                                   "redis": "service_healthy",
                                   "vault-init": "service_completed_successfully"}
    assert conditions("worker") == {"tracking_server": "service_healthy",
                                    "redis": "service_healthy"}


# ---- commands name real entry points -------------------------------------------------------


def test_proxy_runs_the_app_object_on_its_published_port(services):
    words = command_words(services["proxy"])
    assert words[0] == "uvicorn"
    module, attribute = words[1].split(":")
    assert module_defines(module, attribute), f"{words[1]} does not exist"
    port = words[words.index("--port") + 1]
    assert any(str(p).endswith(f":{port}") for p in services["proxy"]["ports"])
    assert f":{port}/health" in " ".join(services["proxy"]["healthcheck"]["test"])


def test_worker_and_vault_init_run_existing_modules(services):
    for name, module in (("worker", "serving.worker"), ("vault-init", "serving.vault_init")):
        words = command_words(services[name])
        assert words[:3] == ["python", "-m", module], name
        assert module_defines(module), f"{module} has no __main__ entry point"


def test_python_healthchecks_import_what_the_code_has(services):
    programs = {name: test[test.index("-c") + 1] for name, service in services.items()
                for test in [service.get("healthcheck", {}).get("test") or []]
                if "python" in test and "from serving" in " ".join(test)}
    assert programs, "no healthcheck program imports the project's code"
    for name, program in programs.items():
        assert not missing_project_imports(program), name


def test_proxy_reads_the_approle_file_vault_init_writes(services):
    words = command_words(services["vault-init"])
    written = words[words.index("--out") + 1]
    assert services["proxy"]["environment"]["VAULT_APPROLE_FILE"] == written
    volume = "vault-approle:" + str(Path(written).parent)
    assert volume in services["vault-init"]["volumes"]
    assert f"{volume}:ro" in services["proxy"]["volumes"]
    # The root token goes to the bootstrap only, never to the proxy or the worker.
    for name in ("proxy", "worker"):
        env = services[name]["environment"]
        assert not {"VAULT_TOKEN", "VAULT_DEV_ROOT_TOKEN"} & set(env), name


def test_tracking_server_uses_postgres_and_serves_artifacts(services):
    service = services["tracking_server"]
    words = command_words(service)
    assert words[:2] == ["mlflow", "server"] and "--serve-artifacts" in words
    store = service["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert store.startswith("postgresql://") and "@postgres:5432/" in store
    assert words[words.index("--port") + 1] == "${MLFLOW_PORT}"
    assert "tracking_server:${MLFLOW_PORT}" in words[words.index("--allowed-hosts") + 1]
    for name, value in tracking_server_env().items():  # as the dev stack runs it
        assert service["environment"][name] == value, name


def test_redis_requires_the_password_on_the_port_clients_use(services):
    words = command_words(services["redis"])
    assert words[words.index("--requirepass") + 1] == "${REDIS_PASSWORD}"
    assert words[words.index("--port") + 1] == "${REDIS_PORT}"
    for name in ("proxy", "worker"):
        env = services[name]["environment"]
        assert env["REDIS_PASSWORD"] == "${REDIS_PASSWORD}"
        assert env["REDIS_PORT"] == "${REDIS_PORT}" and env["REDIS_HOST"] == "${REDIS_HOST}"


def test_tracking_server_keeps_artifacts_in_the_bucket_minio_init_creates(services):
    tracking, init = services["tracking_server"], services["minio-init"]
    words = command_words(tracking)
    artifacts = urlparse(words[words.index("--artifacts-destination") + 1])
    assert artifacts.scheme == "s3" and artifacts.netloc == "${MLFLOW_S3_BUCKET}"
    assert is_object_store(artifacts.geturl())  # the scheme `make stack` and training check
    # The endpoint is the MinIO service, on the port it listens on.
    endpoint = urlparse(tracking["environment"]["MLFLOW_S3_ENDPOINT_URL"])
    minio_words = command_words(services["minio"])
    assert endpoint.hostname == "minio" and endpoint.hostname in services
    assert minio_words[:2] == ["server", "/data"]
    assert minio_words[minio_words.index("--address") + 1] == f":{endpoint.port}"
    # minio-init makes that bucket on that server, and the user whose keys the server holds.
    admin = urlparse(init["environment"]["MC_HOST_minio"])
    assert (admin.hostname, admin.port) == (endpoint.hostname, endpoint.port)
    assert (admin.username, admin.password) == ("${MINIO_ROOT_USER}", "${MINIO_ROOT_PASSWORD}")
    assert init["environment"]["MLFLOW_S3_BUCKET"] == "${MLFLOW_S3_BUCKET}"
    assert init["environment"]["S3_ACCESS_KEY_ID"] == tracking["environment"]["AWS_ACCESS_KEY_ID"]
    assert (init["environment"]["S3_SECRET_ACCESS_KEY"]
            == tracking["environment"]["AWS_SECRET_ACCESS_KEY"] == "${AWS_SECRET_ACCESS_KEY}")
    script = " ".join(command_words(init))
    assert 'mc mb --ignore-existing "minio/$$MLFLOW_S3_BUCKET"' in script
    assert "mc admin user add minio \"$$S3_ACCESS_KEY_ID\"" in script
    # The server serves the artifacts (no --default-artifact-root: clients get mlflow-artifacts:
    # URIs), so only it, MinIO and the bootstrap hold S3 credentials; MLflow needs boto3 for S3,
    # which the image installs with the runtime dependencies.
    assert "--serve-artifacts" in words and "--default-artifact-root" not in words
    for name, service in services.items():
        if S3_CREDENTIALS & set(service.get("environment") or {}):
            assert name in ("tracking_server", "minio", "minio-init"), name
    runtime = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(Requirement(dep).name == "boto3" for dep in runtime)


# ---- environment names match the code ------------------------------------------------------


def test_our_services_only_set_variables_the_code_reads(services):
    known = names_read_by_code() | THIRD_PARTY_ENV
    for name in OUR_IMAGE_SERVICES:
        unknown = set(services[name].get("environment", {})) - known
        assert not unknown, f"{name} sets {unknown}, which nothing reads"


def test_proxy_and_worker_get_what_the_code_needs(services):
    needed = {"MLFLOW_TRACKING_URI", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"}
    assert needed <= set(services["worker"]["environment"])
    assert needed | {"VAULT_ADDR", "VAULT_PORT", "VAULT_APPROLE_FILE"} <= set(
        services["proxy"]["environment"])
    assert {"MLFLOW_TRACKING_URI", "REDIS_HOST", "REDIS_PORT", "VAULT_ADDR", "VAULT_PORT",
            "VAULT_APPROLE_FILE", "LOG_LEVEL", "MODEL_SERVER_WORKERS"} <= names_read_by_code()


def test_env_example_points_at_the_compose_services(env_example, services):
    assert env_example["MLFLOW_TRACKING_URI"] == f"http://tracking_server:{env_example['MLFLOW_PORT']}"
    assert env_example["REDIS_HOST"] in services
    assert env_example["VAULT_ADDR"].removeprefix("http://") in services


# ---- secrets -------------------------------------------------------------------------------


def test_no_secret_values_in_the_compose_file(services, env_example):
    for service_name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(key):
                assert VAR_REF.sub("", value) == "", f"{service_name}.{key} is not a ${{VAR}}"
            credentials = re.match(r"^\w+(?:\+\w+)?://([^@/]*)@", value)
            if credentials:  # user:password in a URL
                assert VAR_REF.sub("", credentials.group(1)) in ("", ":"), \
                    f"{service_name}.{key} has literal credentials"
    text = COMPOSE.read_text()
    for word in (w for c in services.values() for w in command_words(c)):
        assert not re.search(r"(password|token|secret)=\S", word, re.I), word
    for name, value in env_example.items():
        if SECRET_NAME.search(name) and value:
            assert value not in text, f"the example value of {name} is in the compose file"


def test_env_example_documents_every_variable_compose_uses(env_example, compose):
    used = {match[0] for text in strings_in(compose) for match in VAR_REF.findall(text)}
    documented = set(env_example) | set(re.findall(r"^#\s*([A-Z_][A-Z0-9_]*)=",
                                                   ENV_EXAMPLE.read_text(), re.M))
    assert used, "no ${VAR} references found"
    assert not used - documented, f"not in .env.example: {sorted(used - documented)}"
    # The specification's names are kept.
    assert {"MLFLOW_PORT", "MLFLOW_TRACKING_URI", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD",
            "VAULT_ADDR", "VAULT_PORT", "VAULT_DEV_ROOT_TOKEN", "API_KEY"} <= set(env_example)


def test_required_variables_have_no_defaults_in_compose(compose):
    # A missing secret must fail loudly, not silently become a default.
    refs = [m for text in strings_in(compose) for m in VAR_REF.findall(text)]
    assert refs
    for name, operator in refs:
        if SECRET_NAME.search(name):
            assert operator == "", f"${{{name}}} must not have a default"


# ---- image ---------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_runs_unprivileged():
    stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", DOCKERFILE.read_text(), re.M | re.I)
    assert len(stages) >= 2 and stages[0].lower() == "builder"
    final_stage = re.split(r"^FROM\s", DOCKERFILE.read_text(), flags=re.M)[-1]
    assert "COPY --from=builder /opt/venv /opt/venv" in final_stage
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "pip install" not in final_stage  # nothing is built in the runtime image


def test_image_never_contains_data_or_secrets():
    ignored = DOCKERIGNORE.read_text().splitlines()
    for pattern in ("data/", "**/*.csv", ".env", "*.db", "mlartifacts/"):
        assert pattern in ignored, pattern
