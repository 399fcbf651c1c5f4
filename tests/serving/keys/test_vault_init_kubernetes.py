"""The vault-init Job's way to the proxy: `serving.vault_init --kubernetes-secret NAME` bootstraps
a real OpenBao and writes the AppRole credentials into the Secret the proxy Deployment reads.

The Kubernetes API is a stand-in (tests/support/kubernetes_api.py): no API server can run here.
It enforces the chart's Role (get/patch on the one Secret, create), so a write outside it fails.
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import hvac
import pytest

from serving import vault_init
from serving.kubernetes_secret import Cluster, KubernetesError, write_secret
from serving.vault_init import bootstrap, publish_credentials
from tests.support.kubernetes_api import serve_kubernetes_api
from tests.support.logging_state import structlog_restored  # noqa: F401  (fixture)
from tests.support.serving import child_env

SECRET = "valuation-vault-approle"
NAMESPACE = "valuation-test"


@pytest.fixture
def api():
    with serve_kubernetes_api(f"sa-{secrets.token_hex(8)}", NAMESPACE, {SECRET}) as server:
        yield server


def cluster_of(api) -> Cluster:
    return Cluster(api.url, api.namespace, api.token, ca_file=None)


def test_credentials_create_then_update_the_secret_and_log_in(api, bao, settings) -> None:
    first = bootstrap(bao.addr, bao.root_token, settings=settings)
    assert publish_credentials(first, cluster_of(api), SECRET) == "created"
    second = bootstrap(bao.addr, bao.root_token, settings=settings)
    api.secrets[SECRET]["data"]["kept"] = "a2VwdA=="  # a key someone else put there
    assert publish_credentials(second, cluster_of(api), SECRET) == "updated"

    stored = api.decoded(SECRET)
    assert (stored["role_id"], stored["secret_id"]) == (second.role_id, second.secret_id)
    assert stored["kept"] == "kept"  # merged, not replaced
    assert [verb for verb, _ in api.requests] == ["get", "create", "get", "patch"]
    # What the proxy would read from the Secret logs in to the real OpenBao.
    client = hvac.Client(url=bao.addr, timeout=2)
    client.auth.approle.login(role_id=stored["role_id"], secret_id=stored["secret_id"])
    assert client.is_authenticated() and client.token != bao.root_token


def test_a_secret_outside_the_role_is_refused_with_its_name(api) -> None:
    api.secrets["other"] = {"data": {}}
    with pytest.raises(KubernetesError) as refused:
        write_secret(cluster_of(api), "other", {"role_id": "r"})
    message = str(refused.value)
    assert "Secret other in namespace valuation-test" in message
    assert "get refused with HTTP 403" in message and 'cannot get resource "secrets"' in message


def test_a_wrong_token_and_an_unreachable_api_server_are_named(api) -> None:
    wrong = Cluster(api.url, api.namespace, "not-the-token", ca_file=None)
    with pytest.raises(KubernetesError, match="HTTP 401"):
        write_secret(wrong, SECRET, {"role_id": "r"})
    gone = Cluster("http://127.0.0.1:9", NAMESPACE, "t", ca_file=None)
    with pytest.raises(KubernetesError, match=r"API server http://127.0.0.1:9 unreachable"):
        write_secret(gone, SECRET, {"role_id": "r"}, timeout_s=2)


def test_in_cluster_reads_what_kubernetes_mounts(tmp_path) -> None:
    (tmp_path / "token").write_text("the-token\n")
    (tmp_path / "namespace").write_text("prod\n")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    cluster = Cluster.in_cluster(env, tmp_path)
    assert (cluster.api_url, cluster.namespace, cluster.token) == ("https://10.96.0.1:443",
                                                                   "prod", "the-token")
    assert cluster.ca_file == tmp_path / "ca.crt" and "the-token" not in repr(cluster)
    with pytest.raises(KubernetesError, match="not in a Kubernetes pod"):
        Cluster.in_cluster({}, tmp_path)
    with pytest.raises(KubernetesError, match="automountServiceAccountToken: true"):
        Cluster.in_cluster(env, tmp_path / "missing")


# The chart's command line, run as the Job runs it, against the real OpenBao. Only the pod's
# discovery of the API server is pointed at the stand-in (in a pod it is
# https://$KUBERNETES_SERVICE_HOST with the mounted CA and token). A child process: main() points
# structlog at its own stderr, which must not outlive the test.
JOB_WITH_STAND_IN_API = """
import os, sys
from serving import vault_init
from serving.kubernetes_secret import Cluster
stand_in = Cluster(os.environ["STAND_IN_API"], os.environ["STAND_IN_NAMESPACE"],
                   os.environ["STAND_IN_TOKEN"], ca_file=None)
vault_init.Cluster.in_cluster = classmethod(lambda cls: stand_in)
sys.exit(vault_init.main(sys.argv[1:]))
"""


def test_the_jobs_command_writes_the_secret(api, bao) -> None:
    env = {**child_env(), "VAULT_TOKEN": bao.root_token, "API_KEY": "job-seeded-key",
           "STAND_IN_API": api.url, "STAND_IN_NAMESPACE": api.namespace, "STAND_IN_TOKEN": api.token}
    done = subprocess.run([sys.executable, "-c", JOB_WITH_STAND_IN_API, "--kubernetes-secret",
                           SECRET, "--addr", bao.addr, "--wait", "10"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    stored = api.decoded(SECRET)
    assert done.stdout == ""  # no file was asked for
    assert stored["secret_id"] not in done.stdout + done.stderr
    assert bao.root_token not in done.stdout + done.stderr
    assert "vault_approle_secret_written" in done.stderr
    client = hvac.Client(url=bao.addr, timeout=2)
    client.auth.approle.login(role_id=stored["role_id"], secret_id=stored["secret_id"])
    assert client.is_authenticated()


def test_the_command_needs_somewhere_to_write(capsys, structlog_restored) -> None:  # noqa: F811
    assert vault_init.main(["--addr", "http://127.0.0.1:9"]) == 2
    assert "--out FILE and/or --kubernetes-secret NAME" in capsys.readouterr().err
