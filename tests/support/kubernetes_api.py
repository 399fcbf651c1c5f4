"""A stand-in for the Kubernetes API server's Secret endpoints, on loopback over plain HTTP.

No Kubernetes API server can run on this machine (no kind, k3s or etcd), so the vault-init
Job's Secret write is tested against this: it speaks the same paths, verbs, Status errors and
merge-patch semantics (`stringData` merged into base64 `data`), checks the bearer token, and
enforces the chart's Role (get/patch on the named Secrets only, create on any).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.http_server import serve_on_loopback

SECRETS_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/secrets(?:/(?P<name>[^/]+))?$")


@dataclass
class FakeKubernetesApi:
    url: str
    token: str
    namespace: str
    writable: set[str]  # Secret names the Role allows get/patch on
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def decoded(self, name: str) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in self.secrets[name]["data"].items()}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}


def _encode(string_data: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()}


@contextmanager
def serve_kubernetes_api(token: str, namespace: str, writable: set[str]) -> Iterator[FakeKubernetesApi]:
    state = FakeKubernetesApi(url="", token=token, namespace=namespace, writable=set(writable))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle("get")

        def do_POST(self) -> None:
            self._handle("create")

        def do_PATCH(self) -> None:
            self._handle("patch")

        def _handle(self, verb: str) -> None:
            state.requests.append((verb, self.path))
            match = SECRETS_PATH.match(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._answer(401, _status(401, "Unauthorized", "Unauthorized"))
            if not match or match["ns"] != state.namespace:
                return self._answer(403, _status(403, "Forbidden", f"{verb} {self.path} forbidden"))
            name = match["name"] or (json.loads(body)["metadata"]["name"] if body else "")
            if verb != "create" and name not in state.writable:
                return self._answer(403, _status(
                    403, "Forbidden", f'secrets "{name}" is forbidden: User cannot {verb} '
                    f'resource "secrets" in the namespace "{state.namespace}"'))
            if verb == "get":
                if name not in state.secrets:
                    return self._answer(404, _status(404, "NotFound", f'secrets "{name}" not found'))
                return self._answer(200, state.secrets[name])
            if verb == "create":
                document = json.loads(body)
                if name in state.secrets:
                    return self._answer(409, _status(409, "AlreadyExists", "already exists"))
                state.secrets[name] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                       "metadata": document["metadata"],
                                       "data": _encode(document.get("stringData", {}))}
                return self._answer(201, state.secrets[name])
            if self.headers.get("Content-Type") != "application/merge-patch+json":
                return self._answer(415, _status(415, "UnsupportedMediaType", "patch type"))
            patch = json.loads(body)
            state.secrets[name]["data"].update(_encode(patch.get("stringData", {})))
            return self._answer(200, state.secrets[name])

        def _answer(self, code: int, document: dict[str, Any]) -> None:
            payload = json.dumps(document).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    with serve_on_loopback(Handler) as url:
        state.url = url
        yield state
