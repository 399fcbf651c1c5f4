"""Single-row throughput of the whole proxy against the in-process design, side by side in one run.

Starts, on the same champion and the same distinct test rows (one row per request, every body
different):
  anchor          the bare `mlflow models serve` of a plain sklearn Pipeline (bench/anchor.py)
  proxy           the project's stack with a per-key rate limit set (high enough never to
                  refuse), the audit trail and the prediction store on, micro-batching off
  proxy_no_limit  the same without a rate limit: the limit's share of the proxy's cost
  proxy_batching  the same as `proxy` with micro-batching on: production, as conf/serving.yaml
                  ships it
  inprocess       one FastAPI process pricing in-process (bench/inprocess_app.py)
Each proxy variant is a stack of its own (its own Redis, model server and audit file), differing
only by environment overrides (`ProxyVariant.env`). wrk drives each at every concurrency, the
targets in rotating order at each level so that background load hits them alike. Reported:
requests/s, p50/p95/p99, errors, server CPU per request (psutil: the proxy and its model server,
or the one in-process server), the mean batch size (the proxy's batch-size histogram on
/metrics), and the CPU of one rate-limit check as it was and as it is (bench/ratelimit_cost.py).

    python -m bench.throughput [--data-dir DIR] [--quick] [--synthetic ROWS] [--duration S]
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.anchor import serve_env
from bench.common import (
    LOOPBACK,
    parser,
    progress,
    ratio,
    results_dir,
    start_stamp,
    write_result,
)
from bench.inprocess_app import API_KEY_ENV, MODEL_URI_ENV
from bench.loadgen import PROXY_FORMAT, SPLIT_FORMAT, require_wrk
from bench.processes import ProcessGroup, run_part, wait_until_ready
from bench.project_model import tracking_store, train_project_model
from bench.ratelimit_cost import ratelimit_cost
from bench.resources import process_tree
from bench.serving import ANCHOR_DESCRIPTION, Target, check_answers, measure, prepare_workload, start_anchor
from bench.stack_runner import RunningStack, start_stack
from serving.audit import AUDIT_PATH_ENV
from serving.ports import free_port

RESULT_NAME = "throughput"
# Targets of issue 14 (checked and reported, never asserted in tests).
TARGET_OVER_INPROCESS = {"32": 1.2, "8": 1.0}
TARGET_P50_C1_EXTRA_MS = 0.2  # batching may add at most this to today's proxy p50 at concurrency 1
NEVER_REFUSING_LIMIT = "1000000000/second"  # a limit is checked on every request, never reached
# The micro-batching switch and its histogram (the `batching` change, issue 14 §1). Until a build
# has them, the batching variant is reported as not measured, and the others still run.
BATCHING_CONFIG_KEY = "batching.enabled"
BATCHING_ENV = "PREDICT_BATCHING"
BATCH_ROWS_METRIC = "valuation_batch_rows"


@dataclass(frozen=True)
class ProxyVariant:
    name: str
    description: str
    env: Mapping[str, str] = field(default_factory=dict)
    needs_batching: bool = False


PROXY_VARIANTS = (
    ProxyVariant("proxy", "rate limit + audit trail, batching off",
                 {"RATE_LIMIT_PER_KEY": NEVER_REFUSING_LIMIT, BATCHING_ENV: "false"}),
    ProxyVariant("proxy_no_limit", "audit trail, no rate limit, batching off",
                 {"RATE_LIMIT_PER_KEY": "", BATCHING_ENV: "false"}),
    ProxyVariant("proxy_batching", "rate limit + audit trail, batching on (the default)",
                 {"RATE_LIMIT_PER_KEY": NEVER_REFUSING_LIMIT, BATCHING_ENV: "true"}, needs_batching=True),
)


@dataclass(frozen=True)
class ThroughputPlan:
    concurrency: tuple[int, ...]
    duration_s: float
    warmup_s: float
    limiter_checks: int
    profile_s: float
    profile_concurrency: int = 32

    @classmethod
    def for_args(cls, args: Any) -> ThroughputPlan:
        if args.quick:
            return cls((1, 8), args.duration or 2, 1, 300, 3, 8)
        return cls((1, 8, 32, 64), args.duration or 20, 3, 2000, 20)


def batching_in_build() -> bool:
    """Whether this build's serving config has the micro-batching switch."""
    from omegaconf import OmegaConf

    from serving.settings import get_settings

    return OmegaConf.select(get_settings(), BATCHING_CONFIG_KEY, default=None) is not None


def batch_histogram(metrics_url: str) -> tuple[float, float] | None:
    """(sum of rows, number of upstream calls) of the proxy's batch-size histogram, or None."""
    try:
        text = httpx.get(metrics_url, timeout=10).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == BATCH_ROWS_METRIC:
            total = sum(s.value for s in family.samples if s.name.endswith("_sum"))
            count = sum(s.value for s in family.samples if s.name.endswith("_count"))
            return total, count
    return None


def measure_with_batches(target: Target, connections: int, plan: ThroughputPlan,
                         metrics_url: str | None) -> dict[str, Any]:
    """bench.serving.measure, plus the mean rows per upstream call over the measured seconds
    (the warm-up is included: its calls are made the same way)."""
    before = batch_histogram(metrics_url) if metrics_url else None
    out = measure(target, connections, plan)
    after = batch_histogram(metrics_url) if metrics_url else None
    out["mean_batch_rows"] = None
    if before is not None and after is not None and after[1] > before[1]:
        out["mean_batch_rows"] = (after[0] - before[0]) / (after[1] - before[1])
        progress(f"{target.name:>7} c={connections:<3} mean batch {out['mean_batch_rows']:.2f} rows")
    return out


@dataclass
class Setup:
    targets: dict[str, Target]
    stacks: dict[str, RunningStack]
    data: str
    distinct_bodies: int
    project: dict[str, Any]
    variants: dict[str, str]
    not_measured: dict[str, str]


def inprocess_command(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "bench.inprocess_app:app", "--host", LOOPBACK,
            "--port", str(port), "--no-access-log"]


@contextlib.contextmanager
def throughput_setup(args: Any) -> Iterator[Setup]:
    """Train the champion, start the anchor, one stack per proxy variant and the in-process app;
    check each answers; stop all on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp_name, \
            tracking_store(Path(tmp_name)) as tracking_uri, \
            ProcessGroup(Path(tmp_name) / "logs") as group:
        tmp = Path(tmp_name)
        work = prepare_workload(args, tmp)
        proxy_bodies = work.bodies[PROXY_FORMAT]
        result = train_project_model(work.paths)
        anchor, anchor_port, _ = start_anchor(group, work.train, tracking_uri)

        inprocess_port = free_port()
        inprocess_key = secrets.token_urlsafe(32)
        inprocess_env = {**serve_env(tracking_uri), API_KEY_ENV: inprocess_key,
                         MODEL_URI_ENV: f"models:/{work.model_name}/{result.version}"}
        inprocess = group.start("inprocess", inprocess_command(inprocess_port), env=inprocess_env)

        with_batching = batching_in_build()
        not_measured = {} if with_batching else {
            "proxy_batching": f"this build has no micro-batching switch ({BATCHING_CONFIG_KEY})"}
        stacks: dict[str, RunningStack] = {}
        for variant in PROXY_VARIANTS:
            if variant.needs_batching and not with_batching:
                continue
            env = {**variant.env, AUDIT_PATH_ENV: str(tmp / variant.name / "audit" / "audit.jsonl")}
            stacks[variant.name] = start_stack(group, tmp, tracking_uri, name=variant.name,
                                               env_overrides=env, own_redis=True)

        targets = {"anchor": Target("anchor", f"http://{LOOPBACK}:{anchor_port}/invocations",
                                    work.bodies[SPLIT_FORMAT], None, [])}
        for name, stack in stacks.items():
            targets[name] = Target(name, f"{stack.proxy_url}/predict", proxy_bodies, stack.api_key,
                                   [psutil.Process(stack.proxy_pid), *process_tree(stack.model_server_pid)])
        targets["inprocess"] = Target("inprocess", f"http://{LOOPBACK}:{inprocess_port}/predict",
                                      proxy_bodies, inprocess_key, [])
        wait_until_ready(f"http://{LOOPBACK}:{anchor_port}/ping", anchor, 180, "anchor server",
                         lambda: group.log_tail("anchor"))
        wait_until_ready(f"http://{LOOPBACK}:{inprocess_port}/health", inprocess, 180, "in-process app",
                         lambda: group.log_tail("inprocess"))
        targets["anchor"].processes = process_tree(anchor.pid)
        targets["inprocess"].processes = process_tree(inprocess.pid)
        for target in targets.values():
            check_answers(target, target.bodies.read_text().split("\n", 1)[0])
        yield Setup(
            targets=targets, stacks=stacks, data=work.paths.describe(), distinct_bodies=work.distinct_bodies,
            project={"model_uri": result.model_uri, "version": result.version},
            variants={"anchor": ANCHOR_DESCRIPTION,
                      **{v.name: v.description for v in PROXY_VARIANTS if v.name in stacks},
                      "inprocess": "one FastAPI process, pyfunc loaded once, key check + pydantic "
                                   "validation (bench/inprocess_app.py)"},
            not_measured=not_measured,
        )


def run(args: Any) -> dict[str, Any]:
    require_wrk()
    plan = ThroughputPlan.for_args(args)
    stamp = start_stamp()
    with throughput_setup(args) as setup:
        names = list(setup.targets)
        levels: dict[str, dict[str, Any]] = {name: {} for name in names}
        for index, connections in enumerate(plan.concurrency):
            order = names[index % len(names):] + names[:index % len(names)]
            for name in order:
                stack = setup.stacks.get(name)
                metrics_url = f"{stack.proxy_url}/metrics" if stack else None
                levels[name][str(connections)] = measure_with_batches(
                    setup.targets[name], connections, plan, metrics_url)
        profile = profile_production_proxy(setup, plan, results_dir(args))
        limiter_redis = setup.stacks["proxy"].redis_port
        progress(f"rate-limit check: {plan.limiter_checks} checks per way and level, on the stack's Redis")
        limiter = ratelimit_cost(limiter_redis, plan.limiter_checks) if limiter_redis else None

    data = {
        **stamp,
        "data": setup.data,
        "distinct_bodies": setup.distinct_bodies,
        "plan": asdict(plan),
        "project": setup.project,
        "variants": setup.variants,
        "not_measured": setup.not_measured,
        "results": levels,
        "ratelimit_check": limiter,
        "profile": profile,
    }
    data["comparison"] = comparison(levels, plan.concurrency)
    data["targets"] = targets_met(levels)
    path = write_result(results_dir(args), RESULT_NAME, data, args.quick)
    progress(f"wrote {path}")
    return data


def profile_production_proxy(setup: Setup, plan: ThroughputPlan, out_dir: Path) -> dict[str, Any]:
    """py-spy on the production proxy process (batching on when measured) under wrk at the
    plan's profile concurrency: where its CPU goes now. Also written as throughput_profile.md."""
    from bench.profile_serving import SAMPLE_RATE_HZ, markdown, profile_target, py_spy

    py_spy()
    name = best_proxy(setup.stacks)
    stack = setup.stacks[name]
    progress(f"profiling {name} (pid {stack.proxy_pid}) at c={plan.profile_concurrency}, "
             f"{plan.profile_s:.0f} s")
    profile = profile_target(setup.targets[name], "proxy", stack.proxy_pid, plan.profile_s, out_dir,
                             plan.profile_concurrency)
    data = {"variant": name, "concurrency": plan.profile_concurrency, "duration_s": plan.profile_s,
            "rate_hz": SAMPLE_RATE_HZ, "profiles": {name: profile}}
    (out_dir / f"{RESULT_NAME}_profile.md").write_text(markdown(data))
    return data


def best_proxy(levels: Mapping[str, Any]) -> str:
    """The production proxy measured: with batching when the build has it."""
    return "proxy_batching" if "proxy_batching" in levels else "proxy"


def comparison(levels: Mapping[str, Mapping[str, Any]], concurrency: Sequence[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in map(str, concurrency):
        row: dict[str, Any] = {}
        inprocess = levels["inprocess"][level]
        for name in levels:
            if name.startswith("proxy"):
                row[f"{name}_over_inprocess_rps"] = ratio(levels[name][level]["requests_per_s"],
                                                          inprocess["requests_per_s"])
        limited, unlimited = levels["proxy"][level], levels["proxy_no_limit"][level]
        row["limit_cpu_share"] = ratio(limited["server_cpu_ms_per_request"]
                                       - unlimited["server_cpu_ms_per_request"],
                                       limited["server_cpu_ms_per_request"])
        row["limit_rps_cost"] = 1 - (ratio(limited["requests_per_s"], unlimited["requests_per_s"]) or 1)
        out[level] = row
    return out


def targets_met(levels: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    chosen = best_proxy(levels)
    out: dict[str, Any] = {"proxy_measured": chosen}
    for level, target in TARGET_OVER_INPROCESS.items():
        if level in levels[chosen]:
            value = ratio(levels[chosen][level]["requests_per_s"],
                          levels["inprocess"][level]["requests_per_s"])
            out[f"over_inprocess_c{level}"] = value
            out[f"over_inprocess_c{level}_target"] = target
            out[f"over_inprocess_c{level}_met"] = bool(value is not None and value >= target)
    if "proxy_batching" in levels and "1" in levels["proxy"]:
        extra = levels["proxy_batching"]["1"]["p50_ms"] - levels["proxy"]["1"]["p50_ms"]
        out["p50_c1_extra_ms"] = extra
        out["p50_c1_met"] = extra <= TARGET_P50_C1_EXTRA_MS
    out["errors_total"] = sum(r["errors"] for target in levels.values() for r in target.values())
    return out


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 20)")
    run_part(run, cli)


if __name__ == "__main__":
    main()
