"""Single-row predict latency: the project's pyfunc against a plain scikit-learn Pipeline.

Trains the default model with the real pipeline (`cv.folds=0`, throwaway SQLite store), loads it with
`mlflow.pyfunc.load_model`, and times one-row predictions on distinct test rows, one row per call,
each side given the row in the form it takes:
  (a) `pyfunc.predict([row])`               the pyfunc's declared input (a list of rows), what
                                            `mlflow models serve` passes it for {"inputs": [row]}
  (a2) `pyfunc.predict(df)`                 the same row as a one-row DataFrame (MLflow converts it)
  (b) `Pipeline.predict(df)`                OrdinalEncoder + passthrough + the same estimator class
                                            and params, fitted on the same cleaned rows
  (c) `ValuationModel.predict` beneath MLflow's decorator, on [row]: our code alone; (a) - (c) is
                                            MLflow's wrapper (type-hint check included)
and, inside (c), row validation and feature+estimator time; (d) `pyfunc.predict([row],
params={"interval": 0.8})`, the same row with an 80 % price interval (target: at most 2x (a)).
Calls are interleaved (a, b, c, ... in rotating order) so that load from other processes hits
every variant alike. A pyinstrument profile
of (a) is written beside the results. Target: (a) at least 5x faster than (b) at the median.

    python -m bench.pyfunc_latency [--data-dir DIR] [--quick] [--synthetic ROWS]
"""

from __future__ import annotations

import functools
import inspect
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.anchor import config_estimator, fit_plain_pipeline
from bench.common import (
    cleaned_train,
    data_paths,
    distinct_rows,
    feature_records,
    latency_summary,
    load_tables,
    parser,
    progress,
    ratio,
    results_dir,
    start_stamp,
    write_result,
)
from bench.processes import run_part
from bench.project_model import tracking_store, train_project_model

RESULT_NAME = "pyfunc_latency"
PROFILE_FILE = "pyfunc_profile.txt"
TARGET_SPEEDUP = 5.0
INTERVAL_PARAMS = {"interval": 0.8}
TARGET_INTERVAL_COST = 2.0  # single-row predict with an interval vs without, at the median
DEFAULT_MODEL = "lgbm"  # conf/config.yaml's default model group
# --quick: a smaller forest for both sides (same params on both), so a smoke run takes seconds.
QUICK_OVERRIDES = ("model.params.n_estimators=100",)


@dataclass(frozen=True)
class OneRow:
    """One test row as a JSON-ready mapping and as the one-row DataFrame a server builds from it."""

    record: dict[str, Any]
    frame: pd.DataFrame


def one_row_samples(test: pd.DataFrame, n_rows: int, seed: int = 0) -> list[OneRow]:
    """`n_rows` distinct test rows, one per call."""
    rows = distinct_rows(test)
    chosen = rows.sample(n=min(n_rows, len(rows)), random_state=seed)
    return [OneRow(record, pd.DataFrame([record])) for record in feature_records(chosen)]


def time_calls(variants: dict[str, Callable[[OneRow], Any]], frames: list[OneRow],
               warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each variant on each row, variants in rotating order per row."""
    names = list(variants)
    for frame in frames[:warmup]:
        for name in names:
            variants[name](frame)
    timings: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for index, frame in enumerate(frames):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            call = variants[name]
            started = clock()
            call(frame)
            timings[name].append(clock() - started)
    return timings


def single_thread_variant(pipeline: Any) -> dict[str, Callable[[OneRow], Any]]:
    """The same fitted Pipeline predicting on one thread, when its estimator has `n_jobs`: shows how
    much of the difference is thread start-up per call rather than wrapper overhead."""
    import copy

    if "n_jobs" not in pipeline[-1].get_params():
        return {}
    single = copy.deepcopy(pipeline)
    single.set_params(**{f"{pipeline.steps[-1][0]}__n_jobs": 1})
    return {"sklearn_pipeline_predict_1_thread": lambda one: single.predict(one.frame)}


def profile_pyfunc(pyfunc: Any, samples: list[OneRow], path: Path) -> str:
    """A pyinstrument profile of `pyfunc.predict([row])` over `samples`, written to `path`."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002)
    profiler.start()
    for sample in samples:
        pyfunc.predict([sample.record])
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    path.write_text(text)
    return text


def run(args: Any) -> dict[str, Any]:
    import mlflow

    n_rows = 200 if args.quick else 2000
    stamp = start_stamp()
    with tempfile.TemporaryDirectory(prefix="bench-pyfunc-") as tmp, tracking_store(Path(tmp)):
        paths = data_paths(args, Path(tmp))
        train, test = load_tables(paths)
        overrides = QUICK_OVERRIDES if args.quick else ()
        result = train_project_model(paths, extra=overrides)
        pyfunc = mlflow.pyfunc.load_model(result.model_uri)
        inner = pyfunc.unwrap_python_model()

        progress(f"fitting the plain Pipeline with the {DEFAULT_MODEL} estimator on the cleaned rows")
        pipeline, pipeline_fit_s = fit_plain_pipeline(DEFAULT_MODEL, cleaned_train(train), overrides)
        key, params, _ = config_estimator(DEFAULT_MODEL, overrides)

        frames = one_row_samples(test, n_rows)
        # The same numbers from (a), (a2) and (c): the wrapper only checks and converts the input.
        first = frames[0]
        # MLflow decorates PythonModel.predict with its type-hint check; (c) calls what is beneath.
        ours = functools.partial(inspect.unwrap(type(inner).predict), inner)
        np.testing.assert_allclose(pyfunc.predict([first.record]), ours([first.record]))
        np.testing.assert_allclose(pyfunc.predict(first.frame), ours([first.record]))

        rules, fitted = inner.rules, inner.fitted
        variants: dict[str, Callable[[OneRow], Any]] = {
            "pyfunc_predict": lambda one: pyfunc.predict([one.record]),
            "pyfunc_predict_dataframe": lambda one: pyfunc.predict(one.frame),
            "pyfunc_predict_with_interval":
                lambda one: pyfunc.predict([one.record], params=INTERVAL_PARAMS),
            "sklearn_pipeline_predict": lambda one: pipeline.predict(one.frame),
            **single_thread_variant(pipeline),
            "python_model_predict": lambda one: ours([one.record]),
            "validation_only": lambda one: rules.validate_records([one.record]),
            "features_and_estimator":
                lambda one: fitted.predict_columns(rules.validate_records([one.record])),
        }
        progress(f"timing {len(frames)} one-row predictions for each of {len(variants)} variants")
        timings = time_calls(variants, frames, warmup=min(50, len(frames)))
        out_dir = results_dir(args)
        profile_text = profile_pyfunc(pyfunc, frames[: min(500, len(frames))], out_dir / PROFILE_FILE)

    summary = {name: latency_summary(values) for name, values in timings.items()}
    pyfunc_p50 = summary["pyfunc_predict"]["p50_ms"]
    speedup = ratio(summary["sklearn_pipeline_predict"]["p50_ms"], pyfunc_p50)
    data = {
        **stamp,
        "data": paths.describe(),
        "rows_timed": len(frames),
        "model_config": DEFAULT_MODEL,
        "overrides": list(overrides),
        "estimator": key,
        "estimator_params": params,
        "pipeline_fit_s": pipeline_fit_s,
        "latency": summary,
        "speedup_pipeline_over_pyfunc_p50": speedup,
        "speedup_pipeline_over_pyfunc_p95": ratio(summary["sklearn_pipeline_predict"]["p95_ms"],
                                                  summary["pyfunc_predict"]["p95_ms"]),
        "mlflow_wrapper_ms_p50": pyfunc_p50 - summary["python_model_predict"]["p50_ms"],
        "target_speedup": TARGET_SPEEDUP,
        "target_met": bool(speedup is not None and speedup >= TARGET_SPEEDUP),
        "profile_file": PROFILE_FILE,
        "interval_cost_p50": ratio(summary["pyfunc_predict_with_interval"]["p50_ms"], pyfunc_p50),
        "target_interval_cost": TARGET_INTERVAL_COST,
    }
    data["interval_target_met"] = bool(data["interval_cost_p50"] is not None
                                       and data["interval_cost_p50"] <= TARGET_INTERVAL_COST)
    path = write_result(out_dir, RESULT_NAME, data, args.quick)
    progress(f"pyfunc p50 {pyfunc_p50:.3f} ms vs Pipeline p50 "
             f"{summary['sklearn_pipeline_predict']['p50_ms']:.3f} ms: {speedup:.1f}x "
             f"(target {TARGET_SPEEDUP:.0f}x {'met' if data['target_met'] else 'NOT met'}); wrote {path}")
    progress(f"with an 80 % interval: p50 {summary['pyfunc_predict_with_interval']['p50_ms']:.3f} ms, "
             f"{data['interval_cost_p50']:.2f}x (target <= {TARGET_INTERVAL_COST:.0f}x "
             f"{'met' if data['interval_target_met'] else 'NOT met'})")
    if not data["target_met"]:
        progress("profile of pyfunc.predict (top):\n" + "\n".join(profile_text.splitlines()[:40]))
    return data


def main() -> None:
    run_part(run, parser(__doc__.split("\n\n")[0]))


if __name__ == "__main__":
    main()
