"""Training cost: `mlflow run` per shipped model config against a bare fit of the same estimator, and
the default model's pipeline at growing multiples of the training rows (synthetic, same distribution).

Every run is a separate process, measured from outside: wall time, and peak memory both as the
highest sampled RSS sum over the process tree and as the kernel's max RSS of the largest process.
`mlflow run` uses `cv.folds=0` (one fit, like the bare fit); the train step's own `fit_seconds`
metric is read back from the store, so the report splits a run into fitting and everything else
(start-up, ingest checks, logging, evaluation, registration).

    python -m bench.training [--data-dir DIR] [--quick] [--synthetic ROWS] [--scales 1,10,100]
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    PROJECT_ROOT,
    DataPaths,
    data_paths,
    parser,
    progress,
    results_dir,
    start_stamp,
    write_result,
)
from bench.processes import sigterm_as_interrupt
from bench.project_model import pipeline_overrides, tracking_store
from bench.resources import measure_command

RESULT_NAME = "training"
EXPERIMENT = "bench-training"
DEFAULT_MODEL = "lgbm"
REAL_TRAIN_ROWS = 16212  # the size of the client's train.csv: the "1x" of the scaling curve
SCALING_TEST_ROWS = 6949  # the size of its test.csv, fixed for every scale
RESULT_PREFIX = "BENCH_JSON "


@dataclass(frozen=True)
class TrainingPlan:
    models: tuple[str, ...]
    scales: tuple[float, ...]
    fallback_scales: dict[float, float]  # a scale that does not fit the budget -> a smaller one to try
    budget_s: float  # for the whole scaling curve
    run_timeout_s: float
    overrides: tuple[str, ...] = ()  # Hydra overrides for every run and bare fit (--quick: fewer trees)

    @classmethod
    def for_args(cls, args: Any) -> TrainingPlan:
        if args.quick:
            return cls((DEFAULT_MODEL,), args.scales or (0.05, 0.1), {}, 600, 600,
                       ("model.params.n_estimators=100",))
        return cls(shipped_models(), args.scales or (1, 10, 100), {100: 30, 10: 3}, args.budget_s, 3600)


def shipped_models() -> tuple[str, ...]:
    """The conf/model/ options, default first."""
    names = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "model").glob("*.yaml"))
    return tuple(sorted(names, key=lambda n: n != DEFAULT_MODEL))


def mlflow_run_command(model: str, paths: DataPaths, extra: Sequence[str] = ()) -> list[str]:
    overrides = " ".join(pipeline_overrides(paths, extra=extra))
    return [sys.executable, "-m", "mlflow", "run", str(PROJECT_ROOT), "--env-manager", "local",
            "--experiment-name", EXPERIMENT, "-P", f"model={model}", "-P", f"overrides={overrides}"]


def bare_fit_command(model: str, train_csv: Path, extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "bench.training", "--bare-fit", model, "--train-csv", str(train_csv),
            "--overrides", " ".join(extra)]


def measure_mlflow_run(model: str, paths: DataPaths, tracking_uri: str, logs: Path,
                       plan: TrainingPlan, timeout_s: float | None = None) -> dict[str, Any]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONUNBUFFERED": "1",
           # MLproject's command says `python`: make it this interpreter (the project's .venv).
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    log = logs / f"mlflow-run-{model}-{time.monotonic_ns()}.log"
    timeout_s = timeout_s or plan.run_timeout_s
    try:
        usage = measure_command(mlflow_run_command(model, paths, plan.overrides), env=env,
                                cwd=PROJECT_ROOT, log_path=log, timeout_s=timeout_s)
    except TimeoutError:
        return {"ok": False, "error": f"stopped after {timeout_s:.0f} s (time budget)"}
    if usage.returncode != 0:
        return {"ok": False, "returncode": usage.returncode, "wall_s": usage.wall_s,
                "error": failure_summary(log.read_text(errors="replace"))}
    fit_s = _last_fit_seconds(tracking_uri)
    return {"ok": True, "wall_s": usage.wall_s, "peak_tree_rss_mb": usage.peak_tree_rss_mb,
            "max_rss_mb": usage.max_rss_mb, "fit_s": fit_s,
            "other_s": usage.wall_s - fit_s if fit_s is not None else None}


def measure_bare_fit(model: str, train_csv: Path, logs: Path, plan: TrainingPlan,
                     timeout_s: float | None = None) -> dict[str, Any]:
    log = logs / f"bare-fit-{model}-{time.monotonic_ns()}.log"
    timeout_s = timeout_s or plan.run_timeout_s
    try:
        usage = measure_command(bare_fit_command(model, train_csv, plan.overrides), cwd=PROJECT_ROOT,
                                log_path=log, timeout_s=timeout_s)
    except TimeoutError:
        return {"ok": False, "error": f"stopped after {timeout_s:.0f} s (time budget)"}
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith(RESULT_PREFIX)]
    if usage.returncode != 0 or not lines:
        return {"ok": False, "returncode": usage.returncode, "error": failure_summary(text)}
    inner = json.loads(lines[-1][len(RESULT_PREFIX):])
    return {"ok": True, "wall_s": usage.wall_s, "peak_tree_rss_mb": usage.peak_tree_rss_mb,
            "max_rss_mb": usage.max_rss_mb, **inner}


def failure_summary(log_text: str) -> str:
    """The last exception line of a failed run's log (what went wrong), else its last line."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b.*:", line)]
    return (errors or lines or ["no output"])[-1][:1000]


def _last_fit_seconds(tracking_uri: str) -> float | None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], "tags.`valuation.step` = 'train'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].data.metrics.get("fit_seconds") if runs else None


def bare_fit(model: str, train_csv: Path, overrides: Sequence[str] = ()) -> None:
    """In a child process: fit the estimator of conf/model/<model>.yaml as a plain Pipeline on the
    cleaned rows of `train_csv`; print the fit time (the parent measures wall time and memory)."""
    import pandas as pd

    from bench.anchor import fit_plain_pipeline
    from bench.common import cleaned_train

    frame = cleaned_train(pd.read_csv(train_csv))
    _, fit_s = fit_plain_pipeline(model, frame, overrides)
    print(RESULT_PREFIX + json.dumps({"fit_s": fit_s, "rows": len(frame)}), flush=True)


def write_synthetic(rows: int, path: Path, seed: int) -> Path:
    from valuation.synthetic import generate_frame

    generate_frame(rows, seed=seed).to_csv(path, index=False)
    return path


def run_models(plan: TrainingPlan, paths: DataPaths, tracking_uri: str, logs: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in plan.models:
        progress(f"mlflow run -P model={model} ({paths.describe()} data, cv.folds=0)")
        pipeline = measure_mlflow_run(model, paths, tracking_uri, logs, plan)
        progress(f"bare fit of {model}'s estimator")
        bare = measure_bare_fit(model, paths.train, logs, plan)
        out[model] = {"mlflow_run": pipeline, "bare_fit": bare}
        for what, result in (("mlflow run", pipeline), ("bare fit", bare)):
            if not result["ok"]:
                progress(f"{model}: {what} FAILED: {result['error']}")
        progress(f"{model}: mlflow run {_fmt(pipeline, 'wall_s')} s / {_fmt(pipeline, 'peak_tree_rss_mb')} MB"
                 f" (fit {_fmt(pipeline, 'fit_s')} s); bare fit {_fmt(bare, 'wall_s')} s / "
                 f"{_fmt(bare, 'peak_tree_rss_mb')} MB (fit {_fmt(bare, 'fit_s')} s)")
    return out


def run_scaling(plan: TrainingPlan, base_rows: int, workdir: Path, tracking_uri: str,
                logs: Path) -> dict[str, Any]:
    test = write_synthetic(SCALING_TEST_ROWS, workdir / "scaling-test.csv", seed=99)
    points: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    started = time.monotonic()
    for scale in plan.scales:
        chosen = _fit_in_budget(scale, points, plan, time.monotonic() - started)
        if chosen is None:
            skipped.append({"scale": scale, "reason": "would not finish within the time budget"})
            continue
        if chosen != scale:
            skipped.append({"scale": scale, "reason": f"would not finish within the time budget; "
                                                      f"{chosen:g}x measured instead"})
        rows = max(100, round(base_rows * chosen))
        train = write_synthetic(rows, workdir / f"scaling-train-{rows}.csv", seed=100 + len(points))
        paths = DataPaths(train, test, synthetic=True)
        progress(f"scaling: {chosen:g}x = {rows:,} synthetic training rows")
        left_s = max(300.0, plan.budget_s - (time.monotonic() - started))
        pipeline = measure_mlflow_run(DEFAULT_MODEL, paths, tracking_uri, logs, plan, timeout_s=left_s)
        left_s = max(300.0, plan.budget_s - (time.monotonic() - started))
        bare = measure_bare_fit(DEFAULT_MODEL, train, logs, plan, timeout_s=left_s)
        points.append({"scale": chosen, "rows": rows, "mlflow_run": pipeline, "bare_fit": bare})
        train.unlink()
        progress(f"scaling {chosen:g}x: mlflow run {_fmt(pipeline, 'wall_s')} s, "
                 f"{_fmt(pipeline, 'peak_tree_rss_mb')} MB; bare fit {_fmt(bare, 'wall_s')} s")
        if not pipeline["ok"]:
            progress(f"scaling stopped: the run failed: {pipeline['error']}")
            break
    return {"model": DEFAULT_MODEL, "base_rows": base_rows, "test_rows": SCALING_TEST_ROWS,
            "points": points, "skipped": skipped, "budget_s": plan.budget_s}


def _fit_in_budget(scale: float, points: list[dict[str, Any]], plan: TrainingPlan,
                   spent_s: float) -> float | None:
    """`scale`, or its fallback, if a linear extrapolation from the last point fits the budget."""
    done = [p for p in points if p["mlflow_run"].get("ok")]
    if not done:
        return scale
    last = done[-1]
    per_unit = (last["mlflow_run"]["wall_s"] + last["bare_fit"].get("wall_s", 0)) / last["scale"]
    remaining = plan.budget_s - spent_s
    for candidate in (scale, plan.fallback_scales.get(scale)):
        if candidate is not None and per_unit * candidate <= remaining:
            return candidate
    return None


def _fmt(result: dict[str, Any], key: str) -> str:
    value = result.get(key)
    return "failed" if not result.get("ok") else ("-" if value is None else f"{value:,.1f}")


def run(args: Any) -> dict[str, Any]:
    plan = TrainingPlan.for_args(args)
    stamp = start_stamp()
    out_dir = results_dir(args)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp_name, \
            tracking_store(Path(tmp_name)) as tracking_uri:
        tmp = Path(tmp_name)
        logs = tmp / "logs"
        logs.mkdir()
        from valuation.config import ensure_experiment

        ensure_experiment(EXPERIMENT, tracking_uri)  # artifacts beside the throwaway store
        paths = data_paths(args, tmp)
        models = run_models(plan, paths, tracking_uri, logs)
        # The curve is always synthetic; its 1x is the size of the client's train.csv.
        scaling = run_scaling(plan, REAL_TRAIN_ROWS, tmp, tracking_uri, logs)
    data = {
        **stamp,
        "data": paths.describe(),
        "cv_folds": 0,
        "plan": {"models": list(plan.models), "scales": list(plan.scales), "budget_s": plan.budget_s,
                 "overrides": list(plan.overrides)},
        "models": models,
        "scaling": scaling,
        "scaling_fit": linearity(scaling["points"]),
    }
    path = write_result(out_dir, RESULT_NAME, data, args.quick)
    progress(f"wrote {path}")
    return data


def linearity(points: list[dict[str, Any]]) -> dict[str, Any]:
    """How time and memory grow with rows: the log-log slope (1.0 = linear; below 1 while a fixed
    start-up cost dominates) and a straight-line fit value = intercept + per_100k_rows * rows / 1e5
    with its R^2 (close to 1 = linear growth)."""
    import numpy as np

    ok = [p for p in points if p["mlflow_run"].get("ok")]
    if len(ok) < 2:
        return {}
    rows = np.array([p["rows"] for p in ok], dtype=float)
    out: dict[str, Any] = {}
    for key, getter in (("wall_s", lambda p: p["mlflow_run"]["wall_s"]),
                        ("fit_s", lambda p: p["mlflow_run"].get("fit_s")),
                        ("peak_tree_rss_mb", lambda p: p["mlflow_run"]["peak_tree_rss_mb"]),
                        ("bare_fit_s", lambda p: p["bare_fit"].get("fit_s")),
                        ("bare_fit_peak_rss_mb", lambda p: p["bare_fit"].get("peak_tree_rss_mb"))):
        values = [getter(p) for p in ok]
        if not all(values):
            continue
        y = np.array(values, dtype=float)
        slope, intercept = np.polyfit(rows / 1e5, y, 1)
        fitted = intercept + slope * rows / 1e5
        total = float(((y - y.mean()) ** 2).sum())
        out[key] = {
            "loglog_slope": float(np.polyfit(np.log(rows), np.log(y), 1)[0]),
            "per_100k_rows": float(slope),
            "intercept": float(intercept),
            # Two points always fit a line: R^2 says something from three on.
            "r2": (1.0 - float(((y - fitted) ** 2).sum()) / total if total > 0 else 1.0)
            if len(ok) >= 3 else None,
        }
    return out


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--scales", type=lambda s: tuple(float(x) for x in s.split(",")), default=None,
                     help="multiples of the real training rows, e.g. 1,10,100")
    cli.add_argument("--budget-s", type=float, default=5400,
                     help="seconds for the whole scaling curve (a scale that would not fit is replaced by a "
                          "smaller one or skipped, and the report says so); default 5400")
    cli.add_argument("--bare-fit", metavar="MODEL", help=argparse_suppress())
    cli.add_argument("--train-csv", type=Path, help=argparse_suppress())
    cli.add_argument("--overrides", default="", help=argparse_suppress())
    args = cli.parse_args()
    if args.bare_fit:
        bare_fit(args.bare_fit, args.train_csv, args.overrides.split())
        return
    with sigterm_as_interrupt():
        run(args)


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
