"""Artifacts on S3-compatible object storage: is the bucket there before anything is written to it.

MLflow finds out that an `s3://` artifact location is unreachable only when it first writes,
after a whole training, as a botocore traceback. `require_reachable` asks the bucket up front and
turns every way it can fail into one `ArtifactStoreUnreachable` that names the bucket and the
endpoint. Endpoint and credentials come from the environment MLflow itself reads
(MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE ...); they are
never configured in files, and the credentials never appear in a message.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from omegaconf import DictConfig

S3_SCHEME = "s3"
ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"  # MLflow's S3 client reads the same variable


class ArtifactStoreUnreachable(ValueError):
    """An object-store artifact location whose bucket cannot be reached with this environment."""


def is_object_store(location: str) -> bool:
    """Whether `location` is an S3 URI (`s3://bucket/prefix`), which `require_reachable` checks."""
    return urlparse(location).scheme == S3_SCHEME


def require_reachable(location: str, settings: DictConfig) -> None:
    """Raise `ArtifactStoreUnreachable` unless the bucket of the S3 URI `location` answers to the
    environment's endpoint and credentials. `settings` is the `artifact_store` section of the
    config (timeouts and attempts of this one check)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = urlparse(location).netloc
    endpoint = os.environ.get(ENDPOINT_ENV) or None
    where = f"bucket {bucket!r} at {endpoint or f'AWS S3 ({ENDPOINT_ENV} unset)'}"
    config = Config(connect_timeout=float(settings.probe_connect_timeout_s),
                    read_timeout=float(settings.probe_read_timeout_s),
                    retries={"total_max_attempts": int(settings.probe_attempts), "mode": "standard"})
    try:
        client = boto3.client(S3_SCHEME, endpoint_url=endpoint, config=config)
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "unknown"))
        reason = {"404": "does not exist", "NoSuchBucket": "does not exist",
                  "403": "refuses these credentials (403)"}.get(code, f"answered {code}")
        raise ArtifactStoreUnreachable(_message(location, where, reason)) from None
    except (BotoCoreError, ValueError) as error:  # no endpoint, no credentials, a bad URL
        raise ArtifactStoreUnreachable(_message(location, where, f"is unreachable: {error}")) from None


def _message(location: str, where: str, reason: str) -> str:
    return (f"artifact location {location}: {where} {reason}; create the bucket or set "
            f"{ENDPOINT_ENV}, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to reach it")
