"""A multi-replica dev stack (stack.proxies > 1): the proxy replicas, each with its own
model-server supervisor, ports, run dir and audit file, and the balancer in front of them on the
proxy's port. They share Redis (keys' rate limits, jobs), Vault (keys) and the tracking server,
which is what makes a replica stateless and safe to add, kill or restart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.audit import AUDIT_PATH_ENV
from serving.devstack.balancer import prepare_nginx
from serving.devstack.part import Part, say
from serving.devstack.plan import HOST
from serving.devstack.probes import http_ok
from serving.devstack.services import launch_proxy
from valuation.config import resolve_path

if TYPE_CHECKING:
    from serving.devstack.launcher import Stack


def start_proxy_replicas(stack: Stack) -> None:
    plan = stack.plan
    stack.require_free_port("balancer", plan.proxy_port, "PROXY_PORT", "--proxy-port")
    for index, port in enumerate(plan.replica_ports):
        stack.require_free_port(f"proxy replica {index + 1}", port, "PROXY_REPLICA_PORT",
                                "--replica-port")
    port_span = int(stack.settings.model_server.port_span)
    audit = resolve_path(stack.environ.get(AUDIT_PATH_ENV) or str(stack.settings.audit.path))
    for index, (name, port) in enumerate(zip(plan.replica_names, plan.replica_ports,
                                             strict=True)):
        env = {
            "PROXY_PORT": str(port),
            # Its own model servers: a port range and a run dir (logs, pid files) of its own.
            "MODEL_SERVER_PORT": str(plan.model_server_port + index * port_span),
            "MODEL_SERVER_RUN_DIR": str(plan.model_server_dirs[index]),
            # One process rotates an audit file (serving/audit.py): one file per replica.
            AUDIT_PATH_ENV: str(audit.with_name(f"{audit.stem}.{name}{audit.suffix}")),
        }
        stack.endpoints[name] = launch_proxy(stack, name, port, env)
        stack.replica_parts.append(name)


def start_balancer(stack: Stack) -> None:
    plan = stack.plan
    prefix = plan.state_dir / "nginx"
    url = f"http://{HOST}:{plan.proxy_port}"
    log = plan.logs / "balancer.log"
    command = prepare_nginx(stack.settings, f"{HOST}:{plan.proxy_port}",
                            [f"{HOST}:{port}" for port in plan.replica_ports], prefix, log)
    part = Part(name="balancer", command=command, env=stack.base_env(), log_path=log, where=url)
    say(f"balancer: starting nginx on {url} in front of {len(plan.replica_ports)} proxies "
        f"(config {prefix / 'nginx.conf'})")
    stack.launch(part)
    stack.wait(part, lambda: http_ok(f"{url}/health", stack.probe_timeout_s),
               "answers /health through a replica")
    stack.endpoints["proxy"] = url
