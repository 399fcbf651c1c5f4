"""Model quality on the client's real data: every shipped model config, trained on train.csv and scored
on the WHOLE unmodified test.csv (zero areas, tiny prices and all), as a client would see it.

By default each model goes through the real pipeline (ingest -> train -> evaluate -> register) in a
throwaway SQLite store, and the logged pyfunc is then loaded back with `mlflow.pyfunc.load_model` and
scored independently on the raw test.csv: that is the number reported. `--direct` skips MLflow and
uses the library (valuation.training) alone, for quick iterations.

    python -m bench.quality --data-dir DIR [--models lgbm,gbr] [--out bench/results/quality.md] [--direct]

Only aggregates are written (metrics, timings, the machine): never a row of the data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import interval_quality
from bench.common import DEFAULT_DATA_DIR, RESULTS_DIR, DataPaths, load_real_data, machine_info
from bench.common import progress as say
from valuation.config import PROJECT_ROOT
from valuation.metrics import regression_metrics
from valuation.model_runtime.schema import FEATURES, TARGET

MODEL_DIR = PROJECT_ROOT / "conf" / "model"
DEFAULT_OUT = RESULTS_DIR / "quality.md"
EXPERIMENT = "bench-quality"
# Published results on the same unmodified test.csv, for scale.
REFERENCES: tuple[dict[str, Any], ...] = (
    {"model": "reference: original notebook (GBR, target-encoded)", "rmse": 10254.0, "mae": 5859.0,
     "mape": 0.748},
    {"model": "reference: best public implementation", "rmse": 4420.0, "mae": 2137.0},
)
COLUMNS = (
    ("model", "model", "{}"),
    ("rmse", "RMSE (UF)", "{:,.0f}"),
    ("mae", "MAE (UF)", "{:,.0f}"),
    ("mape", "MAPE", "{:.3f}"),
    ("r2", "R2", "{:.3f}"),
    ("medape", "MedAPE", "{:.3f}"),
    ("within_10pct", "within 10%", "{:.1%}"),
    ("within_20pct", "within 20%", "{:.1%}"),
    ("fit_seconds", "fit (s)", "{:.1f}"),
    ("total_seconds", "total (s)", "{:.0f}"),
)


@dataclass(frozen=True)
class Scored:
    model: str
    metrics: dict[str, float]
    fit_seconds: float
    total_seconds: float
    note: str = ""
    intervals: dict[str, Any] | None = None  # bench.interval_quality.measure, when calibrated

    def row(self) -> dict[str, Any]:
        return {"model": self.model, **self.metrics, "fit_seconds": self.fit_seconds,
                "total_seconds": self.total_seconds}


def shipped_models() -> list[str]:
    return sorted(p.stem for p in MODEL_DIR.glob("*.yaml"))


# --- one model ----------------------------------------------------------------------------------

def score_with_pipeline(model: str, paths: DataPaths, test: pd.DataFrame, workdir: Path) -> Scored:
    """Run the whole pipeline into a throwaway store, then score the logged pyfunc on the raw test."""
    import mlflow

    from bench.project_model import pipeline_overrides, tracking_store
    from steps.main import run_pipeline

    started = time.perf_counter()
    with tracking_store(workdir / model) as uri:
        result = run_pipeline(pipeline_overrides(paths, model, [f"experiment_name={EXPERIMENT}"]))
        say(f"{model}: pipeline done, loading {result.model_uri}")
        pyfunc = mlflow.pyfunc.load_model(result.model_uri)
        predicted = np.asarray(pyfunc.predict(test[list(FEATURES)]), dtype=np.float64)
        fit_seconds = _train_fit_seconds(uri, result.parent_run_id)
        intervals = interval_quality.measure(pyfunc, test)
    metrics = regression_metrics(test[TARGET].to_numpy(dtype=np.float64), predicted)
    note = ""
    if not np.isclose(metrics["rmse"], result.metrics["rmse"], rtol=1e-6):
        # The evaluate step scores the same table: a difference means the two paths disagree.
        note = f"pipeline's evaluate step reported RMSE {result.metrics['rmse']:,.1f}"
        say(f"{model}: WARNING {note}")
    return Scored(model, metrics, fit_seconds, time.perf_counter() - started, note, intervals)


def _train_fit_seconds(uri: str, parent_run_id: str) -> float:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`valuation.step` = 'train'",
    )
    if not runs or "fit_seconds" not in runs[0].data.metrics:
        return float("nan")
    return float(runs[0].data.metrics["fit_seconds"])


def score_direct(model: str, train: pd.DataFrame, test: pd.DataFrame) -> Scored:
    """The library alone: clean, fit_model, predict_columns on the validated raw test."""
    from valuation.cleaning import clean
    from valuation.config import load_config
    from valuation.model_runtime.validation import ValidationRules
    from valuation.training import fit_model

    started = time.perf_counter()
    cfg = load_config([f"model={model}"])
    cleaned = clean(train, cfg.cleaning).frame
    fitted = fit_model(cfg.model, cleaned[list(FEATURES)], cleaned[TARGET].to_numpy(dtype=np.float64))
    fit_seconds = time.perf_counter() - started
    rules = ValidationRules.from_config(cfg.validation, sectors=sorted(cleaned["sector"].unique()))
    predicted = fitted.predict_columns(rules.validate_frame(test[list(FEATURES)]))
    metrics = regression_metrics(test[TARGET].to_numpy(dtype=np.float64), predicted)
    return Scored(model, metrics, fit_seconds, time.perf_counter() - started, "library only")


# --- report -------------------------------------------------------------------------------------

def markdown(scored: list[Scored], n_train: int, n_test: int, direct: bool, command: str) -> str:
    machine = machine_info()
    header = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" if key == "model" else "---:" for key, _, _ in COLUMNS) + "|"
    lines = [
        "# Model quality on the real data",
        "",
        f"Trained on train.csv ({n_train:,} rows before the configured cleaning), scored on the whole "
        f"unmodified test.csv ({n_test:,} rows: zero areas and sub-1,000 UF prices included).",
        ("Library only (`--direct`): fit_model + predict_columns." if direct else
         "Each model ran the full pipeline (ingest, train, evaluate, register) in a throwaway SQLite "
         "store; its logged pyfunc was then loaded with `mlflow.pyfunc.load_model` and scored "
         "independently on the raw test.csv."),
        "`fit (s)` is the train step's final fit (no CV); `total (s)` includes the whole pipeline "
        "and the scoring.",
        "",
        header,
        rule,
    ]
    for item in [*(s.row() for s in scored), *REFERENCES]:
        cells = []
        for key, _, fmt in COLUMNS:
            value = item.get(key)
            cells.append("" if value is None or (isinstance(value, float) and np.isnan(value))
                         else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    for item in scored:
        if item.intervals:
            lines += ["", *interval_quality.markdown(item.model, item.intervals)]
    notes = [f"- {s.model}: {s.note}" for s in scored if s.note and not direct]
    if notes:
        lines += ["", "Notes:", *notes]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    lines += [
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {machine['cores']} cores, "
        f"{machine['memory_gb']} GB RAM ({machine['cpu_model']}), load average {machine['load_avg_1m']} "
        "(the machine is shared: timings are indicative).",
        f"Python {machine['python']}; {packages}.",
        "",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder holding the real train.csv and test.csv")
    parser.add_argument("--models", default="", help="comma-separated conf/model names (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to write")
    parser.add_argument("--direct", action="store_true",
                        help="library only (no pipeline, no MLflow): quicker, same model")
    args = parser.parse_args(argv)

    available = shipped_models()
    models = [m.strip() for m in args.models.split(",") if m.strip()] or available
    unknown = [m for m in models if m not in available]
    if unknown:
        parser.error(f"unknown model config(s) {unknown}; shipped: {', '.join(available)}")
    train, test = load_real_data(args.data_dir)
    paths = DataPaths(args.data_dir / "train.csv", args.data_dir / "test.csv", synthetic=False)
    say(f"quality: {len(models)} model(s) {', '.join(models)}; train {len(train):,} rows, "
        f"test {len(test):,} rows ({'library only' if args.direct else 'full pipeline'})")

    scored: list[Scored] = []
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as workdir:
        for index, model in enumerate(models, 1):
            say(f"[{index}/{len(models)}] {model}: training")
            item = (score_direct(model, train, test) if args.direct
                    else score_with_pipeline(model, paths, test, Path(workdir)))
            m = item.metrics
            say(f"[{index}/{len(models)}] {model}: RMSE {m['rmse']:,.0f}  MAE {m['mae']:,.0f}  "
                f"MAPE {m['mape']:.3f}  R2 {m['r2']:.3f}  fit {item.fit_seconds:.1f}s")
            scored.append(item)

    command = "python -m bench.quality " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(scored, len(train), len(test), args.direct, command.strip()))
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
