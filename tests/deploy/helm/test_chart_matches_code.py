"""The chart's ports, commands, environment names, probe paths and writable places agree with the
code and the image, as tests/docker/test_compose.py checks for compose; and its hardening holds
in every rendering."""

from __future__ import annotations

import re
import tomllib
from pathlib import PurePosixPath

import pytest
import yaml

from serving.api import health
from serving.settings import ServingSettings, get_settings
from tests.deploy.helm.conftest import CHART, RELEASE, VALUES_FILES
from tests.support.deployment import (
    SECRET_NAME,
    THIRD_PARTY_ENV,
    missing_project_imports,
    module_defines,
    names_read_by_code,
    tracking_server_env,
)
from tests.support.logging_state import structlog_restored  # noqa: F401  (fixture)
from valuation.config import PROJECT_ROOT, load_config

DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"
WORKLOADS = (("Deployment", "proxy"), ("Deployment", "worker"), ("Deployment", "tracking"),
             ("Job", "vault-init"))


def env_of(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def mounts_of(container: dict) -> set[str]:
    return {mount["mountPath"] for mount in container.get("volumeMounts", [])}


def pod_specs(rendered) -> list[dict]:
    return [m["spec"]["template"]["spec"] for m in rendered.manifests
            if m["kind"] in ("Deployment", "Job")]


def labels_of(peer: dict) -> dict:
    return peer["podSelector"]["matchLabels"]


# ---- commands name real entry points, ports and probe paths agree ----------------------------


def test_proxy_runs_the_app_on_the_port_its_probes_service_and_policy_use(defaults):
    proxy = defaults.container("Deployment", "proxy")
    words = proxy["command"]
    assert words[0] == "uvicorn"
    module, attribute = words[1].split(":")
    assert module_defines(module, attribute), f"{words[1]} does not exist"
    port = int(words[words.index("--port") + 1])
    (container_port,) = proxy["ports"]
    assert container_port == {"name": "http", "containerPort": port, "protocol": "TCP"}
    routes = {route.path for route in health.router.routes}
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert proxy["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert {"/health", "/ready", "/metrics"} <= routes
    (service_port,) = defaults.get("Service", "proxy")["spec"]["ports"]
    assert service_port["targetPort"] == "http"
    (rule,) = defaults.get("NetworkPolicy", "proxy")["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_proxy_start_up_window_covers_model_server_start_up(defaults):
    # Loading the champion shares the pod's CPU: liveness must not start before it may finish.
    probe = defaults.container("Deployment", "proxy")["startupProbe"]
    window_s = probe["periodSeconds"] * probe["failureThreshold"]
    assert window_s >= float(get_settings().model_server.startup_timeout_s)


def test_worker_and_vault_init_run_existing_modules(everything):
    for kind, name, module in (("Deployment", "worker", "serving.worker"),
                               ("Job", "vault-init", "serving.vault_init")):
        words = everything.container(kind, name)["command"]
        assert words[:3] == ["python", "-m", module], name
        assert module_defines(module), f"{module} has no __main__ entry point"


def test_worker_probes_import_what_the_code_has(defaults):
    worker = defaults.container("Deployment", "worker")
    for probe in ("livenessProbe", "readinessProbe"):
        command = worker[probe]["exec"]["command"]
        assert command[:2] == ["python", "-c"]
        assert not missing_project_imports(command[2]), probe


def test_tracking_server_serves_artifacts_on_its_port_with_the_store_from_a_secret(defaults):
    tracking = defaults.container("Deployment", "tracking")
    words = tracking["command"]
    assert words[:2] == ["mlflow", "server"] and "--serve-artifacts" in words
    assert words[words.index("--artifacts-destination") + 1].startswith("s3://")
    port = int(words[words.index("--port") + 1])
    assert tracking["ports"][0]["containerPort"] == port
    store = env_of(tracking)["MLFLOW_BACKEND_STORE_URI"]
    assert set(store) == {"name", "valueFrom"}
    for name, value in tracking_server_env().items():  # as the dev stack runs it
        assert env_of(tracking)[name]["value"] == value, name
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert tracking[probe]["httpGet"] == {"path": "/health", "port": "http"}
    # Clients reach it by its Service name, which its Host-header check must allow.
    service = defaults.get("Service", "tracking")
    assert service["spec"]["ports"][0]["port"] == port
    uri = f"http://{service['metadata']['name']}:{port}"
    allowed = words[words.index("--allowed-hosts") + 1].split(",")
    assert f"{service['metadata']['name']}:{port}" in allowed
    for name in ("proxy", "worker"):
        assert env_of(defaults.container("Deployment", name))["MLFLOW_TRACKING_URI"]["value"] == uri


# ---- environment names match the code ------------------------------------------------------


def test_containers_only_set_variables_the_code_reads(everything):
    known = names_read_by_code() | THIRD_PARTY_ENV
    for kind, name in WORKLOADS:
        unknown = set(env_of(everything.container(kind, name))) - known
        assert not unknown, f"{name} sets {unknown}, which nothing reads"


def test_proxy_and_worker_get_what_the_code_needs(defaults):
    needed = {"MLFLOW_TRACKING_URI", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"}
    assert needed <= set(env_of(defaults.container("Deployment", "worker")))
    proxy = env_of(defaults.container("Deployment", "proxy"))
    assert needed | {"VAULT_ADDR", "VAULT_PORT", "VAULT_ROLE_ID", "VAULT_SECRET_ID"} <= set(proxy)
    # the prediction store: written by the proxy, read by the worker's monitoring
    assert "PREDICTION_STORE_URL" in proxy
    assert "PREDICTION_STORE_URL" in env_of(defaults.container("Deployment", "worker"))
    # The root token goes to the bootstrap Job only.
    for name in ("proxy", "worker", "tracking"):
        env = env_of(defaults.container("Deployment", name))
        assert not {"VAULT_TOKEN", "VAULT_DEV_ROOT_TOKEN"} & set(env), name


@pytest.mark.parametrize("values_name", ["defaults", "everything"])
def test_proxy_reads_the_rate_limits_the_values_set(renderings, values_name, monkeypatch):
    proxy = env_of(renderings[values_name].container("Deployment", "proxy"))
    for name in ("RATE_LIMIT_PER_KEY", "RATE_LIMIT_PER_ROLE"):
        monkeypatch.setenv(name, proxy[name]["value"])
    limits = ServingSettings.from_config(load_config(config_name="serving")).rate_limit
    expected = yaml.safe_load((CHART / "values.yaml").read_text())["proxy"]
    if VALUES_FILES[values_name]:
        expected |= yaml.safe_load(VALUES_FILES[values_name].read_text()).get("proxy", {})
    assert (limits.per_key or None) == (expected["rateLimitPerKey"] or None)  # "": no limit
    assert limits.per_role == expected["rateLimitPerRole"]


def test_secrets_come_from_secrets_only(renderings):
    credentials = {"MLFLOW_BACKEND_STORE_URI", "VALUATION_DB_URL", "AWS_ACCESS_KEY_ID",
                   "PREDICTION_STORE_URL"}
    checked = set()
    for rendered in renderings.values():
        for spec in pod_specs(rendered):
            for var, item in env_of(spec["containers"][0]).items():
                if SECRET_NAME.search(var) or var in credentials:
                    assert "secretKeyRef" in item.get("valueFrom", {}), var
                    checked.add(var)
    assert {"REDIS_PASSWORD", "VAULT_SECRET_ID", "VAULT_TOKEN", "API_KEY"} | credentials <= checked
    assert not any(m["kind"] == "Secret" for r in renderings.values() for m in r.manifests)


def test_values_files_hold_no_secret_values():
    # Only Secrets' names (…Secret, …Secrets) and the keys in them (…Key): a key named like a
    # secret holding anything else, or a URL with credentials, would be a secret in values.
    def leaves(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, f"{path}.{key}")
        else:
            yield path, node

    for path in [CHART / "values.yaml", *filter(None, VALUES_FILES.values())]:
        for key, value in leaves(yaml.safe_load(path.read_text())):
            leaf = key.rsplit(".", 1)[-1]
            if re.search(r"password|token|secret|apikey", leaf, re.I):
                assert leaf.endswith(("Key", "Secret", "Secrets")), f"{path.name}: {key}"
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(value)), f"{path.name}: {key}"


# ---- the image ------------------------------------------------------------------------------


def test_chart_runs_the_dockerfile_image_as_its_user(defaults):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version
    uid = int(re.search(r"useradd [^\n]*--uid (\d+)", DOCKERFILE.read_text()).group(1))
    for spec in pod_specs(defaults):
        assert spec["securityContext"]["runAsUser"] == uid
        assert spec["containers"][0]["image"].endswith(f":{version}")


def test_writable_places_are_empty_dirs_where_the_code_writes(everything):
    proxy = everything.container("Deployment", "proxy")
    env = env_of(proxy)
    mounts = mounts_of(proxy)
    assert {"/tmp", env["MODEL_SERVER_RUN_DIR"]["value"],
            str(PurePosixPath(env["AUDIT_LOG_PATH"]["value"]).parent)} <= mounts
    assert "MODEL_SERVER_RUN_DIR=/app/.stack/model-servers" in DOCKERFILE.read_text()
    # The vault-init Job writes a Secret through the API, no file (so no volume but /tmp).
    assert "--out" not in everything.container("Job", "vault-init")["command"]
    for kind, name in WORKLOADS:
        assert "/tmp" in mounts_of(everything.container(kind, name)), name


# ---- hardening ------------------------------------------------------------------------------


@pytest.mark.parametrize("values_name", VALUES_FILES)
def test_every_pod_is_hardened(renderings, values_name):
    specs = pod_specs(renderings[values_name])
    assert specs
    for spec in specs:
        # Only the vault-init Job talks to the Kubernetes API (test_vault_init_job_...).
        if spec["containers"][0]["name"] != "vault-init":
            assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            resources = container["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    for account in renderings[values_name].of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_ha_runs_three_proxies_scaled_by_the_hpa_on_cpu(renderings, defaults):
    ha = renderings["ha"]
    assert "replicas" not in ha.get("Deployment", "proxy")["spec"]  # the HPA owns the count
    hpa = ha.get("HorizontalPodAutoscaler", "proxy")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": f"{RELEASE}-proxy"}
    assert hpa["minReplicas"] == 3 and hpa["maxReplicas"] > 3
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    # Training scales on its own: the worker is a Deployment of its own.
    assert ha.get("Deployment", "worker")["spec"]["replicas"] == 2
    assert defaults.get("Deployment", "proxy")["spec"]["replicas"] == 2
    assert not defaults.of_kind("HorizontalPodAutoscaler")


def test_rollouts_and_disruptions_keep_ready_proxies(defaults):
    proxy = defaults.get("Deployment", "proxy")
    assert proxy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = defaults.get("PodDisruptionBudget", "proxy")["spec"]
    assert pdb["selector"]["matchLabels"] == proxy["spec"]["selector"]["matchLabels"]


def test_network_policies_admit_only_the_clients_of_each_service(everything):
    proxy_labels = everything.get("Deployment", "proxy")["spec"]["selector"]["matchLabels"]
    worker_labels = everything.get("Deployment", "worker")["spec"]["selector"]["matchLabels"]
    (tracking_rule,) = everything.get("NetworkPolicy", "tracking")["spec"]["ingress"]
    peers = [labels_of(peer) for peer in tracking_rule["from"]]
    assert peers[:2] == [proxy_labels, worker_labels]
    assert peers[2]["valuation.example/tracking-client"] == "true"
    (redis_rule,) = everything.get("NetworkPolicy", "redis")["spec"]["ingress"]
    assert [labels_of(peer) for peer in redis_rule["from"]] == [proxy_labels, worker_labels]
    no_ingress = everything.get("NetworkPolicy", "no-ingress")["spec"]
    assert "ingress" not in no_ingress and no_ingress["policyTypes"] == ["Ingress"]
    components = {e["key"]: e["values"] for e in no_ingress["podSelector"]["matchExpressions"]}
    assert components["app.kubernetes.io/component"] == ["worker", "vault-init"]
    # Every pod the chart runs is selected by a policy.
    selected = {"proxy", "tracking", "worker", "vault-init"}
    assert {spec["containers"][0]["name"] for spec in pod_specs(everything)} == selected


def test_service_monitor_scrapes_the_proxy_metrics_port(everything, defaults):
    (monitor,) = everything.of_kind("ServiceMonitor")
    service = everything.get("Service", "proxy")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics",
                                             "interval": "30s"}]
    assert not defaults.of_kind("ServiceMonitor")


# ---- the vault-init Job writes the proxy's AppRole Secret ------------------------------------


def hook_phases(manifest: dict) -> set[str]:
    return set(manifest["metadata"]["annotations"]["helm.sh/hook"].split(","))


def test_vault_init_job_writes_the_secret_the_proxy_reads(everything, monkeypatch, capsys,
                                                          structlog_restored):  # noqa: F811
    from serving import vault_init

    job = everything.get("Job", "vault-init")
    words = job["spec"]["template"]["spec"]["containers"][0]["command"]
    secret_name = words[words.index("--kubernetes-secret") + 1]
    proxy_env = env_of(everything.container("Deployment", "proxy"))
    refs = {name: proxy_env[name]["valueFrom"]["secretKeyRef"]
            for name in ("VAULT_ROLE_ID", "VAULT_SECRET_ID")}
    assert {ref["name"] for ref in refs.values()} == {secret_name}
    # The code behind the Job's flag writes the credentials document's keys into that Secret:
    # the keys the proxy reads are among them.
    written = vault_init.BootstrapResult("r", "s", "role", "policy", "approle", "secret",
                                         "keys", None).credentials_document()
    assert {ref["key"] for ref in refs.values()} <= set(written)
    # The module takes the Job's arguments and goes for the pod's Kubernetes credentials (here,
    # outside a pod, it stops there, before touching Vault).
    monkeypatch.setenv("VAULT_TOKEN", "root-token-never-used")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert vault_init.main([*words[3:], "--addr", "http://127.0.0.1:9"]) == 1
    assert "not in a Kubernetes pod" in capsys.readouterr().err
    # Before install/upgrade: the Secret exists before any proxy pod starts.
    assert hook_phases(job) == {"pre-install", "pre-upgrade"}


def test_vault_init_job_alone_may_write_that_one_secret(everything, defaults):
    job = everything.get("Job", "vault-init")
    pod = job["spec"]["template"]["spec"]
    account = pod["serviceAccountName"]
    proxy_env = env_of(everything.container("Deployment", "proxy"))
    secret_name = proxy_env["VAULT_ROLE_ID"]["valueFrom"]["secretKeyRef"]["name"]
    assert pod["automountServiceAccountToken"] is True
    assert account == f"{RELEASE}-vault-init"
    # Its own ServiceAccount (token not mounted by default), Role and RoleBinding.
    sa = everything.get("ServiceAccount", "vault-init")
    assert sa["automountServiceAccountToken"] is False
    role = everything.get("Role", "vault-init")
    binding = everything.get("RoleBinding", "vault-init")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                    "namespace": job["metadata"]["namespace"]}]
    named, create = role["rules"]
    assert named == {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret_name],
                     "verbs": ["get", "patch"]}
    # RBAC cannot restrict create by name; create alone reads and changes nothing existing.
    assert create == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}
    # They exist only while the hooks run: made before the Job, deleted when the hooks succeed.
    for manifest in (sa, role, binding):
        annotations = manifest["metadata"]["annotations"]
        assert hook_phases(manifest) == hook_phases(job)
        assert int(annotations["helm.sh/hook-weight"]) < int(
            job["metadata"]["annotations"]["helm.sh/hook-weight"])
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    # No other pod uses that account or mounts a token; nothing of it without vault.init.
    for spec in pod_specs(everything):
        if spec["containers"][0]["name"] != "vault-init":
            assert spec["serviceAccountName"] != account
    assert not defaults.of_kind("Role") and not defaults.of_kind("RoleBinding")


def test_vault_init_refuses_secret_keys_it_does_not_write():
    import helm_python as helm

    values = {"vault": {"init": {"enabled": True}, "approle": {"roleIdKey": "id"}}}
    with pytest.raises(Exception, match="role_id and secret_id"):
        helm.Chart.load(CHART).render(values, name=RELEASE, namespace="valuation-test")
