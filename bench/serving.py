"""Single-row serving: the anchor, the project's proxy, and the project's model server directly.

Starts (a) the anchor (bench/anchor.py: sklearn Pipeline + `mlflow models serve` defaults), (b) the
project's stack as `make stack` runs it, with a champion trained on the same data, and calls (c) the
stack's model server directly. Each is driven by wrk replaying distinct test rows, one per request,
at each concurrency; the three targets are measured in turn at each level so that background load
affects them alike. Server CPU time per request is measured too (it depends less on other load
than throughput does). Then a memory-flatness run: RSS of the proxy and the model server sampled
while the proxy is under load.

    python -m bench.serving [--data-dir DIR] [--quick] [--synthetic ROWS] [--duration S]
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.anchor import log_anchor, serve_command, serve_env
from bench.common import (
    LOOPBACK,
    BenchError,
    DataPaths,
    data_paths,
    distinct_rows,
    feature_records,
    load_tables,
    parser,
    progress,
    ratio,
    results_dir,
    start_stamp,
    write_result,
)
from bench.loadgen import (
    INPUTS_FORMAT,
    PROXY_FORMAT,
    SPLIT_FORMAT,
    marked_bodies,
    require_wrk,
    run_wrk,
    unmark,
    write_bodies,
)
from bench.processes import ProcessGroup, run_part, wait_until_ready
from bench.project_model import tracking_store, train_project_model
from bench.resources import RssSampler, process_tree, stack_rss_probes
from bench.stack_runner import RunningStack, start_stack
from serving.ports import free_port

RESULT_NAME = "serving"
ANCHOR_DESCRIPTION = ("sklearn Pipeline(OrdinalEncoder + passthrough, GradientBoostingRegressor of "
                      "conf/model/gbr.yaml) logged with mlflow.sklearn, `mlflow models serve` defaults")
# Targets of the benchmark issue (checked and reported, never asserted in tests).
TARGET_THROUGHPUT_RATIO_AT_8 = 2.0
AIM_THROUGHPUT_RATIO_AT_8 = 4.0
TARGET_PROXY_OVERHEAD_P50 = 1.25
MEMORY_FLAT_TOLERANCE = 0.05  # relative growth from the first to the last quarter of the run
MEMORY_FLAT_MIN_MB = 10.0  # growth below this is noise whatever the relative size


@dataclass(frozen=True)
class ServingPlan:
    concurrency: tuple[int, ...]
    duration_s: float
    warmup_s: float
    memory_s: float
    memory_interval_s: float
    memory_concurrency: int

    @classmethod
    def for_args(cls, args: Any) -> ServingPlan:
        if args.quick:
            return cls((1, 8), args.duration or 2, 1, 6, 1, 8)
        return cls((1, 8, 32), args.duration or 20, 3, 120, 3, 8)


@dataclass
class Target:
    """One thing under load: where to send, which bodies, and whose CPU time the requests cost."""

    name: str
    url: str
    bodies: Path
    api_key: str | None
    processes: list[psutil.Process] = field(default_factory=list)

    def cpu_s(self) -> float:
        total = 0.0
        for proc in self.processes:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total


def measure(target: Target, connections: int, plan: Any) -> dict[str, Any]:
    """`plan`: anything with warmup_s and duration_s (ServingPlan, bench.replicas' plan)."""
    run_wrk(target.url, target.bodies, connections, plan.warmup_s, api_key=target.api_key)
    before = target.cpu_s()
    result = run_wrk(target.url, target.bodies, connections, plan.duration_s, api_key=target.api_key)
    server_cpu = target.cpu_s() - before
    out = result.to_dict()
    out["server_cpu_ms_per_request"] = 1000 * server_cpu / result.requests if result.requests else None
    out["server_cpu_cores"] = server_cpu / result.duration_s if result.duration_s else None
    progress(f"{target.name:>7} c={connections:<3} {result.requests_per_s:8.1f} req/s  "
             f"p50 {result.p50_ms:7.2f} ms  p95 {result.p95_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
             f"errors {result.errors}  server CPU {out['server_cpu_ms_per_request'] or 0:.2f} ms/req")
    return out


def check_answers(target: Target, body: str, expected_rows: int = 1) -> None:
    """One request before the load: it must succeed with one prediction per row."""
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["X-API-Key"] = target.api_key
    answer = httpx.post(target.url, content=unmark(body), headers=headers, timeout=30)
    if answer.status_code != 200:
        raise BenchError(f"{target.name}: {target.url} answered {answer.status_code}: {answer.text[:500]}")
    predictions = answer.json().get("predictions")
    if not isinstance(predictions, list) or len(predictions) != expected_rows:
        raise BenchError(f"{target.name}: expected {expected_rows} prediction(s), got {answer.text[:200]}")


def memory_run(proxy: Target, proxy_pid: int, model_server_pid: int, plan: ServingPlan) -> dict[str, Any]:
    """RSS of the proxy process and of the model server's process tree while the proxy is loaded."""
    progress(f"memory run: {plan.memory_s:.0f} s at c={plan.memory_concurrency} through the proxy, "
             f"RSS every {plan.memory_interval_s:.0f} s")
    with RssSampler(stack_rss_probes(proxy_pid, model_server_pid), plan.memory_interval_s) as sampler:
        load = run_wrk(proxy.url, proxy.bodies, plan.memory_concurrency, plan.memory_s, api_key=proxy.api_key)
    samples = sampler.samples
    out: dict[str, Any] = {"duration_s": plan.memory_s, "concurrency": plan.memory_concurrency,
                           "requests": load.requests, "errors": load.errors, "samples": samples}
    for key in ("proxy_mb", "model_server_mb"):
        out[key.removesuffix("_mb")] = flatness([s[key] for s in samples if key in s])
    out["flat"] = all(out[k]["flat"] for k in ("proxy", "model_server"))
    progress(f"memory: proxy {out['proxy']['first_mb']:.0f} -> {out['proxy']['last_mb']:.0f} MB, "
             f"model server {out['model_server']['first_mb']:.0f} -> {out['model_server']['last_mb']:.0f} MB "
             f"({'flat' if out['flat'] else 'GROWING'}), {load.requests} requests, {load.errors} errors")
    return out


def flatness(values: Sequence[float]) -> dict[str, Any]:
    """Mean RSS of the first and last quarter of the samples, and whether growth stays within bounds."""
    if len(values) < 4:
        return {"first_mb": values[0] if values else 0.0, "last_mb": values[-1] if values else 0.0,
                "growth_mb": 0.0, "flat": True, "samples": len(values)}
    quarter = max(1, len(values) // 4)
    first = sum(values[:quarter]) / quarter
    last = sum(values[-quarter:]) / quarter
    growth = last - first
    flat = growth <= max(MEMORY_FLAT_MIN_MB, MEMORY_FLAT_TOLERANCE * first)
    return {"first_mb": first, "last_mb": last, "growth_mb": growth, "max_mb": max(values),
            "flat": bool(flat), "samples": len(values)}


@dataclass
class ServingSetup:
    """Everything running for a serving measurement, inside one throwaway directory."""

    targets: dict[str, Target]
    stack: RunningStack
    data: str
    distinct_bodies: int
    project: dict[str, Any]
    anchor: dict[str, Any] | None


@dataclass
class Workload:
    """The part's data and one request-body file per body format (one distinct test row each)."""

    paths: DataPaths
    train: Any  # the training table (the anchor fits on it)
    distinct_bodies: int
    bodies: dict[str, Path]
    model_name: str


def prepare_workload(args: Any, tmp: Path) -> Workload:
    from valuation.config import load_config

    paths = data_paths(args, tmp)
    train, test = load_tables(paths)
    records = feature_records(distinct_rows(test))
    model_name = load_config([]).registry.model_name
    bodies = {body_format: write_bodies(marked_bodies(records, body_format, model_name),
                                        tmp / f"{body_format}-bodies.txt")
              for body_format in (SPLIT_FORMAT, INPUTS_FORMAT, PROXY_FORMAT)}
    progress(f"{len(records)} distinct test rows -> one request body each")
    return Workload(paths, train, len(records), bodies, model_name)


def start_anchor(group: ProcessGroup, train: Any, tracking_uri: str) -> tuple[Any, int, float]:
    """Fit and log the anchor, start its `mlflow models serve`: (process, port, fit seconds)."""
    progress("fitting and logging the anchor (sklearn Pipeline, GradientBoostingRegressor)")
    anchor_uri, fit_s = log_anchor(train, tracking_uri)
    port = free_port()
    return group.start("anchor", serve_command(anchor_uri, port), env=serve_env(tracking_uri)), port, fit_s


@contextlib.contextmanager
def serving_setup(args: Any, with_anchor: bool = True) -> Iterator[ServingSetup]:
    """Train the champion, start the stack (and the anchor), check each answers; stop all on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name, \
            tracking_store(Path(tmp_name)) as tracking_uri, \
            ProcessGroup(Path(tmp_name) / "logs") as group:
        tmp = Path(tmp_name)
        work = prepare_workload(args, tmp)
        paths = work.paths
        split_bodies, inputs_bodies, proxy_bodies = (work.bodies[f] for f in
                                                     (SPLIT_FORMAT, INPUTS_FORMAT, PROXY_FORMAT))

        result = train_project_model(paths)
        anchor_info = None
        if with_anchor:
            anchor_proc, anchor_port, anchor_fit_s = start_anchor(group, work.train, tracking_uri)
            anchor_info = {"model": ANCHOR_DESCRIPTION, "fit_s": anchor_fit_s}
        stack = start_stack(group, tmp, tracking_uri)
        model_server = process_tree(stack.model_server_pid)
        targets = {
            "proxy": Target("proxy", f"{stack.proxy_url}/predict", proxy_bodies, stack.api_key,
                            [psutil.Process(stack.proxy_pid), *model_server]),
            "direct": Target("direct", f"{stack.model_server_url}/invocations", inputs_bodies, None,
                             model_server),
        }
        if with_anchor:
            wait_until_ready(f"http://{LOOPBACK}:{anchor_port}/ping", anchor_proc, 180, "anchor server",
                             lambda: group.log_tail("anchor"))
            targets = {"anchor": Target("anchor", f"http://{LOOPBACK}:{anchor_port}/invocations",
                                        split_bodies, None, process_tree(anchor_proc.pid)), **targets}
        for target in targets.values():
            check_answers(target, target.bodies.read_text().split("\n", 1)[0])
        yield ServingSetup(
            targets=targets, stack=stack, data=paths.describe(), distinct_bodies=work.distinct_bodies,
            project={"model_uri": result.model_uri, "version": result.version,
                     "model_server_ports": list(stack.all_model_server_ports)},
            anchor=anchor_info,
        )


def run(args: Any) -> dict[str, Any]:
    require_wrk()
    plan = ServingPlan.for_args(args)
    stamp = start_stamp()
    out_dir = results_dir(args)
    with serving_setup(args) as setup:
        levels: dict[str, dict[str, Any]] = {name: {} for name in setup.targets}
        for connections in plan.concurrency:
            for name, target in setup.targets.items():
                levels[name][str(connections)] = measure(target, connections, plan)
        memory = memory_run(setup.targets["proxy"], setup.stack.proxy_pid, setup.stack.model_server_pid, plan)

    data = {
        **stamp,
        "data": setup.data,
        "distinct_bodies": setup.distinct_bodies,
        "plan": plan.__dict__,
        "anchor": setup.anchor,
        "project": setup.project,
        "results": levels,
        "ratios": ratios(levels, plan.concurrency),
        "memory": memory,
    }
    data["targets"] = targets_met(data)
    path = write_result(out_dir, RESULT_NAME, data, args.quick)
    progress(f"wrote {path}")
    return data


def ratios(levels: dict[str, dict[str, Any]], concurrency: Sequence[int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for connections in map(str, concurrency):
        proxy, direct, anchor = (levels[n][connections] for n in ("proxy", "direct", "anchor"))
        out[connections] = {
            "proxy_over_anchor_rps": ratio(proxy["requests_per_s"], anchor["requests_per_s"]),
            "direct_over_anchor_rps": ratio(direct["requests_per_s"], anchor["requests_per_s"]),
            "proxy_p50_over_direct_p50": ratio(proxy["p50_ms"], direct["p50_ms"]),
            "anchor_cpu_over_proxy_cpu": ratio(anchor["server_cpu_ms_per_request"],
                                               proxy["server_cpu_ms_per_request"]),
        }
    return out


def targets_met(data: dict[str, Any]) -> dict[str, Any]:
    at8 = data["ratios"].get("8", {})
    errors = sum(r["errors"] for target in data["results"].values() for r in target.values())
    overheads = [r["proxy_p50_over_direct_p50"] for r in data["ratios"].values()]
    return {
        "throughput_ratio_at_8": at8.get("proxy_over_anchor_rps"),
        "throughput_target_2x": bool((at8.get("proxy_over_anchor_rps") or 0) >= TARGET_THROUGHPUT_RATIO_AT_8),
        "throughput_aim_4x": bool((at8.get("proxy_over_anchor_rps") or 0) >= AIM_THROUGHPUT_RATIO_AT_8),
        "proxy_overhead_p50_max": max(o for o in overheads if o is not None) if overheads else None,
        "proxy_overhead_target": bool(overheads and all(o is not None and o <= TARGET_PROXY_OVERHEAD_P50
                                                         for o in overheads)),
        "errors_total": errors + data["memory"]["errors"],
        "no_errors": errors + data["memory"]["errors"] == 0,
        "memory_flat": data["memory"]["flat"],
    }


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 20)")
    run_part(run, cli)


if __name__ == "__main__":
    main()
