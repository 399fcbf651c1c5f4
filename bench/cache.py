"""The prediction cache's worth and cost: single-row throughput with the cache on and off, for a
Zipf-distributed stream of repeated rows and for distinct rows.

Trains the champion once (without interval calibration: only prices are asked) and starts two
stacks on it as `make stack` runs them (batching on, the default), each with a Redis of its own:
one with the prediction cache on (PREDICTION_CACHE=true), one with it off. Two request streams,
one row per request, written as files wrk replays in order (bench/replay.lua):
  zipf      requests drawn from the distinct test rows with Zipf popularity (the row of rank k is
            asked with probability proportional to k^-s, s = 1.1 by default; ranks are given to
            rows by a seeded shuffle): a portal re-showing its popular listings;
  distinct  every request a row not asked before: the distinct test rows, then copies of them with
            the longitude moved by k * 1e-5 degrees (about a metre) for k = 1, 2, ...; the cache
            can only miss, so this measures what it costs.
Both files are long enough that wrk does not start over within one run (it reports max_cycle).
At each concurrency the two stacks are measured in turn, `rounds` times in alternating order.
Before each measured run (after its warm-up run) the cache's keys are deleted, so every run starts
cold. The hit rate comes from the proxy's /metrics (valuation_prediction_cache_rows_total by
outcome) over the measured run, beside the ideal one: the share of the stream's first n requests
that repeat an earlier request. Target: on distinct rows the cache costs at most 5% of throughput.

    python -m bench.cache [--data-dir DIR] [--quick] [--synthetic ROWS] [--duration S] [--rounds N]
                          [--zipf-s S] [--stream-rows N]
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    data_paths,
    distinct_rows,
    feature_records,
    load_tables,
    parser,
    progress,
    ratio,
    read_result,
    results_dir,
    servable_rows,
    start_stamp,
    write_result,
)
from bench.loadgen import PROXY_FORMAT, marked_bodies, require_wrk, run_wrk, write_bodies
from bench.processes import ProcessGroup, run_part
from bench.project_model import tracking_store, train_project_model
from bench.resources import process_tree
from bench.serving import Target, check_answers
from bench.stack_runner import RunningStack, start_stack
from serving.prediction.cache import row_digest
from valuation.model_runtime.schema import FEATURES

RESULT_NAME = "cache"
TARGET_DISTINCT_RATIO = 0.95  # cache on / off on distinct rows: it may cost at most 5 %
CACHE_ROWS_METRIC = "valuation_prediction_cache_rows_total"
OUTCOMES = ("hit", "miss", "bypass", "skipped")  # skipped: not looked up (low hit rate)
STREAMS = ("zipf", "distinct")
STACKS = ("cache_on", "cache_off")
LONGITUDE_STEP = 1e-5  # degrees between the copies of a row in the distinct stream
STREAM_SEED = 14


@dataclass(frozen=True)
class CachePlan:
    concurrency: tuple[int, ...]
    duration_s: float
    warmup_s: float
    rounds: int
    stream_rows: int  # requests per stream file: more than one run sends
    zipf_s: float

    @classmethod
    def for_args(cls, args: Any) -> CachePlan:
        quick = bool(args.quick)
        return cls(concurrency=(8,) if quick else (8, 32),
                   duration_s=args.duration or (3 if quick else 20),
                   warmup_s=1 if quick else 3,
                   rounds=args.rounds or (1 if quick else 3),
                   stream_rows=args.stream_rows or (6_000 if quick else 120_000),
                   zipf_s=args.zipf_s)


# --- the two streams -----------------------------------------------------------------------------

def zipf_indices(n_rows: int, n_requests: int, s: float, seed: int = STREAM_SEED) -> np.ndarray:
    """Which of `n_rows` rows each request asks for: rank k (1-based) with probability
    proportional to k^-s, bounded to the rows there are; ranks given to rows by a seeded shuffle."""
    weights = np.arange(1, n_rows + 1, dtype=np.float64) ** -s
    rng = np.random.default_rng(seed)
    ranks = rng.choice(n_rows, size=n_requests, p=weights / weights.sum())
    return rng.permutation(n_rows)[ranks]


def ideal_hit_rate(indices: Sequence[int], n_requests: int) -> float | None:
    """Share of the first `n_requests` of a stream that repeat an earlier request: what a cache
    that stores every answer before the next request arrives would hit."""
    sent = np.asarray(indices[:n_requests])
    if sent.size == 0:
        return None
    return 1.0 - len(np.unique(sent)) / sent.size


def distinct_stream(rows: pd.DataFrame, n_requests: int) -> pd.DataFrame:
    """`n_requests` rows, no two alike: `rows`, then copies with the longitude moved by
    k * LONGITUDE_STEP (k = 1, 2, ...); copies that leave the rules' bounds or repeat a row are
    dropped (checked on the cache's own row digest)."""
    copies, seen, total = [], set(), 0
    step = 0
    while total < n_requests:
        shifted = rows.assign(longitude=rows["longitude"].astype(float) + step * LONGITUDE_STEP)
        shifted = servable_rows(shifted)
        records = feature_records(shifted)
        keep = []
        for position, record in enumerate(records):
            digest = row_digest(record)
            if digest not in seen:
                seen.add(digest)
                keep.append(position)
        copies.append(shifted.iloc[keep])
        total += len(keep)
        step += 1
        if step > 10_000:
            raise ValueError("the distinct stream cannot be made from these rows")
    return pd.concat(copies, ignore_index=True).iloc[:n_requests]


@dataclass(frozen=True)
class Streams:
    files: dict[str, Path]
    zipf_indices: np.ndarray
    distinct_rows: int  # the distinct test rows the Zipf stream draws from


def write_streams(test: pd.DataFrame, plan: CachePlan, model_name: str, workdir: Path) -> Streams:
    base = distinct_rows(test)
    bodies = marked_bodies(feature_records(base), PROXY_FORMAT, model_name)
    indices = zipf_indices(len(base), plan.stream_rows, plan.zipf_s)
    zipf = write_bodies([bodies[i] for i in indices], workdir / "zipf-bodies.txt")
    distinct = write_bodies(marked_bodies(feature_records(distinct_stream(base[list(FEATURES)],
                                                                          plan.stream_rows)),
                                          PROXY_FORMAT, model_name), workdir / "distinct-bodies.txt")
    return Streams({"zipf": zipf, "distinct": distinct}, indices, len(base))


# --- the cache's counters and keys --------------------------------------------------------------

def cache_rows(metrics_url: str) -> dict[str, float] | None:
    """Rows the proxy looked up in its cache so far, by outcome; None when /metrics has no such
    counter (a build without the cache) or does not answer; the counter exists with the cache off."""
    try:
        text = httpx.get(metrics_url, timeout=10).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        # The parser names a counter's family without "_total"; before its first lookup the
        # counter is listed with no sample: no row yet.
        if family.name in (CACHE_ROWS_METRIC, CACHE_ROWS_METRIC.removesuffix("_total")):
            found = dict.fromkeys(OUTCOMES, 0.0)
            for sample in family.samples:
                if sample.name == CACHE_ROWS_METRIC:
                    outcome = sample.labels.get("outcome", "")
                    found[outcome] = found.get(outcome, 0.0) + sample.value
            return found
    return None


def rows_between(before: Mapping[str, float] | None, after: Mapping[str, float] | None) -> dict[str, Any]:
    """Lookups by outcome between two readings, and the hit rate among them."""
    if before is None or after is None:
        return {**dict.fromkeys(OUTCOMES), "hit_rate": None}
    delta = {outcome: after.get(outcome, 0.0) - before.get(outcome, 0.0) for outcome in OUTCOMES}
    looked_up = sum(delta.values())
    return {**{k: int(v) for k, v in delta.items()},
            "hit_rate": delta["hit"] / looked_up if looked_up else None}


def clear_cache(redis_port: int | None, key_prefix: str) -> int:
    """Delete the cache's keys (`key_prefix:*`) from a stack's own Redis; how many there were."""
    from redis import Redis

    from serving.settings import secret

    if redis_port is None:
        return 0
    client = Redis(host="127.0.0.1", port=redis_port, password=secret("REDIS_PASSWORD"))
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{key_prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
        return deleted
    finally:
        client.close()


# --- measuring ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CacheStack:
    target: Target
    stack: RunningStack
    key_prefix: str

    @property
    def metrics_url(self) -> str:
        return f"{self.stack.proxy_url}/metrics"


def measure_stream(stack: CacheStack, stream: str, bodies: Path, connections: int,
                   plan: CachePlan, indices: np.ndarray | None) -> dict[str, Any]:
    """A warm-up run, the cache emptied, then the measured run from the stream's first request."""
    target = stack.target
    run_wrk(target.url, bodies, connections, plan.warmup_s, api_key=target.api_key)
    time.sleep(0.5)  # the cache writes behind the answers: let the warm-up's writes land first
    clear_cache(stack.stack.redis_port, stack.key_prefix)
    before_rows, before_cpu = cache_rows(stack.metrics_url), target.cpu_s()
    result = run_wrk(target.url, bodies, connections, plan.duration_s, api_key=target.api_key)
    server_cpu = target.cpu_s() - before_cpu
    out = {**result.to_dict(), **rows_between(before_rows, cache_rows(stack.metrics_url))}
    out["server_cpu_ms_per_request"] = 1000 * server_cpu / result.requests if result.requests else None
    out["ideal_hit_rate"] = (ideal_hit_rate(indices, result.requests) if indices is not None
                             else 0.0 if result.max_cycle == 0 else None)
    hits = f"hit rate {out['hit_rate']:.3f} (ideal {out['ideal_hit_rate']:.3f})" \
        if out["hit_rate"] is not None and out["ideal_hit_rate"] is not None else "no cache"
    progress(f"{target.name:>9} {stream:>8} c={connections:<3} {result.requests_per_s:8.1f} req/s  "
             f"p50 {result.p50_ms:7.2f} ms  errors {result.errors}  {hits}"
             + (f"  (stream started over {result.max_cycle}x)" if result.max_cycle else ""))
    return out


def summarize(runs: Mapping[str, Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]],
              concurrency: Sequence[int]) -> dict[str, dict[str, dict[str, Any]]]:
    """{stream: {concurrency: medians over the rounds of each stack, on/off ratio, hit rates}}."""
    def mid(values: list[Any]) -> float | None:
        present = [v for v in values if v is not None]
        return float(median(present)) if present else None

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for stream in STREAMS:
        out[stream] = {}
        for level in map(str, concurrency):
            on, off = runs["cache_on"][stream][level], runs["cache_off"][stream][level]
            line = {
                "on_rps": mid([r["requests_per_s"] for r in on]),
                "off_rps": mid([r["requests_per_s"] for r in off]),
                "on_p50_ms": mid([r["p50_ms"] for r in on]),
                "off_p50_ms": mid([r["p50_ms"] for r in off]),
                "on_cpu_ms": mid([r["server_cpu_ms_per_request"] for r in on]),
                "off_cpu_ms": mid([r["server_cpu_ms_per_request"] for r in off]),
                "hit_rate": mid([r["hit_rate"] for r in on]),
                "ideal_hit_rate": mid([r["ideal_hit_rate"] for r in on]),
                "bypass": sum(r["bypass"] or 0 for r in on),
                "errors": sum(r["errors"] for r in (*on, *off)),
                "started_over": max(r["max_cycle"] for r in (*on, *off)),
            }
            line["ratio"] = ratio(line["on_rps"], line["off_rps"])
            out[stream][level] = line
    return out


def targets(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    ratios = {level: line["ratio"] for level, line in summary["distinct"].items()}
    return {"distinct_ratio_target": TARGET_DISTINCT_RATIO, "distinct_ratios": ratios,
            "met": all(r is not None and r >= TARGET_DISTINCT_RATIO for r in ratios.values()),
            "errors_total": sum(line["errors"] for lines in summary.values() for line in lines.values())}


def training_overrides(quick: bool) -> list[str]:
    """The champion without its interval calibration: only plain prices are asked here, and the
    calibration's refits would only lengthen the run. A smoke run also trains on one thread:
    LightGBM's threads wait on each other for minutes on a machine other work loads."""
    return ["intervals.enabled=false", *(["model.params.n_jobs=1"] if quick else [])]


def run(args: Any) -> dict[str, Any]:
    from bench.report_cache import cache_section
    from valuation.config import load_config

    require_wrk()
    plan = CachePlan.for_args(args)
    stamp = start_stamp()
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp_name, \
            tracking_store(Path(tmp_name)) as tracking_uri, \
            ProcessGroup(Path(tmp_name) / "logs") as group:
        tmp = Path(tmp_name)
        paths = data_paths(args, tmp)
        _, test = load_tables(paths)
        streams = write_streams(test, plan, load_config([]).registry.model_name, tmp)
        progress(f"streams: {plan.stream_rows} requests each; Zipf s={plan.zipf_s} over "
                 f"{streams.distinct_rows} distinct rows")
        result = train_project_model(paths, extra=training_overrides(args.quick))
        stacks: dict[str, CacheStack] = {}
        for name in STACKS:
            prefix = f"bench-cache-{uuid.uuid4().hex[:8]}"
            env = {"PREDICTION_CACHE": str(name == "cache_on").lower(), "PREDICTION_CACHE_PREFIX": prefix}
            stack = start_stack(group, tmp, tracking_uri, name=name.replace("_", "-"),
                                env_overrides=env, own_redis=True)
            target = Target(name, f"{stack.proxy_url}/predict", streams.files["zipf"], stack.api_key,
                            [psutil.Process(stack.proxy_pid), *process_tree(stack.model_server_pid)])
            check_answers(target, streams.files["zipf"].read_text().split("\n", 1)[0])
            stacks[name] = CacheStack(target, stack, prefix)
        runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {
            name: {stream: {str(c): [] for c in plan.concurrency} for stream in STREAMS} for name in STACKS}
        for round_number in range(plan.rounds):
            progress(f"round {round_number + 1} of {plan.rounds}")
            for connections in plan.concurrency:
                for stream in STREAMS:
                    order = STACKS if round_number % 2 == 0 else tuple(reversed(STACKS))
                    for name in order:
                        indices = streams.zipf_indices if stream == "zipf" else None
                        runs[name][stream][str(connections)].append(measure_stream(
                            stacks[name], stream, streams.files[stream], connections, plan, indices))

    summary = summarize(runs, plan.concurrency)
    data = {**stamp, "data": paths.describe(), "distinct_rows": streams.distinct_rows,
            "plan": asdict(plan), "project": {"model_uri": result.model_uri, "version": result.version},
            "stacks": {"cache_on": "PREDICTION_CACHE=true", "cache_off": "PREDICTION_CACHE=false"},
            "runs": runs, "summary": summary, "targets": targets(summary)}
    out_dir = results_dir(args)
    path = write_result(out_dir, RESULT_NAME, data, args.quick)
    # The section from what was written: write_result adds the machine it ran on.
    (out_dir / f"{RESULT_NAME}.md").write_text(cache_section(read_result(out_dir, RESULT_NAME)) + "\n")
    for stream, lines in summary.items():
        for level, line in lines.items():
            progress(f"{stream} c={level}: cache on {line['on_rps']:.1f} req/s, off {line['off_rps']:.1f} "
                     f"req/s (on/off {line['ratio']:.3f}), hit rate {line['hit_rate']}")
    progress(f"target (distinct on/off >= {TARGET_DISTINCT_RATIO}): "
             f"{'met' if data['targets']['met'] else 'NOT met'}; wrote {path}")
    return data


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 20)")
    cli.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3)")
    cli.add_argument("--zipf-s", type=float, default=1.1, help="the Zipf exponent (default 1.1)")
    cli.add_argument("--stream-rows", type=int, default=None,
                     help="requests in each stream file (default 120000; --quick 6000)")
    run_part(run, cli)


if __name__ == "__main__":
    main()
