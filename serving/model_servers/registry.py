"""What the registry says about a version: its metadata, validation rules and an example request,
and which version an alias points to."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.model_servers.served import ModelLoadError
from serving.model_servers.timeouts import describe_error
from valuation.model_runtime.validation import ValidationRules


@dataclass(frozen=True)
class VersionInfo:
    metadata: dict[str, Any]
    rules: ValidationRules
    smoke_payload: dict[str, Any]  # a body for POST /invocations that must yield a prediction


def read_version_info(name: str, version: str, tracking_uri: str) -> VersionInfo:
    """Metadata, validation rules and an example request of `models:/name/version`."""
    from mlflow import MlflowClient
    from mlflow.models import Model

    uri = f"models:/{name}/{version}"
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="model-info-") as tmp:
        try:
            location = version_artifact_location(client, name, version)
            model = Model.load(_download(f"{location}/MLmodel", tmp, tracking_uri))
        except Exception as exc:  # MLflow raises many types here; all mean "cannot read it"
            raise ModelLoadError(f"cannot read {uri}/MLmodel: {describe_error(exc)}") from exc
        metadata = dict(model.metadata or {})
        if "validation_rules" not in metadata:
            raise ModelLoadError(
                f"{uri} has no 'validation_rules' in its metadata; it was not logged by this "
                "project's pipeline and its inputs could not be checked"
            )
        try:
            rules = ValidationRules.from_dict(metadata["validation_rules"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{uri} has malformed validation_rules: {exc!r}") from exc
        payload = _logged_serving_example(model, location, uri, tracking_uri, tmp)
    return VersionInfo(metadata=metadata, rules=rules,
                       smoke_payload=payload or example_payload(rules))


def version_artifact_location(client: Any, name: str, version: str) -> str:
    """Where the files of a registered version live.

    Resolved with our own client because MLflow resolves `models:/name/version` artifact URIs
    against the process-global registry URI, whatever tracking URI is passed in."""
    location = str(client.get_model_version_download_uri(name, str(version))).rstrip("/")
    if location.startswith("models:/"):  # a logged model id (MLflow 3): its artifact location
        location = str(client.get_logged_model(location.removeprefix("models:/")).
                       artifact_location).rstrip("/")
    return location


def _download(artifact_uri: str, tmp: str, tracking_uri: str) -> str:
    from mlflow.artifacts import download_artifacts

    return download_artifacts(artifact_uri=artifact_uri, dst_path=tmp, tracking_uri=tracking_uri)


def _logged_serving_example(
    model: Any, location: str, uri: str, tracking_uri: str, tmp: str
) -> dict | None:
    example_info = model.saved_input_example_info or {}
    serving_path = example_info.get("serving_input_path")
    if not serving_path:
        return None
    try:
        return json.loads(Path(_download(f"{location}/{serving_path}", tmp, tracking_uri))
                          .read_text())
    except Exception as exc:  # the example is declared but unreadable: the artifacts are broken
        raise ModelLoadError(f"cannot read {uri}/{serving_path}: {describe_error(exc)}") from exc


def example_payload(rules: ValidationRules) -> dict[str, Any]:
    """One valid row built from the rules, for models logged without an input example."""
    def middle(bounds: tuple[float, float]) -> float:
        return (bounds[0] + bounds[1]) / 2

    area = min(max(100.0, rules.min_area), rules.max_area)
    row = {
        "type": rules.types[0],
        "sector": rules.sectors[0],
        "net_usable_area": area,
        "net_area": area,
        "n_rooms": min(3.0, rules.max_rooms),
        "n_bathroom": min(2.0, rules.max_bathrooms),
        "latitude": middle(rules.latitude),
        "longitude": middle(rules.longitude),
    }
    return {"inputs": [row]}


def resolve_alias(client: Any, name: str, alias: str) -> str | None:
    """The version `alias` points to; None when the model or alias does not exist.

    Unlike `valuation.registry.alias_version`, a registry that cannot be reached raises, so an
    outage is not mistaken for "there is no champion" (which would stop serving)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        # An unknown model is RESOURCE_DOES_NOT_EXIST; an unknown alias INVALID_PARAMETER_VALUE
        # "... alias X not found". Connection failures are INTERNAL_ERROR and must raise.
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        if exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower():
            return None
        raise
