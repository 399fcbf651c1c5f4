"""The served version and its reference profile, read from the MLflow registry.

A version's profile is the `monitoring/reference_profile.json` artifact of its evaluation run
(the version's `valuation.evaluation_run_id` tag). Versions registered before profiles were
logged have none: the monitoring run says so and how to give them one (retrain, or promote a
newer version), instead of comparing against nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from valuation.monitoring.profile import ProfileError, ReferenceProfile
from valuation.names import EVALUATION_RUN_ID_TAG, PROFILE_ARTIFACT
from valuation.registry import alias_version


class ReferenceMissing(LookupError):
    """No served version, or a version without a usable reference profile."""


@dataclass(frozen=True)
class MonitoredVersion:
    model_name: str
    version: str
    alias: str
    evaluation_run_id: str
    profile: ReferenceProfile


def served_version(client: MlflowClient, model_name: str, alias: str) -> str:
    version = alias_version(client, model_name, alias)
    if version is None:
        raise ReferenceMissing(f"model {model_name!r} has no {alias!r} alias: nothing is served, "
                               "so nothing is monitored")
    return version


def load_reference(client: MlflowClient, model_name: str, version: str,
                   alias: str = "") -> MonitoredVersion:
    details = client.get_model_version(model_name, version)
    run_id = details.tags.get(EVALUATION_RUN_ID_TAG)
    if not run_id:
        raise ReferenceMissing(
            f"{model_name} version {version} has no {EVALUATION_RUN_ID_TAG} tag, so no reference "
            "profile: it was registered outside the pipeline; retrain it with the pipeline")
    uri = f"runs:/{run_id}/{PROFILE_ARTIFACT}"
    try:
        data = mlflow.artifacts.load_dict(uri)
    except (MlflowException, OSError) as error:
        raise ReferenceMissing(
            f"{model_name} version {version} has no reference profile ({uri}: "
            f"{str(error).strip().splitlines()[0][:200]}); it was probably evaluated before "
            "profiles were logged: retrain it (POST /train or make train) and promote the new "
            "version to monitor drift") from None
    try:
        profile = ReferenceProfile.from_dict(data)
    except ProfileError as error:
        raise ReferenceMissing(f"{model_name} version {version}: {uri}: {error}") from None
    return MonitoredVersion(model_name, str(version), alias, run_id, profile)
