"""Write one Kubernetes Secret from inside a pod, with the pod's own service-account token.

The Helm chart's vault-init Job (`python -m serving.vault_init --kubernetes-secret NAME`) puts
the proxy's AppRole credentials in the Secret the proxy Deployment reads. Its Role may get and
patch that one Secret and create Secrets (Kubernetes RBAC cannot limit `create` to a name), and
lives only while the Job runs. Plain HTTPS to the API server (the in-cluster address, CA and
token every pod is given): no Kubernetes client library for three requests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# Where Kubernetes mounts a pod's service-account token, CA and namespace.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"


class KubernetesError(RuntimeError):
    """The API server could not be reached or refused the write; the message says which Secret."""


@dataclass(frozen=True)
class Cluster:
    """The API server as a pod sees it."""

    api_url: str
    namespace: str
    token: str = field(repr=False)
    ca_file: Path | None = None  # None: plain HTTP (only a test's stand-in API server)

    @classmethod
    def in_cluster(cls, environ: Mapping[str, str] = os.environ,
                   account_dir: Path = SERVICE_ACCOUNT_DIR) -> Cluster:
        """The API server, token, CA and namespace Kubernetes gives every pod that mounts a
        service-account token."""
        host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise KubernetesError("not in a Kubernetes pod: KUBERNETES_SERVICE_HOST and "
                                  "KUBERNETES_SERVICE_PORT are unset")
        try:
            token = (account_dir / "token").read_text().strip()
            namespace = (account_dir / "namespace").read_text().strip()
        except OSError as error:
            raise KubernetesError(
                f"no service-account token in {account_dir} ({error.strerror}): the pod needs "
                "automountServiceAccountToken: true and a service account allowed to write the "
                "Secret") from error
        host = f"[{host}]" if ":" in host else host  # an IPv6 service address
        return cls(f"https://{host}:{port}", namespace, token, account_dir / "ca.crt")


def write_secret(cluster: Cluster, name: str, string_data: Mapping[str, str],
                 timeout_s: float = 10.0) -> str:
    """Create Secret `name` in the pod's namespace with `string_data`, or merge `string_data`
    into it when it exists (other keys are kept). Returns "created" or "updated"."""
    where = f"Secret {name} in namespace {cluster.namespace}"
    path = f"/api/v1/namespaces/{cluster.namespace}/secrets"
    verify: str | bool = str(cluster.ca_file) if cluster.ca_file is not None else False
    headers = {"Authorization": f"Bearer {cluster.token}", "Accept": "application/json"}
    with httpx.Client(base_url=cluster.api_url, headers=headers, verify=verify,
                      timeout=timeout_s) as client:
        try:
            found = client.get(f"{path}/{name}")
            if found.status_code == 404:
                body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": name}, "stringData": dict(string_data)}
                answer, action, verb = client.post(path, json=body), "created", "create"
            elif found.status_code == 200:
                answer = client.patch(f"{path}/{name}", json={"stringData": dict(string_data)},
                                      headers={"Content-Type": MERGE_PATCH})
                action, verb = "updated", "patch"
            else:
                answer, verb = found, "get"
        except httpx.HTTPError as error:
            raise KubernetesError(f"{where}: API server {cluster.api_url} unreachable "
                                  f"({type(error).__name__}: {error})") from error
    if answer.status_code not in (200, 201):
        raise KubernetesError(f"{where}: {verb} refused with HTTP {answer.status_code}: "
                              f"{_reason(answer)}")
    return action


def _reason(answer: httpx.Response) -> str:
    """The API server's Status message (it names the missing permission on a 403)."""
    try:
        return str(answer.json().get("message") or answer.text[:300])
    except ValueError:
        return answer.text[:300]
