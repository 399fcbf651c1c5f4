"""`make drift-demo`: the monitoring loop proved on the real data (issue 11, section 6).

Trains the champion on train.csv by the project's pipeline, starts a fresh stack (`python -m
serving.devstack`, as `make stack`) and replays one stream through it, built at run time from
test.csv (bench/drift_scenario.py; nothing is written but aggregates). The test rows are split in
two disjoint halves, one per act.

Act one, on the first half:
- **control**: stable traffic (test rows drawn uniformly, observed at their own price); any alarm
  here is a false alarm;
- **shift**: the market moves: two sectors become 60% of the traffic and sell 20% above the
  model's prices. The monitoring job should flag drift and trigger the retraining, whose
  challenger trains on train.csv plus the feedback rows.

Act two, on the second half (rows the challenger never trained on; bench/drift_challenge.py):
- **shadow**: the operator turns shadow traffic on (`valuation traffic set --shadow 1`); the
  champion answers, the challenger prices the same rows in the background, feedback arrives;
- the operator runs `valuation promote --challenger`: the gate compares both on the shadowed rows
  with feedback, and moves `champion` only if the challenger is better by the margin;
- **promoted**: the same shifted traffic, now answered by the new champion.

Rows are priced through /predict (`rows_per_request` rows a request), every other row gets its
observed price through /feedback, and after every chunk the monitoring job runs on demand (POST
/monitoring/run, run by the stack's worker) instead of hourly, with the shipped configuration
(window of the last 5,000 predictions, Evidently's thresholds, the retraining policy, the gate).

    python -m bench.drift_demo [--data-dir DIR] [--quick] [--synthetic ROWS] [--report-only]
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import (
    data_paths,
    load_tables,
    parser,
    progress,
    read_result,
    results_dir,
    servable_rows,
    start_stamp,
    write_result,
)
from bench.drift_challenge import StackOperator, challenge
from bench.drift_replay import StackClient, medape
from bench.drift_report import write_markdown, write_timeline
from bench.drift_scenario import (
    OBSERVED,
    Scenario,
    choose_scenario,
    sector_share,
    shifted_stream,
    stable_stream,
)
from bench.processes import ProcessGroup, run_part
from bench.project_model import tracking_store, train_project_model
from bench.stack_runner import start_stack

RESULT_NAME = "drift_demo"
# The champion and the retraining skip the price intervals' 5-fold calibration (the demo is about
# the point prices it monitors, and each fold is a full refit), and LightGBM runs one thread: on a
# machine busy with the stack, its OpenMP threads spin against the other processes.
FAST_TRAINING = ("intervals.enabled=false", "model.params.n_jobs=1")
DECIDING = ("wasserstein_normalized", "jensenshannon", "ks_pvalue")


class Plan:
    def __init__(self, args: Any) -> None:
        quick = bool(args.quick)
        # the control period, and the shifted one; rows between two monitoring runs
        self.period_rows = args.period_rows or (800 if quick else 1500)
        self.step = args.step or (200 if quick else 250)
        # the second act: shadowed, then served by the promoted challenger
        self.act_rows = args.act_rows or (600 if quick else 1000)
        self.rows_per_request = 5
        self.labelled_every = 2  # every other row gets its observed price
        self.training_timeout_s = 900 if quick else 1500


def run(args: Any) -> dict[str, Any]:
    from valuation.config import load_config

    stamp, plan = start_stamp(), Plan(args)
    config = load_config(config_name="serving")
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp_name, \
            tracking_store(Path(tmp_name)) as tracking_uri, \
            ProcessGroup(Path(tmp_name) / "logs") as group:
        tmp = Path(tmp_name)
        paths = data_paths(args, tmp)
        _, test = load_tables(paths)
        first, second = halves(demo_table(test, float(load_config([]).cleaning.min_price)))
        scenario = choose_scenario(first)
        progress(f"scenario: {scenario.describe()}")
        champion = train_project_model(paths, extra=FAST_TRAINING)
        operator = StackOperator(tracking_uri, f"sqlite:///{tmp / 'predictions.db'}",
                                 f"bench-traffic:{uuid.uuid4().hex[:8]}", tmp / "cli-audit.jsonl")
        stack = start_stack(group, tmp, tracking_uri, name="drift-demo",
                            env_overrides=stack_env(paths, args.quick, operator), ready_timeout_s=900)
        client = StackClient(stack.proxy_url, stack.api_key, config.registry.model_name,
                             _redis(config), tracking_uri, plan.rows_per_request)
        head = {**stamp, "data": paths.describe(), "plan": plan.__dict__,
                "scenario": {**scenario.__dict__, "described": scenario.describe()},
                "champion_version": str(champion.version), **settings_figures(config)}
        out = results_dir(args)
        replay = Replay(client, scenario, int(config.monitoring_job.window.min_rows),
                        lambda figures: write_result(out, RESULT_NAME, {**head, **figures,
                                                                        "partial": True}, args.quick))
        try:
            replayed = act_one(replay, first, scenario, plan)
            replayed["retraining"] = _retraining(client, replay.runs, plan)
            replayed["challenge"] = act_two(operator, replay, second, scenario, plan,
                                            replayed["retraining"], str(config.registry.model_name))
            replayed.update(replay.figures())
            replayed["aliases"] = _aliases(tracking_uri, config.registry)
        finally:
            client.close()

    data = {**head, **replayed}
    write_result(out, RESULT_NAME, data, args.quick)  # the raw figures first: a report can be redone
    return write_report(out, data, args.quick)


def write_report(out: Path, data: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Summary, timeline and markdown from the replay's figures; the JSON rewritten with them."""
    data["summary"] = summarise(data)
    data["plot"] = write_timeline(out / f"{RESULT_NAME}_timeline.png", data)
    path = write_result(out, RESULT_NAME, data, quick)
    write_markdown(out / f"{RESULT_NAME}.md", data)
    progress(f"wrote {path} and {out / f'{RESULT_NAME}.md'}")
    return data


def rewrite_report(args: Any) -> dict[str, Any]:
    """`--report-only`: the report again from the JSON of the last run (no stack, no training)."""
    out = results_dir(args)
    data = read_result(out, RESULT_NAME)
    if data is None:
        raise SystemExit(f"no {RESULT_NAME}.json in {out}: run the demo first")
    return write_report(out, data, bool(data.get("quick")))


def settings_figures(config: Any) -> dict[str, Any]:
    """The shipped settings the run was judged by."""
    return {"thresholds": dict(config.drift.thresholds),
            "policy": {k: config.retraining[k] for k in ("margin", "live_metric", "min_feedback_rows",
                                                         "watched_features", "cooldown_s")},
            "window": dict(config.monitoring_job.window)}


def demo_table(test: pd.DataFrame, min_price: float) -> pd.DataFrame:
    """The test rows a stream draws from: rows the service accepts, with a real price (the
    sub-`min_price` prices are typos the training cleans away; as feedback they would be noise)."""
    rows = servable_rows(test)
    return rows[rows["price"] >= min_price].reset_index(drop=True)


def stack_env(paths: Any, quick: bool, operator: StackOperator) -> dict[str, str]:
    """The demo's stack: monitoring on demand only, and the retraining trained on the same files
    (no CV, no interval calibration: a challenger in minutes)."""
    overrides = [f"data.train_path={paths.train}", f"data.test_path={paths.test}", "cv.folds=0",
                 *FAST_TRAINING]
    if quick:  # a tiny synthetic model may miss the real-data thresholds; a smoke run registers it
        overrides.append("registry.register_unvalidated=true")
    # A busy machine starts each part slowly: 120 s per part is not always enough.
    # The store and the traffic key the operator's commands are pointed at too.
    return {"MONITORING_EVERY_S": "0", "RETRAINING_OVERRIDES": " ".join(overrides),
            "STACK_READY_TIMEOUT_S": "300", "PREDICTION_STORE_URL": operator.store_url,
            "TRAFFIC_REDIS_KEY": operator.traffic_key}


def halves(table: pd.DataFrame, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two disjoint halves of the rows: the first feeds act one (its feedback joins the
    retraining's rows), the second act two, so the gate judges the challenger on rows it never
    trained on."""
    order = np.random.default_rng(seed).permutation(len(table))
    middle = len(order) // 2
    return (table.iloc[order[:middle]].reset_index(drop=True),
            table.iloc[order[middle:]].reset_index(drop=True))


def act_one(replay: Replay, table: pd.DataFrame, scenario: Scenario, plan: Plan) -> dict[str, Any]:
    """The control period (stable traffic), then the shifted period of the same length."""
    started = time.monotonic()
    replay.phase("control", stable_stream(table, plan.period_rows, seed=100), plan)
    replay.phase("shift", shifted_stream(table, plan.period_rows, scenario, seed=101), plan)
    return {"took_s": round(time.monotonic() - started, 1)}


def act_two(operator: StackOperator, replay: Replay, table: pd.DataFrame, scenario: Scenario,
            plan: Plan, retraining: dict[str, Any] | None, model_name: str) -> dict[str, Any] | None:
    """The registered challenger shadowed, gated and promoted (bench/drift_challenge.py), on
    shifted traffic drawn from the other half of the rows."""
    if not retraining or retraining.get("status") != "finished" or not retraining.get("version"):
        progress("no challenger was registered: the second act (shadow, gate, promotion) is skipped")
        return None
    streams = {"shadow": shifted_stream(table, plan.act_rows, scenario, seed=102),
               "promoted": shifted_stream(table, plan.act_rows, scenario, seed=103)}
    return challenge(operator, replay.client, lambda name, frame: replay.phase(name, frame, plan),
                     lambda: replay.served, streams, str(retraining["version"]), model_name)


class Replay:
    """The stream so far: rows priced, their feedback, a monitoring run every `plan.step` rows."""

    def __init__(self, client: StackClient, scenario: Scenario, min_rows: int,
                 checkpoint: Any = None) -> None:
        self.client, self.scenario, self.min_rows = client, scenario, min_rows
        self.checkpoint = checkpoint
        self.served, self.chunks, self.runs = 0, [], []
        self.labelled: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    def phase(self, phase: str, frame: pd.DataFrame, plan: Plan) -> None:
        for start in range(0, len(frame), plan.step):
            chunk = frame.iloc[start:start + plan.step].reset_index(drop=True)
            priced = self.client.price(chunk)
            labelled = (np.arange(len(chunk)) + self.served) % plan.labelled_every == 0
            recorded = self.client.feedback(chunk, priced, labelled)
            self.served += len(chunk)
            predicted, observed = np.asarray(priced.prices), chunk[OBSERVED].to_numpy(dtype=float)
            inside = chunk["sector"].astype(str).isin(self.scenario.sectors).to_numpy()
            self.labelled.setdefault(phase, []).append(
                (predicted[labelled], observed[labelled], inside[labelled]))
            self.chunks.append({"phase": phase, "served": self.served, "rows": len(chunk),
                                "feedback_recorded": recorded, "version": priced.version,
                                "medape": medape(predicted[labelled], observed[labelled]),
                                "sector_share": sector_share(chunk, self.scenario.sectors)})
            if self.served >= self.min_rows:
                self.runs.append(_monitoring_run(self.client, phase, self.served))
                if self.checkpoint is not None:
                    # Every monitoring run's figures are kept as they come: a run cut short still
                    # has a report (--report-only), marked partial.
                    self.checkpoint({**self.figures(), "retraining": None, "challenge": None})

    def figures(self) -> dict[str, Any]:
        return {"chunks": self.chunks, "runs": self.runs,
                "medape_by_phase": _phase_medape(self.labelled)}


def _monitoring_run(client: StackClient, phase: str, served: int) -> dict[str, Any]:
    report = client.monitor()
    metrics = report.pop("metrics")
    statistics = {key.removeprefix("drift.").removeprefix("prediction_drift."): value
                  for key, value in metrics.items()
                  if key.startswith(("drift.", "prediction_drift.")) and key.endswith(DECIDING)}
    alarm = bool(report.get("drifted_features")) or bool(report.get("prediction_drifted"))
    record = {"phase": phase, "served": served, "alarm": alarm, "statistics": statistics,
              **{k: report.get(k) for k in ("window_rows", "drifted_features", "prediction_drifted",
                                            "feedback_rows", "live_medape", "test_medape",
                                            "retraining_triggered", "retraining_reason",
                                            "retraining_job_id", "market_index", "explanation",
                                            "run_id")}}
    if alarm:  # what Prometheus would read from the proxy for the ValuationFeatureDrift alert
        record["drifted_metric_lines"] = client.drifted_metric_lines()
    progress(f"{phase} at {served} rows: window {record['window_rows']}, drifted "
             f"{record['drifted_features'] or 'none'}, prediction drift "
             f"{record['prediction_drifted']}, live MdAPE {_fmt(record['live_medape'])} "
             f"(test {_fmt(record['test_medape'])}), retraining "
             f"{'TRIGGERED' if record['retraining_triggered'] else 'no'}")
    return record


def _retraining(client: StackClient, runs: list[dict[str, Any]],
                plan: Plan) -> dict[str, Any] | None:
    triggered = [run for run in runs if run["retraining_triggered"]]
    if not triggered:
        return None
    first = triggered[0]
    started = time.monotonic()
    progress(f"waiting for the retraining job {first['retraining_job_id']}")
    status = client.training(first["retraining_job_id"], plan.training_timeout_s)
    return {"served": first["served"], "phase": first["phase"], "reason": first["retraining_reason"],
            "market_index": first.get("market_index"),
            "explanation": first["explanation"], "job_id": first["retraining_job_id"],
            "status": status.get("status"), "version": status.get("version"),
            "validated": status.get("validated"), "champion_moved": status.get("champion_moved"),
            "metrics": status.get("metrics"), "error": status.get("error"),
            "waited_after_stream_s": round(time.monotonic() - started, 1),
            "times": {k: status.get(k) for k in ("enqueued_at", "started_at", "ended_at")}}


def _phase_medape(labelled: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]
                  ) -> dict[str, dict[str, Any]]:
    out = {}
    for phase, parts in labelled.items():
        predicted, observed, inside = (np.concatenate([p[i] for p in parts]) for i in range(3))
        out[phase] = {"rows": int(len(observed)), "medape": medape(predicted, observed),
                      "medape_shifted_sectors": medape(predicted[inside], observed[inside]),
                      "medape_other_sectors": medape(predicted[~inside], observed[~inside])}
    return out


def _aliases(tracking_uri: str, registry: Any) -> dict[str, str | None]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    found: dict[str, str | None] = {}
    for alias in (str(registry.champion_alias), str(registry.challenger_alias)):
        try:
            found[alias] = str(client.get_model_version_by_alias(str(registry.model_name), alias).version)
        except MlflowException:
            found[alias] = None
    return found


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    """The figures the report and the README quote."""
    shift_start = data["plan"]["period_rows"]
    control = [run for run in data["runs"] if run["phase"] == "control"]
    after = [run for run in data["runs"] if run["phase"] == "shift"]
    alarm = next((run for run in after if run["alarm"]), None)
    retraining = data.get("retraining")
    control_statistics: dict[str, float] = {}
    for run in control:
        for name, value in run["statistics"].items():
            if name.endswith(("wasserstein_normalized", "jensenshannon")):
                control_statistics[name] = max(control_statistics.get(name, 0.0), value)
    ratios = [run["live_medape"] / run["test_medape"] for run in control
              if run.get("live_medape") and run.get("test_medape")]
    phases = data["medape_by_phase"]
    empty = {"medape": None, "medape_shifted_sectors": None, "medape_other_sectors": None}
    phases = {name: phases.get(name, empty) for name in ("control", "shift", "shadow", "promoted")}
    retraining = retraining or None
    challenge = data.get("challenge") or {}
    gate = challenge.get("gate") or {}
    return {
        "alarm_after_shifted_rows": alarm["served"] - shift_start if alarm else None,
        "alarm_features": alarm["drifted_features"] if alarm else None,
        "alarm_prediction_drift": alarm["prediction_drifted"] if alarm else None,
        "medape_before": phases["control"]["medape"],
        "medape_after": phases["shift"]["medape"],
        "medape_after_shifted_sectors": phases["shift"]["medape_shifted_sectors"],
        "medape_after_other_sectors": phases["shift"]["medape_other_sectors"],
        "test_medape": next((r["test_medape"] for r in data["runs"] if r.get("test_medape")), None),
        "retraining_after_shifted_rows": retraining["served"] - shift_start if retraining else None,
        "retraining_reason": retraining["reason"] if retraining else None,
        "challenger_version": retraining["version"] if retraining else None,
        "challenger_registered": bool(retraining and retraining["version"]
                                      and data.get("aliases", {}).get("challenger") == retraining["version"]),
        "champion_unchanged": (data.get("aliases", {}).get("champion", data["champion_version"])
                               == data["champion_version"]) if not challenge else None,
        "false_alarms": len([run for run in control
                             if run["alarm"] or run["retraining_triggered"]]),
        "control_runs": len(control),
        "control_max_statistics": control_statistics,
        "control_max_live_over_test": max(ratios) if ratios else None,
        # act two: the challenger shadowed, gated, promoted
        "shadowed": bool(challenge),
        "shadow_pricings": challenge.get("shadow_priced"),
        "gate_rows": gate.get("rows"), "gate_metric": gate.get("metric"),
        "gate_champion_figure": gate.get("champion_figure"),
        "gate_challenger_figure": gate.get("challenger_figure"),
        "gate_improvement": gate.get("improvement"), "gate_margin": gate.get("margin"),
        "gate_passed": gate.get("passed"), "gate_reason": gate.get("reason"),
        "promoted": challenge.get("promote_exit") == 0 and data.get("aliases", {}).get(
            "champion") == challenge.get("challenger"),
        "medape_shadow_period": phases["shadow"]["medape"],
        "medape_after_promotion": phases["promoted"]["medape"],
        "medape_after_promotion_shifted_sectors": phases["promoted"]["medape_shifted_sectors"],
        "medape_after_promotion_other_sectors": phases["promoted"]["medape_other_sectors"],
    }


def _redis(config: Any) -> Any:
    from serving.jobs.queue import redis_connection

    return redis_connection(config)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--period-rows", type=int, default=None,
                     help="predictions in the control period and in the shifted one (default 1500)")
    cli.add_argument("--act-rows", type=int, default=None,
                     help="predictions shadowed, and then served by the promoted challenger (default 1000)")
    cli.add_argument("--step", type=int, default=None,
                     help="predictions between two monitoring runs (default 250)")
    cli.add_argument("--report-only", action="store_true",
                     help="rewrite the report from the last run's JSON (no stack, no training)")
    args = cli.parse_args()
    if args.report_only:
        rewrite_report(args)
        return
    run_part(run, cli)


if __name__ == "__main__":
    main()
