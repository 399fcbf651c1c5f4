"""What one Python proxy hop costs before it does any work: the project's model server called
directly, through a bare Starlette forwarder, through a bare FastAPI forwarder (bench/forwarders.py),
and through the project's proxy, all measured with wrk in turn at each concurrency.

The benchmark issue asks for the proxy's p50 to be at most 1.25x the model server's; this part
shows how much of the gap the hop itself takes, whatever the proxy does.

    python -m bench.proxy_floor [--data-dir DIR] [--quick] [--synthetic ROWS] [--duration S]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import LOOPBACK, parser, progress, ratio, results_dir, start_stamp, write_result
from bench.loadgen import require_wrk
from bench.processes import ProcessGroup, run_part, wait_until_ready
from bench.resources import process_tree
from bench.serving import ServingPlan, Target, check_answers, measure, serving_setup
from serving.ports import free_port

RESULT_NAME = "proxy_floor"
FORWARDERS = {"bare_starlette": "bench.forwarders:starlette_app",
              "bare_fastapi": "bench.forwarders:fastapi_app"}


def start_forwarder(group: ProcessGroup, name: str, app: str, upstream: str) -> tuple[str, int]:
    """Start one forwarder to `upstream`; its base URL and pid once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", LOOPBACK, "--port", str(port),
               "--no-access-log"]
    proc = group.start(name, command, env={**os.environ, "UPSTREAM_URL": upstream})
    base = f"http://{LOOPBACK}:{port}"
    wait_until_ready(f"{base}/ping", proc, 60, name, lambda: group.log_path(name).read_text()[-2000:])
    return base, proc.pid


def run(args: Any) -> dict[str, Any]:
    require_wrk()
    plan = ServingPlan.for_args(args)
    stamp = start_stamp()
    with serving_setup(args, with_anchor=False) as setup, \
            tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp, \
            ProcessGroup(Path(tmp) / "logs") as group:
        direct = setup.targets["direct"]
        targets = {"direct": direct}
        for name, app in FORWARDERS.items():
            base, pid = start_forwarder(group, name, app, direct.url)
            procs = [*process_tree(pid), *direct.processes]
            targets[name] = Target(name, f"{base}/predict", direct.bodies, None, procs)
        targets["proxy"] = setup.targets["proxy"]
        for target in targets.values():
            check_answers(target, target.bodies.read_text().split("\n", 1)[0])
        levels: dict[str, dict[str, Any]] = {name: {} for name in targets}
        for connections in plan.concurrency:
            for name, target in targets.items():
                levels[name][str(connections)] = measure(target, connections, plan)
    ratios = {
        str(c): {name: ratio(levels[name][str(c)]["p50_ms"], levels["direct"][str(c)]["p50_ms"])
                 for name in targets if name != "direct"}
        for c in plan.concurrency
    }
    data = {**stamp, "data": setup.data, "plan": {"concurrency": list(plan.concurrency),
                                                  "duration_s": plan.duration_s},
            "results": levels, "p50_over_direct": ratios}
    path = write_result(results_dir(args), RESULT_NAME, data, args.quick)
    for c, row in ratios.items():
        progress(f"c={c}: p50 / direct p50 = " + ", ".join(f"{k} {v:.2f}x" for k, v in row.items()))
    progress(f"wrote {path}")
    return data


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--duration", type=float, default=None, help="seconds per measurement")
    run_part(run, cli)


if __name__ == "__main__":
    main()
