"""The Helm chart rendered once per session for each values file the checks cover, offline (Helm
is embedded in helm-python-sdk: no binary, no cluster)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from valuation.config import PROJECT_ROOT

CHART = PROJECT_ROOT / "deploy" / "helm" / "valuation"
RELEASE, NAMESPACE = "valuation", "valuation-test"
# defaults: values.yaml alone; ha: three proxies and the HPA; everything: every optional part on.
VALUES_FILES = {"defaults": None, "ha": CHART / "ci" / "ha-values.yaml",
                "everything": CHART / "ci" / "everything-values.yaml"}


@dataclass(frozen=True)
class Rendered:
    """One rendering: every manifest, and lookups by kind and name."""

    manifests: list[dict]

    def of_kind(self, kind: str) -> list[dict]:
        return [m for m in self.manifests if m["kind"] == kind]

    def get(self, kind: str, component: str) -> dict:
        name = f"{RELEASE}-{component}"
        found = [m for m in self.of_kind(kind) if m["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
        return found[0]

    def container(self, kind: str, component: str) -> dict:
        (container,) = self.get(kind, component)["spec"]["template"]["spec"]["containers"]
        return container


def render(values_file: Path | None) -> Rendered:
    values = yaml.safe_load(values_file.read_text()) if values_file else {}
    templates = helm.Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE)
    manifests = [doc for path, text in sorted(templates.items()) if path.endswith(".yaml")
                 for doc in yaml.safe_load_all(text) if doc]
    return Rendered(manifests)


@pytest.fixture(scope="session")
def renderings() -> dict[str, Rendered]:
    return {name: render(path) for name, path in VALUES_FILES.items()}


@pytest.fixture(scope="session")
def defaults(renderings) -> Rendered:
    return renderings["defaults"]


@pytest.fixture(scope="session")
def everything(renderings) -> Rendered:
    return renderings["everything"]
