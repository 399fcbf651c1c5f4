"""The prediction store's cost: single-row serving with the store on and off, in the same run.

Trains the champion once and starts two stacks on it, as `make stack` runs them: one writing every
priced row to its prediction store (a SQLite file, the embedded default; --store-url for
PostgreSQL), one with the store off (PREDICTION_STORE_ENABLED=false). wrk replays distinct test
rows, one per request, through each proxy; at each concurrency the two are measured in turn,
`rounds` times, so background load affects both alike. Then the store is read back: every
answered row must be there, and nothing dropped. Target: throughput with the store on is at least
90% of the figure with it off.

    python -m bench.prediction_store [--data-dir DIR] [--quick] [--synthetic ROWS] [--duration S]
                                     [--rounds N] [--store-url URL]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from statistics import median
from typing import Any

import httpx
import psutil

from bench.common import (
    data_paths,
    distinct_rows,
    feature_records,
    load_tables,
    machine_info,
    parser,
    progress,
    ratio,
    results_dir,
    start_stamp,
    write_result,
)
from bench.loadgen import PROXY_FORMAT, marked_bodies, require_wrk, write_bodies
from bench.processes import ProcessGroup, run_part
from bench.project_model import tracking_store, train_project_model
from bench.resources import process_tree
from bench.serving import Target, check_answers, measure
from bench.stack_runner import start_stack

RESULT_NAME = "prediction_store"
TARGET_RATIO = 0.90  # store on / store off, single-row throughput (the bound)


class _Plan:
    def __init__(self, args: Any) -> None:
        self.concurrency = (1, 8)
        self.duration_s = args.duration or (3 if args.quick else 20)
        self.warmup_s = 1 if args.quick else 3
        self.rounds = args.rounds or (1 if args.quick else 3)


def run(args: Any) -> dict[str, Any]:
    require_wrk()
    plan = _Plan(args)
    stamp = start_stamp()
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp_name, \
            tracking_store(Path(tmp_name)) as tracking_uri, \
            ProcessGroup(Path(tmp_name) / "logs") as group:
        tmp = Path(tmp_name)
        paths = data_paths(args, tmp)
        _, test = load_tables(paths)
        records = feature_records(distinct_rows(test))
        from valuation.config import load_config

        bodies = write_bodies(marked_bodies(records, PROXY_FORMAT, load_config([]).registry.model_name),
                              tmp / "proxy-bodies.txt")
        result = train_project_model(paths)
        store_url = args.store_url or f"sqlite:///{tmp / 'store-on' / 'predictions.db'}"
        stacks = {
            "store_on": start_stack(group, tmp, tracking_uri, name="store-on",
                                    env_overrides={"PREDICTION_STORE_URL": store_url}),
            "store_off": start_stack(group, tmp, tracking_uri, name="store-off",
                                     env_overrides={"PREDICTION_STORE_ENABLED": "false"}),
        }
        targets = {name: Target(name, f"{stack.proxy_url}/predict", bodies, stack.api_key,
                                [psutil.Process(stack.proxy_pid), *process_tree(stack.model_server_pid)])
                   for name, stack in stacks.items()}
        for target in targets.values():
            check_answers(target, bodies.read_text().split("\n", 1)[0])
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {str(c): [] for c in plan.concurrency}
                                                            for n in targets}
        for round_number in range(plan.rounds):
            progress(f"round {round_number + 1} of {plan.rounds}")
            for connections in plan.concurrency:
                order = list(targets) if round_number % 2 == 0 else list(reversed(targets))
                for name in order:
                    runs[name][str(connections)].append(measure(targets[name], connections, plan))
        store = _store_check(stacks["store_on"], store_url)

    summary = _summary(runs, plan.concurrency)
    data = {**stamp, "data": paths.describe(), "distinct_bodies": len(records),
            "plan": plan.__dict__, "project": {"model_uri": result.model_uri, "version": result.version},
            "store_url": _redacted(store_url), "runs": runs, "summary": summary, "store": store,
            "targets": {"ratio_target": TARGET_RATIO,
                        "met": all(s["ratio"] is not None and s["ratio"] >= TARGET_RATIO
                                   for s in summary.values()),
                        "no_rows_lost": store["dropped"] == 0 and store["missing"] == 0}}
    path = write_result(results_dir(args), RESULT_NAME, data, args.quick)
    _write_markdown(results_dir(args) / f"{RESULT_NAME}.md", data)
    for connections, line in summary.items():
        progress(f"c={connections}: store on {line['on_rps']:.1f} req/s, off {line['off_rps']:.1f} "
                 f"req/s -> ratio {line['ratio']:.3f} (target >= {TARGET_RATIO})")
    progress(f"store: {store['rows']} rows for {store['answered']} answered requests, "
             f"{store['dropped']} dropped; wrote {path}")
    return data


def _summary(runs: dict[str, dict[str, list[dict[str, Any]]]], concurrency) -> dict[str, dict[str, Any]]:
    """Median throughput of the rounds per target and concurrency, and their ratio."""
    out = {}
    for connections in map(str, concurrency):
        on = median(r["requests_per_s"] for r in runs["store_on"][connections])
        off = median(r["requests_per_s"] for r in runs["store_off"][connections])
        on_p50 = median(r["p50_ms"] for r in runs["store_on"][connections])
        off_p50 = median(r["p50_ms"] for r in runs["store_off"][connections])
        out[connections] = {"on_rps": on, "off_rps": off, "ratio": ratio(on, off),
                            "on_p50_ms": on_p50, "off_p50_ms": off_p50}
    return out


def _store_check(stack: Any, store_url: str) -> dict[str, Any]:
    """Rows in the store against requests the proxy answered, and the drop counter."""
    from sqlalchemy import func, select

    from serving.prediction_store.engine import open_engine
    from serving.prediction_store.tables import Prediction

    metrics = httpx.get(f"{stack.proxy_url}/metrics", timeout=10).text
    answered = _metric_sum(metrics, "valuation_predictions_total")
    dropped = _metric_sum(metrics, "valuation_prediction_store_dropped_total")
    written = _metric_sum(metrics, "valuation_prediction_store_written_total")
    engine = open_engine(store_url)
    with engine.connect() as connection:
        rows = connection.execute(select(func.count()).select_from(Prediction.__table__)).scalar_one()
    engine.dispose()
    # Rows still buffered at the moment of reading are at most one flush interval's worth.
    return {"answered": int(answered), "rows": int(rows), "written": int(written),
            "dropped": int(dropped), "missing": max(0, int(answered) - int(written) - int(dropped))}


def _metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def _redacted(url: str) -> str:
    from serving.redaction import redact_uri

    return redact_uri(url)


def _write_markdown(path: Path, data: dict[str, Any]) -> None:
    machine = data.get("machine") or machine_info()
    lines = [
        "## Prediction store: single-row throughput with the store on and off",
        "",
        f"Two stacks on the same champion, measured in turn ({data['plan']['rounds']} round(s) of "
        f"{data['plan']['duration_s']} s per concurrency; medians). Store: `{data['store_url']}`. "
        f"Machine: {machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores, load average "
        f"{data.get('load_avg_1m_at_start')} at the start: other work ran on it at the same time.",
        "",
        "| concurrency | store off (req/s) | store on (req/s) | on / off | p50 off (ms) | p50 on (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for connections, line in data["summary"].items():
        lines.append(f"| {connections} | {line['off_rps']:.1f} | {line['on_rps']:.1f} | "
                     f"{line['ratio']:.3f} | {line['off_p50_ms']:.2f} | {line['on_p50_ms']:.2f} |")
    store = data["store"]
    lines += ["", f"Target on/off >= {TARGET_RATIO}: {'met' if data['targets']['met'] else 'NOT met'}. "
              f"The store held {store['rows']} rows for {store['answered']} answered rows "
              f"({store['dropped']} dropped).", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 20)")
    cli.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3)")
    cli.add_argument("--store-url", default=None, help="the store of the 'on' stack (default: SQLite)")
    run_part(run, cli)


if __name__ == "__main__":
    main()
