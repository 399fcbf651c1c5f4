"""What every benchmark shares: paths, the real data, command-line flags, result files, the machine.

Results are aggregates only (timings, counts, sizes): no row of the client's data is ever written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from valuation.schema import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, TARGET

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
QUICK_RESULTS_DIR = RESULTS_DIR / "quick"  # smoke runs never overwrite the full results
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data" / "property-friends"
LOOPBACK = "127.0.0.1"  # every benchmark talks to loopback only
VERSIONED_PACKAGES = (
    "mlflow", "scikit-learn", "lightgbm", "numpy", "pandas", "fastapi", "uvicorn", "httpx", "orjson",
    "pydantic", "skops",
)


class BenchError(RuntimeError):
    """A benchmark cannot run (missing tool, missing data, a server that did not start)."""


# --- command line ------------------------------------------------------------------------------

def parser(description: str) -> argparse.ArgumentParser:
    """The flags every part takes: --data-dir, --quick, --results-dir."""
    parsed = argparse.ArgumentParser(description=description)
    parsed.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder holding the real train.csv and test.csv")
    parsed.add_argument("--quick", action="store_true", help="a short smoke run (seconds, not minutes)")
    parsed.add_argument("--results-dir", type=Path, default=None,
                        help=f"where results go (default {RESULTS_DIR}, or {QUICK_RESULTS_DIR} with --quick)")
    return parsed


def results_dir(args: argparse.Namespace) -> Path:
    chosen = args.results_dir or (QUICK_RESULTS_DIR if args.quick else RESULTS_DIR)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def progress(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", flush=True)


# --- data --------------------------------------------------------------------------------------

def load_real_data(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The client's train and test tables, read from `data_dir` (never copied anywhere)."""
    paths = {role: Path(data_dir) / f"{role}.csv" for role in ("train", "test")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise BenchError(f"real data not found: {', '.join(missing)} (pass --data-dir DIR or REAL_DATA=DIR)")
    frames = {role: pd.read_csv(path) for role, path in paths.items()}
    for role, frame in frames.items():
        absent = [c for c in (*FEATURES, TARGET) if c not in frame.columns]
        if absent:
            raise BenchError(f"{paths[role]}: missing column(s) {', '.join(absent)}")
    return frames["train"], frames["test"]


def cleaned_train(train: pd.DataFrame) -> pd.DataFrame:
    """The training rows the pipeline fits on: the configured cleaning rules applied."""
    from valuation.cleaning import clean
    from valuation.config import load_config

    return clean(train, load_config([]).cleaning).frame


def feature_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts of the eight features (numbers as float, categories as str)."""
    out = frame[list(FEATURES)].copy()
    for column in NUMERIC_FEATURES:
        out[column] = out[column].astype(float)
    for column in CATEGORICAL_FEATURES:
        out[column] = out[column].astype(str)
    return out.to_dict(orient="records")


def servable_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Test rows every model accepts: the project's pyfunc rejects what its rules reject (a 400 is not
    a prediction), so the load uses rows inside the default rules and known categories."""
    from valuation.config import load_config

    rules = load_config([]).validation
    keep = frame["type"].astype(str).str.strip().str.lower().isin(list(rules.types))
    for column, (low, high) in (("latitude", rules.latitude), ("longitude", rules.longitude)):
        keep &= frame[column].between(low, high)
    keep &= frame["n_rooms"].between(0, rules.max_rooms) & frame["n_bathroom"].between(0, rules.max_bathrooms)
    for column in ("net_usable_area", "net_area"):
        keep &= frame[column].between(rules.min_area, rules.max_area)
    keep &= frame[list(FEATURES)].notna().all(axis=1)
    return frame.loc[keep].reset_index(drop=True)


# --- numbers -----------------------------------------------------------------------------------

def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p95, p99 and mean in milliseconds."""
    values = np.asarray(seconds, dtype=float) * 1000.0
    return {
        "n": int(values.size),
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return float(numerator) / float(denominator)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# --- result files ------------------------------------------------------------------------------

def write_result(directory: Path, name: str, data: dict[str, Any], quick: bool) -> Path:
    """Write one part's aggregates as `<name>.json`, stamped with time, mode and the machine's load."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine_info(),
        **data,
    }
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_jsonable))
    tmp.replace(path)
    return path


def read_result(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


# --- the machine -------------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, load, Python and package versions: what a number depends on."""
    memory_gb = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "cpu_model": _cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "packages": {name: _version(name) for name in VERSIONED_PACKAGES},
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def python() -> str:
    """The interpreter running the benchmarks (the project's .venv under `make bench`)."""
    return sys.executable
