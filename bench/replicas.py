"""Throughput through the balancer with one and with two proxy replicas.

Three configurations serve the same champion, each driven by wrk replaying distinct test rows,
one per request, at each concurrency: (a) the stack's single proxy directly, (b) nginx with the
stack's generated configuration in front of that single proxy (the balancer's own cost), and
(c) `make stack PROXIES=2`: nginx in front of two replicas, each with its own model server.
The CPU time of every process of the stack (and of nginx) per request is measured too: on a
machine with few cores, the replicas share the same cores, so what a second replica adds is
bounded by the CPU the first one leaves idle.

    python -m bench.replicas [--data-dir DIR] [--quick] [--synthetic ROWS] [--duration S]
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    LOOPBACK,
    parser,
    progress,
    ratio,
    results_dir,
    start_stamp,
    write_result,
)
from bench.loadgen import proxy_bodies, require_wrk, write_bodies
from bench.processes import ProcessGroup, run_part, wait_until_ready
from bench.project_model import tracking_store, train_project_model
from bench.resources import process_tree
from bench.serving import Target, check_answers, measure
from bench.stack_runner import RunningStack, start_stack
from serving.devstack.balancer import prepare_nginx
from serving.ports import free_port
from valuation.config import load_config

RESULT_NAME = "replicas"
NGINX_READY_TIMEOUT_S = 30


@dataclass(frozen=True)
class ReplicasPlan:
    concurrency: tuple[int, ...]
    duration_s: float  # measured seconds per configuration and level
    warmup_s: float

    @classmethod
    def for_args(cls, args: Any) -> ReplicasPlan:
        if args.quick:
            return cls((8,), args.duration or 5, 1)
        return cls((8, 32), args.duration or 20, 3)


def stack_processes(stack: RunningStack) -> list[psutil.Process]:
    """Every process of the stack (proxies, model servers, balancer, and the idle parts)."""
    return process_tree(stack.stack_pid)


@contextlib.contextmanager
def nginx_in_front(group: ProcessGroup, workdir: Path, proxy_url: str) -> Iterator[tuple[str, int]]:
    """The stack's nginx configuration in front of one proxy; its URL and pid."""
    prefix = workdir / "nginx"
    port = free_port()
    command = prepare_nginx(load_config(config_name="serving"), f"{LOOPBACK}:{port}",
                            [proxy_url.removeprefix("http://")], prefix, prefix / "error.log")
    proc = group.start("nginx", command, env=dict(os.environ))
    url = f"http://{LOOPBACK}:{port}"
    wait_until_ready(f"{url}/health", proc, NGINX_READY_TIMEOUT_S, "nginx", lambda: group.log_tail("nginx"))
    try:
        yield url, proc.pid
    finally:
        group.stop("nginx")


def measure_levels(target: Target, plan: ReplicasPlan) -> dict[str, Any]:
    return {str(c): measure(target, c, plan) for c in plan.concurrency}


def run(args: Any) -> dict[str, Any]:
    require_wrk()
    plan = ReplicasPlan.for_args(args)
    stamp = start_stamp()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp_name, \
            tracking_store(Path(tmp_name)) as tracking_uri, \
            ProcessGroup(Path(tmp_name) / "logs") as group:
        tmp = Path(tmp_name)
        bodies_list, paths = proxy_bodies(args, tmp)
        bodies = write_bodies(bodies_list, tmp / "bodies.txt")
        train_project_model(paths)

        stack = start_stack(group, tmp, tracking_uri)
        single = Target("one proxy", f"{stack.proxy_url}/predict", bodies, stack.api_key,
                        stack_processes(stack))
        check_answers(single, bodies.read_text().split("\n", 1)[0])
        results["one proxy"] = measure_levels(single, plan)
        with nginx_in_front(group, tmp, stack.proxy_url) as (url, nginx_pid):
            fronted = Target("nginx + one proxy", f"{url}/predict", bodies, stack.api_key,
                             [*stack_processes(stack), psutil.Process(nginx_pid)])
            check_answers(fronted, bodies.read_text().split("\n", 1)[0])
            results["nginx + one proxy"] = measure_levels(fronted, plan)
        group.stop("stack")

        replicated = start_stack(group, tmp, tracking_uri, proxies=2)
        both = Target("nginx + two proxies", f"{replicated.proxy_url}/predict", bodies,
                      replicated.api_key, stack_processes(replicated))
        check_answers(both, bodies.read_text().split("\n", 1)[0])
        results["nginx + two proxies"] = measure_levels(both, plan)

    data = {
        **stamp,
        "data": paths.describe(),
        "distinct_bodies": len(bodies_list),
        "plan": plan.__dict__,
        "results": results,
        "two_over_one": {
            c: ratio(results["nginx + two proxies"][c]["requests_per_s"],
                     results["nginx + one proxy"][c]["requests_per_s"])
            for c in map(str, plan.concurrency)},
    }
    path = write_result(results_dir(args), RESULT_NAME, data, args.quick)
    progress(f"wrote {path}")
    return data


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--duration", type=float, default=None,
                     help="seconds per measurement (default 20; --quick 5)")
    run_part(run, cli)


if __name__ == "__main__":
    main()
