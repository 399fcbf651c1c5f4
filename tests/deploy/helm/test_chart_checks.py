"""The chart's offline CI checks: helm lint --strict, every rendered manifest against Kubernetes
1.30's schemas (strict: unknown fields are errors), checkov's Kubernetes policies, and the values
schema refusing bad values with the key named."""

from __future__ import annotations

import json
import re
import subprocess

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from serving import ratelimit
from serving.roles import ROLES
from tests.deploy.helm.conftest import CHART, VALUES_FILES
from valuation.config import PROJECT_ROOT

KUBERNETES_VERSION = "1.30.0"
# Kinds whose schemas come from a CRD, not from Kubernetes: kubernetes-validate has none.
CRD_KINDS = {"ServiceMonitor"}  # monitoring.coreos.com (Prometheus Operator)
CHECKOV = PROJECT_ROOT / ".venv-checkov" / "bin" / "checkov"
# Each skipped checkov check, and why it does not apply.
CHECKOV_SKIPS = {
    # The code reads its secrets from the environment (serving.settings.secret, MLflow's
    # MLFLOW_BACKEND_STORE_URI, boto3's AWS_*), as under compose. They come from Secrets by
    # secretKeyRef, never from values; the containers have no shell to read another's env.
    "CKV_K8S_35": "secrets as environment variables",
    # The image is pinned by tag (never latest: CKV_K8S_14 passes); image.digest pins it by
    # digest, which the "everything" values file sets and passes with. A default digest cannot
    # exist before the image is built.
    "CKV_K8S_43": "image by digest",
}


@pytest.mark.parametrize("values_name", VALUES_FILES)
def test_chart_lints_strictly(values_name):
    values_file = VALUES_FILES[values_name]
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # severity 1 is information (e.g. "icon is recommended"); 2 and 3 are warnings and errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values_name", VALUES_FILES)
def test_every_manifest_is_valid_for_kubernetes_1_30(renderings, values_name):
    manifests = renderings[values_name].manifests
    assert len(manifests) >= 10
    for manifest in manifests:
        if manifest["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field(defaults):
    # Proves the check above would fail: a misspelt field is an error, not ignored.
    deployment = json.loads(json.dumps(defaults.get("Deployment", "proxy")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_checkov_finds_nothing(renderings, tmp_path):
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make install`"
    for name, rendered in renderings.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(rendered.manifests))
    result = subprocess.run(
        [str(CHECKOV), "--framework", "kubernetes", "--directory", str(tmp_path), "--output",
         "json", "--quiet", "--compact", "--skip-download",
         "--skip-check", ",".join(CHECKOV_SKIPS)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.stdout, result.stderr[-2000:]
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 100 and summary["parsing_errors"] == 0, summary


@pytest.mark.parametrize(("values", "named"), [
    ({"proxy": {"replica": 3}}, "'replica' not allowed"),  # a misspelt key
    ({"redis": {"host": ""}}, "/redis/host"),
    ({"vault": {"addr": "vault:8200"}}, "/vault/addr"),
    ({"tracking": {"artifactsDestination": "/mlartifacts"}}, "/tracking/artifactsDestination"),
    ({"proxy": {"rateLimitPerKey": "100 per second"}}, "/proxy/rateLimitPerKey"),
    ({"proxy": {"rateLimitPerRole": {"admin": "100 per second"}}}, "/proxy/rateLimitPerRole/admin"),
    ({"proxy": {"rateLimitPerRole": {"admins": None}}}, "'admins' not allowed"),
])
def test_bad_values_fail_with_the_key_named(values, named):
    with pytest.raises(helm.HelmValuesError, match=re.escape(named)):
        helm.Chart.load(CHART).render(values, name="valuation", namespace="valuation-test")


def test_the_schema_takes_the_rate_units_and_roles_the_proxy_takes():
    schema = json.loads((CHART / "values.schema.json").read_text())
    proxy = schema["properties"]["proxy"]["properties"]
    assert proxy["rateLimitPerKey"] == {"$ref": "#/definitions/rate"}
    assert set(proxy["rateLimitPerRole"]["properties"]) == set(ROLES)
    pattern = schema["definitions"]["rate"]["pattern"]
    units = re.search(r"/\(([^)]*)\)", pattern).group(1).split("|")
    assert set(units) == set(ratelimit._UNITS)
    for text in ("", "100/second", "5/m", "1/days"):
        assert re.fullmatch(pattern, text) and (ratelimit.parse_rate(text) or text == "")
