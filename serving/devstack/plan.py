"""Where the dev stack puts everything, resolved from settings, environment and flags first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from serving.devstack.part import StackError
from serving.redaction import redact_uri
from valuation.config import artifact_location, is_server_uri, resolve_path, tracking_uri

HOST = "127.0.0.1"  # the stack is loopback-only by design; Docker is the way to expose it
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


@dataclass(frozen=True)
class StackPlan:
    """Where everything goes, resolved from settings + flags before anything starts."""

    state_dir: Path
    mlflow_port: int
    proxy_port: int
    redis_port: int
    vault_port: int
    model_server_port: int
    backend_store_uri: str | None  # None: an external tracking server is used
    artifacts_destination: str | None  # a URI: file:///... or s3://bucket/prefix
    tracking_uri: str  # what every child talks to
    proxies: int = 1  # proxy replicas; more than one puts the balancer on proxy_port
    replica_port: int | None = None  # replica i listens on replica_port + i

    @property
    def replica_names(self) -> list[str]:
        return [f"proxy-{i + 1}" for i in range(self.proxies)]

    @property
    def replica_ports(self) -> list[int]:
        first = self.replica_port if self.replica_port is not None else self.proxy_port + 1
        return [first + i for i in range(self.proxies)]

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def model_server_dir(self) -> Path:
        return self.state_dir / "model-servers"

    @property
    def model_server_dirs(self) -> list[Path]:
        """The run dir of each proxy's model servers (one proxy: model_server_dir itself)."""
        if self.proxies == 1:
            return [self.model_server_dir]
        return [self.model_server_dir / name for name in self.replica_names]

    @property
    def approle_file(self) -> Path:
        return self.state_dir / "vault-approle.json"


def plan_stack(settings: DictConfig, environ: Mapping[str, str]) -> StackPlan:
    """Resolve ports and the MLflow store. The store is the one `make train` writes to
    (`valuation.config.tracking_uri`): the tracking server here serves that same store, so what
    `make train` registered is what gets served. Artifacts go where
    `valuation.config.artifact_location` puts them for that store (a directory beside it, or the
    configured destination, e.g. a bucket), for runs logged directly and through the server alike.
    An http(s) MLFLOW_TRACKING_URI names a server someone else runs: none is started."""
    stack = settings.stack
    external = environ.get("MLFLOW_TRACKING_URI") or None
    store = tracking_uri(stack.backend_store_uri or external)
    ports = {
        "state_dir": resolve_path(stack.state_dir).resolve(),
        "mlflow_port": int(stack.mlflow_port),
        "proxy_port": int(settings.proxy.port),
        "redis_port": int(settings.redis.port),
        "vault_port": int(stack.vault_port),
        "model_server_port": int(settings.model_server.base_port),
        **plan_replicas(settings),
    }
    if not stack.backend_store_uri and is_server_uri(store):
        return StackPlan(**ports, backend_store_uri=None, artifacts_destination=None,
                         tracking_uri=store)
    if not stack.backend_store_uri and store.split(":", 1)[0].split("+", 1)[0] \
            not in DATABASE_SCHEMES:
        raise StackError(
            f"MLFLOW_TRACKING_URI={redact_uri(store)} is neither a database nor a tracking "
            f"server; the stack serves a database store ({', '.join(DATABASE_SCHEMES)}) or "
            "uses an http(s) tracking server: set it to one of those, or unset it for the "
            "store `make train` uses")
    artifacts = artifact_location(store, stack.artifacts_destination)
    return StackPlan(**ports, backend_store_uri=store, artifacts_destination=artifacts,
                     tracking_uri=f"http://{HOST}:{ports['mlflow_port']}")


def plan_replicas(settings: DictConfig) -> dict[str, int | None]:
    """How many proxy replicas and from which port; one replica needs no balancer and no port."""
    proxies = int(settings.stack.proxies)
    if proxies < 1:
        raise StackError(f"stack.proxies (PROXIES / --proxies) is {proxies}; it must be 1 or more")
    replica_port = settings.stack.replica_port
    return {"proxies": proxies,
            "replica_port": None if replica_port is None else int(replica_port)}
