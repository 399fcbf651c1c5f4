"""A real S3-protocol server for the tests: moto's standalone server (`moto_server`, from the
`moto[server]` test extra) on a free loopback port, one per session, and a fresh bucket per test.
moto accepts any credentials; the tests still pass them through the environment, as MLflow and
`make stack` read them in production."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.ports import free_port
from serving.processes import own_group_options, terminate_process_group

HOST = "127.0.0.1"
START_TIMEOUT_S = 60
STOP_GRACE_S = 5


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    secret_key: str
    access_key: str = "moto-test"
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """What a process needs to reach this server with MLflow, boto3 or `make stack`."""
        return {"MLFLOW_S3_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": self.region}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in `bucket` under `prefix`."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", HOST, "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, **own_group_options())
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(endpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start on {endpoint}:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield S3Server(endpoint, secret_key=secrets.token_urlsafe(16))
    finally:
        terminate_process_group(process, STOP_GRACE_S)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the session's server."""
    name = f"artifacts-{secrets.token_hex(6)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


def _answers(endpoint: str) -> bool:
    try:
        return httpx.get(f"{endpoint}/moto-api/", timeout=2, trust_env=False).status_code < 500
    except httpx.HTTPError:
        return False
